"""Inference: the one decoding entry point (free or constrained), predict, and the HTTP server."""
