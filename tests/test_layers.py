"""The package's shape: everything installs as `stylebox.*`, and imports only point down.

Layers, lowest first (docs/architecture.md): stylebox.errors (the one user-error type) and
stylebox.report (generated blocks in markdown) <-
stylebox.model <- stylebox.service <- stylebox.training <- the tools and the CLI (the other
stylebox.* modules). The service must never import training (torch); training may use the
service's engine (eval scores an ONNX file as the service runs it).
"""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

from tests.conftest import ROOT

FOLDERS = {"model": "stylebox.model", "service": "stylebox.service",
           "training": "stylebox.training", "stylebox": "stylebox"}
# Importable from every layer: the user-error type, the marker-block writer of reports
# (stylebox.report, used by train-bench too); neither imports anything of stylebox.
BASE = {"stylebox", "stylebox.errors", "stylebox.report"}
RANK = {"stylebox.model": 1, "stylebox.service": 2, "stylebox.training": 3}
TOOLS = 4


def _rank(module: str) -> int:
    if module in BASE:
        return 0
    parts = module.split(".")
    return RANK.get(".".join(parts[:2]), TOOLS)


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *rel)).removesuffix(".__init__")
            out[name] = path
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, those inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


def test_imports_only_point_down_and_name_the_namespace():
    wrong = []
    for name, path in _modules().items():
        for line, target in _imports(path):
            top = target.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if top in ("model", "service", "training"):
                wrong.append(f"{where} (outside the stylebox namespace)")
            elif top == "tests":
                wrong.append(f"{where} (the test suite: not installed, not for the package)")
            elif top == "stylebox" and _rank(target) > _rank(name):
                wrong.append(f"{where} (a higher layer)")
    assert not wrong, "\n".join(wrong)


def test_the_rule_itself_catches_an_upward_import():
    assert _rank("stylebox.service.app") > _rank("stylebox.model.card")
    assert _rank("stylebox.cli") > _rank("stylebox.training.loop") > _rank("stylebox.service.x")
    assert _rank("stylebox.errors") == 0


def test_installs_as_stylebox_only_and_lists_every_package():
    dist = importlib.metadata.distribution("stylebox")
    assert (dist.read_text("top_level.txt") or "").split() == ["stylebox"]
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {k: v for k, v in setup["package-dir"].items()} == {v: k for k, v in FOLDERS.items()}
    # Every folder with an __init__.py is a listed package (a missing one would be left out
    # of the wheel and the image, while the editable install here still found it).
    packages = {n for n, p in _modules().items() if p.name == "__init__.py"}
    assert packages == set(setup["packages"])


def test_a_source_checkout_runs_without_installing():
    """`PYTHONPATH=$PWD python -m stylebox ...` on a machine where nothing is installed: the
    folders pyproject.toml maps are the subpackages, and no other folder is one."""
    import subprocess
    import sys

    code = ("import importlib.util, sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path\n"
            "                    if 'Editable' not in getattr(f, '__name__', '')]\n"
            "import stylebox.model.card, stylebox.service.settings, stylebox.training.config\n"
            "import stylebox.service.http.access\n"
            "print(stylebox.model.card.__file__)\n"
            "print(stylebox.service.http.access.__file__)\n"
            "print([n for n in ('stylebox.tests', 'stylebox.deploy', 'stylebox.configs')\n"
            "       if importlib.util.find_spec(n) is not None])\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == [str(ROOT / "model" / "card.py"),
                                         str(ROOT / "service" / "http" / "access.py"), "[]"]
