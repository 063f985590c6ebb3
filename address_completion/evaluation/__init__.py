"""Evaluation: systems under test, metrics (exact match, levels, invalid chains) and the report."""
