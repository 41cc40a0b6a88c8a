"""Reproducible learning experiments: the paper in miniature (``fst-agent experiment mini``)."""
