"""stylebox: multi-style neural style transfer (CIN generator, PyTorch training, ONNX serving)."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Installed, setuptools maps the folders model/, training/ and service/ to stylebox.model,
# stylebox.training and stylebox.service (pyproject.toml). Run from a source checkout that is
# not installed (`PYTHONPATH=$PWD python -m stylebox train ...`, e.g. on a GPU box), the
# folders beside this one are those subpackages.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "model" / "__init__.py").is_file():
    __path__.append(str(_checkout))
