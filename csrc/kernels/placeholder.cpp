namespace onnxlens {}
