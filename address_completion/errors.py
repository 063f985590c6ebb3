"""Exceptions a user can act on. The CLI prints their message without a traceback."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable


class AddressCompletionError(Exception):
    """Base class for every error caused by user input or environment, not by a bug."""


class ConfigError(AddressCompletionError):
    """A configuration key, value or flag is wrong."""


class DataError(AddressCompletionError):
    """A data file or record is unreadable or malformed."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(where + message)


class OutputExistsError(AddressCompletionError):
    """Refusing to overwrite a user's result without --force."""

    def __init__(self, path: str | Path, hint: str = "pass --force to overwrite it"):
        super().__init__(f"{path} already exists; {hint}")


def closest_match(name: str, valid: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant (``lora_rnak`` -> ``lora_rank``), or None."""
    matches = difflib.get_close_matches(name, [str(item) for item in valid], n=1, cutoff=0.6)
    return matches[0] if matches else None
