"""Data: the gazetteer (the one place that knows divisions), synthesis, split, the prompt, file I/O."""
