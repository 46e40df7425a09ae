"""stylebox's REST service and `stylebox serve` / `stylebox stylize` (ONNX Runtime, no torch)."""

from stylebox import __version__  # the one version string (pyproject reads it too)

__all__ = ["__version__"]
