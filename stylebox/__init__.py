"""stylebox: multi-style neural style transfer (CIN generator, PyTorch training, ONNX serving)."""

__version__ = "0.1.0"
