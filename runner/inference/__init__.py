"""Serving a finished run: predict, eval, ONNX export."""
