"""Exporters: ONNX, TFLite, C arrays and packed blobs from a trained ``model.direct`` (docs/export.md)."""
