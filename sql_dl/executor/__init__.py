"""Stage 3: what runs in Python workers on executors. Base dependencies only (numpy, Pillow, pyarrow,
onnxruntime): nothing under this package imports torch or the catalog's YAML reader."""
