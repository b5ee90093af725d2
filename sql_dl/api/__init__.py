"""The Python API: register your own models as SQL functions, and pyspark.ml Transformers over catalog
entries."""
