"""stylebox's REST service and `stylebox serve` / `stylebox stylize` (ONNX Runtime, no torch)."""

__version__ = "0.1.0"
