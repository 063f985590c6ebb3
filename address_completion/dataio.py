"""Reading address data in the formats users have, and writing results atomically.

Formats (chosen by ``fmt`` or the file extension):
- ``jsonl``: one JSON object per line, e.g. ``{"src": "补齐五级行政地址: 碑林区…", "tgt": "陕西省西安市碑林区…"}``
- ``json``: a JSON array of such objects
- ``text``: one full address per line (becomes ``{"tgt": line}``)
- ``csv``: a header row; ``column`` names the full-address column, or ``src``/``tgt`` columns give pairs

A bad record raises :class:`DataError` naming file and line, unless ``skip_bad`` is set, in which
case it is counted in :attr:`ReadResult.skipped` (with the first few reasons kept for reporting).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import DataError, OutputExistsError

FORMATS = ("jsonl", "json", "text", "csv")
EXTENSION_FORMATS = {".jsonl": "jsonl", ".json": None, ".txt": "text", ".text": "text", ".csv": "csv", ".tsv": "csv"}


@dataclass
class ReadResult:
    """Records read from one file plus what was skipped."""

    records: list[dict[str, str]]
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def note_skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.skip_reasons) < 5:
            self.skip_reasons.append(reason)


def detect_format(path: Path, text: str) -> str:
    """Format from the extension; a ``.json`` file is an array if it starts with ``[``, else JSON lines."""
    fmt = EXTENSION_FORMATS.get(path.suffix.lower(), "text")
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("[") else "jsonl"
    return fmt


def _decode(path: Path, data: bytes, skip_bad: bool, result: ReadResult) -> list[str]:
    """Split into lines, checking UTF-8 line by line so the error names the bad line."""
    lines = data.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    decoded = []
    for number, raw in enumerate(lines, start=1):
        try:
            decoded.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            reason = f"invalid UTF-8 at byte {exc.start} of the line"
            if not skip_bad:
                raise DataError(reason + " (the file must be UTF-8 encoded)", path, number) from None
            result.note_skip(f"{path}:{number}: {reason}")
            decoded.append(None)
    return decoded


def _check_fields(obj: Any, required: Sequence[str]) -> dict[str, str]:
    """Return the record with the required string fields, or raise ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object with fields {', '.join(required)}, got {type(obj).__name__}")
    record = {}
    for name in required:
        if name not in obj:
            raise ValueError(f"missing field {name!r}")
        value = obj[name]
        if not isinstance(value, str):
            raise ValueError(f"field {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError(f"field {name!r} is empty")
        record[name] = value.strip()
    return record


def _add(result: ReadResult, path: Path, line: int, skip_bad: bool, make) -> None:
    try:
        result.records.append(make())
    except ValueError as exc:
        if not skip_bad:
            raise DataError(str(exc), path, line) from None
        result.note_skip(f"{path}:{line}: {exc}")


def read_records(path: str | os.PathLike, *, required: Sequence[str] = ("src", "tgt"), fmt: str | None = None,
                 column: str | None = None, skip_bad: bool = False) -> ReadResult:
    """Read records with the ``required`` string fields from ``path`` (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a regular file", path)
    data = path.read_bytes()
    result = ReadResult(records=[])
    lines = _decode(path, data, skip_bad, result)
    fmt = fmt or detect_format(path, "\n".join(line for line in lines[:5] if line is not None))
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", path)
    if fmt == "jsonl":
        _read_jsonl(path, lines, required, skip_bad, result)
    elif fmt == "json":
        _read_json_array(path, lines, required, skip_bad, result)
    elif fmt == "text":
        _read_text(path, lines, required, skip_bad, result)
    else:
        _read_csv(path, lines, required, column, skip_bad, result)
    return result


def _read_jsonl(path, lines, required, skip_bad, result) -> None:
    for number, line in enumerate(lines, start=1):
        if line is None or not line.strip():
            continue

        def make(line=line):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"broken JSON ({exc.msg} at column {exc.colno})") from None
            return _check_fields(obj, required)

        _add(result, path, number, skip_bad, make)


def _read_json_array(path, lines, required, skip_bad, result) -> None:
    if any(line is None for line in lines):
        raise DataError("invalid UTF-8 inside a JSON array; the whole file must be valid UTF-8", path)
    text = "\n".join(lines)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"broken JSON ({exc.msg} at column {exc.colno})", path, exc.lineno) from None
    if not isinstance(items, list):
        raise DataError(f"expected a JSON array of objects, got {type(items).__name__}", path)
    # Line numbers of array elements: decode incrementally to know where each element starts.
    starts = _array_element_lines(text, len(items))
    for index, obj in enumerate(items):
        _add(result, path, starts[index], skip_bad, lambda obj=obj, index=index: _with_index(index, obj, required))


def _with_index(index: int, obj: Any, required: Sequence[str]) -> dict[str, str]:
    try:
        return _check_fields(obj, required)
    except ValueError as exc:
        raise ValueError(f"array element {index}: {exc}") from None


def _array_element_lines(text: str, count: int) -> list[int]:
    """1-based line where each top-level array element starts."""
    decoder = json.JSONDecoder()
    lines, position = [], text.index("[") + 1
    for _ in range(count):
        while text[position] in " \t\r\n,":
            position += 1
        lines.append(text.count("\n", 0, position) + 1)
        _, position = decoder.raw_decode(text, position)
    return lines


def _read_text(path, lines, required, skip_bad, result) -> None:
    if tuple(required) not in (("tgt",), ("src",)):
        raise DataError(f"plain text holds one address per line; it cannot provide fields {', '.join(required)}."
                        " Use JSON lines with those fields", path)
    name = required[0]
    for number, line in enumerate(lines, start=1):
        if line is not None and line.strip():
            result.records.append({name: line.strip()})


def _read_csv(path, lines, required, column, skip_bad, result) -> None:
    text = "\n".join("" if line is None else line for line in lines)
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, None)
    if not header:
        raise DataError("empty CSV file: expected a header row", path)
    header = [name.strip() for name in header]
    mapping = {name: name for name in required}
    if column is not None:
        if len(required) != 1:
            raise DataError(f"--column gives one field, but {', '.join(required)} are needed", path)
        mapping = {required[0]: column}
    missing = [source for source in mapping.values() if source not in header]
    if missing:
        hint = " (name the address column with --column)" if column is None else ""
        raise DataError(f"CSV header has no column {', '.join(map(repr, missing))}{hint}; columns are "
                        f"{', '.join(header)}", path, 1)
    positions = {target: header.index(source) for target, source in mapping.items()}
    for row in reader:
        number = reader.line_num
        if lines[number - 1] is None or not any(cell.strip() for cell in row):
            continue

        def make(row=row):
            if len(row) < len(header):
                raise ValueError(f"row has {len(row)} cells, header has {len(header)}")
            return _check_fields({target: row[i] for target, i in positions.items()}, list(mapping))

        _add(result, path, number, skip_bad, make)


# ---------------------------------------------------------------- writing


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to replace an existing file or non-empty folder unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        if path.is_dir() and not any(path.iterdir()):
            return path
        raise OutputExistsError(path)
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[io.TextIOBase]:
    """Write to a temporary file next to ``path`` and rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, mode, encoding=None if "b" in mode else "utf-8",
                       newline=None if "b" in mode else "\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def json_line(record: dict[str, Any]) -> str:
    """Compact, key-order-preserving, non-ASCII-preserving JSON line (stable bytes for a given record)."""
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n"


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Atomically write records as JSON lines; returns how many were written."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json_line(record))
            count += 1
    return count


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")
