"""Exceptions a user can act on. The CLI prints their message without a traceback."""

from __future__ import annotations

from pathlib import Path


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
