"""stylebox: multi-style neural style transfer (CIN generator, PyTorch training, ONNX serving).

The folders model/, training/ and service/ beside this one are the subpackages
stylebox.model, stylebox.training and stylebox.service: pyproject.toml's
`[tool.setuptools] package-dir` maps them, and an install (wheel or editable) follows it.
A source checkout that is not installed (`PYTHONPATH=$PWD python -m stylebox train ...`,
e.g. on a bare GPU box: training/family.sh) follows the same mapping through `_Checkout`
below, and only it: no other folder of the checkout (tests/, deploy/) becomes a subpackage.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from functools import cached_property
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path

__version__ = "0.1.0"


class _Checkout(MetaPathFinder):
    """Finds the subpackages pyproject.toml maps to folders (stylebox.model -> model/, ...)
    in the checkout at `root`. Last on `sys.meta_path`: an install's own finder answers
    first, so this one is asked only where nothing is installed. Their own subpackages
    (stylebox.service.http, ...) are then found inside those folders as usual."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @cached_property
    def folders(self) -> dict[str, Path]:
        setup = tomllib.loads((self.root / "pyproject.toml").read_text())["tool"]["setuptools"]
        return {name: self.root / folder for name, folder in setup["package-dir"].items()
                if name != __name__}

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> ModuleSpec | None:
        if not fullname.startswith(__name__ + ".") or fullname.count(".") != 1:
            return None  # only this package's direct subpackages
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


_root = Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and not any(
        isinstance(f, _Checkout) for f in sys.meta_path):
    sys.meta_path.append(_Checkout(_root))
