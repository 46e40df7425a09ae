"""`stylebox COMMAND --help` for a command whose extra is not installed (torch: `train`).

The torch commands build their parsers in `main()` of modules that import torch at the top,
so without torch their module cannot be imported, and their options could not be read
before installing it. Here the module is imported once more with each missing package
standing in as an inert placeholder (every attribute, call and subclass of it is the
placeholder again); its own `main(["--help"])` then prints the real parser's help and
exits, as argparse does at `--help`, before any of the command's work. The placeholders
and the modules imported against them leave `sys.modules` afterwards.
tests/tools/test_cli_help.py checks each command's help this way equals its help with torch.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any


class _Inert(type):
    """The placeholder's metaclass: anything done to the placeholder gives the placeholder."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # the import system and copy/pickle probe dunders
        return Absent

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return Absent  # torch.zeros(...), @torch.no_grad(), and instances of subclasses

    def __getitem__(cls, item: Any) -> Any:
        return Absent

    def __or__(cls, other: Any) -> Any:
        return Absent  # torch.Tensor | None at module level

    __ror__ = __or__

    def __bool__(cls) -> bool:
        return False

    def __iter__(cls) -> Iterator[Any]:
        return iter(())


class Absent(metaclass=_Inert):
    """Stands in for every name of a package that is not installed (a class, so that module
    code may subclass it: `class Generator(torch.nn.Module)`)."""


class _Placeholder(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Absent


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a placeholder module for `packages` and every submodule of them."""

    def __init__(self, packages: Sequence[str]) -> None:
        self.packages = set(packages)

    def find_spec(self, name: str, path: Any, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] not in self.packages:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _Placeholder(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []  # a package: `import torch.nn.functional` finds its parts here


@contextlib.contextmanager
def _placeholders(packages: Sequence[str]) -> Iterator[None]:
    finder, before = _Finder(packages), set(sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            # the placeholders, and our modules built on them: a later real import starts over
            if name.split(".")[0] in finder.packages or name.startswith("stylebox."):
                module = sys.modules.pop(name)
                parent, _, child = name.rpartition(".")
                if getattr(sys.modules.get(parent), child, None) is module:
                    delattr(sys.modules[parent], child)  # `from parent import child` too


def print_help(module: str, func: str, packages: Sequence[str]) -> bool:
    """Print `stylebox.<module>.<func>`'s --help with `packages` absent; False if it could
    not be built that way (the caller then says which extra the command needs)."""
    with _placeholders(packages):
        try:
            getattr(importlib.import_module(f"stylebox.{module}"), func)(["--help"])
        except SystemExit as e:
            return e.code in (0, None)  # argparse printed the help and exited
        except Exception:  # module code the placeholder cannot stand in for
            return False
    return False  # returned without printing its help: not an argparse main
