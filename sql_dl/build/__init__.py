"""Build time, on the driver: export models from PyTorch to ONNX, verify them, make lower-precision
variants, write catalog entries from weights metadata. The only modules that import torch."""
