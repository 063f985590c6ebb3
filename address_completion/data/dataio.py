"""Reading address data in the formats users have, and writing records (JSON lines) through :mod:`..files`.

Formats (chosen by ``fmt``, else by the file extension, else by sniffing the first line):
- ``jsonl``: one JSON object per line, e.g. ``{"src": "补齐五级行政地址: 碑林区…", "tgt": "陕西省西安市碑林区…"}``
- ``json``: a JSON array of such objects
- ``text``: one full address per line (becomes ``{"tgt": line}``)
- ``csv``: a header row; ``column`` names the full-address column, or ``src``/``tgt`` columns give pairs
  (``.tsv`` files are tab-separated)

JSON and JSON-lines records may also be in the alpaca, sharegpt or OpenAI ``messages`` layout
(:mod:`.formats`): the first record's keys decide the layout of the whole file (or ``fmt`` names it), each record
becomes ``{"src", "tgt"}``, and :attr:`ReadResult.layout` says which layout was read. A record in no known
layout is one error naming the keys found and the layouts accepted.

A bad record (broken JSON, missing / empty / non-string field, invalid UTF-8) raises :class:`DataError`
naming file and line, unless ``skip_bad`` is set, in which case it is counted in
:attr:`ReadResult.skipped` (with the first few reasons kept for reporting). A UTF-8 byte-order mark is
ignored. Field values are returned stripped of surrounding whitespace.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from ..errors import DataError
from ..files import atomic_write, atomic_write_text
from . import formats

# File safety moved to address_completion/files.py. These names stay importable from here only for the modules
# other work was changing at the time (training/train.py, evaluation/evaluate.py, evaluation/report.py,
# bench/real_model_learning.py): switch them to `files` and delete this block.
from ..files import (apply_umask_to_files, check_apart, check_output_folder, check_writable,  # noqa: F401
                     output_lock)

FORMATS = ("jsonl", "json", "text", "csv")
EXTENSION_FORMATS = {".jsonl": "jsonl", ".json": None, ".txt": "text", ".text": "text", ".csv": "csv", ".tsv": "csv"}
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAX_KEPT_REASONS = 5
# Python type -> the JSON word a user recognises in an error message.
JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
                   bool: "boolean", type(None): "null"}


@dataclass
class ReadResult:
    """Records read from one file plus what was skipped."""

    records: list[dict[str, str]]
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)
    layout: Optional[str] = None  # formats.LAYOUTS: how JSON records were laid out (None: not JSON, or no record)
    fixed_layout: bool = False  # the caller named the layout: no detection

    def describe(self) -> str:
        """The record layout for a log line, e.g. "alpaca (detected)"."""
        return f"{self.layout or 'src_tgt'} ({'given' if self.fixed_layout else 'detected'})"

    def note_skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.skip_reasons) < MAX_KEPT_REASONS:
            self.skip_reasons.append(reason)


def detect_format(path: Path, first_line: str) -> str:
    """Format from the extension; ``.json`` and unknown extensions are sniffed from the first non-empty line."""
    suffix = path.suffix.lower()
    fmt = EXTENSION_FORMATS.get(suffix, None)
    if fmt is not None:
        return fmt
    start = first_line.lstrip()[:1]
    if start == "[":
        return "json"
    if start == "{" or suffix == ".json":
        return "jsonl"
    return "text"


def read_records(path: str | os.PathLike, *, required: Sequence[str] = ("src", "tgt"), fmt: Optional[str] = None,
                 column: Optional[str] = None, skip_bad: bool = False) -> ReadResult:
    """Read records with the ``required`` string fields from ``path`` (see module docstring).

    ``fmt`` is a file format (:data:`FORMATS`) or a record layout (:data:`formats.LAYOUTS`, JSON / JSON lines)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a regular file", path)
    result = ReadResult(records=[])
    if fmt in formats.LAYOUTS:
        result.layout, result.fixed_layout, fmt = fmt, True, None
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS + formats.LAYOUTS)}", path)
    lines, bad_lines = _decode_lines(path, path.read_bytes())
    fmt = fmt or detect_format(path, next((line for line in lines if line and line.strip()), ""))
    if result.fixed_layout and fmt not in ("json", "jsonl"):
        raise DataError(f"the {result.layout} format is JSON or JSON lines, but this file reads as {fmt}", path)
    if fmt == "json":
        _read_json_array(path, lines, bad_lines, required, skip_bad, result)
        return result
    if fmt == "jsonl":
        _read_jsonl(path, lines, bad_lines, required, skip_bad, result)
    elif fmt == "text":
        _read_text(path, lines, bad_lines, required, skip_bad, result)
    else:
        _read_csv(path, lines, bad_lines, required, column, skip_bad, result)
    return result


def _decode_lines(path: Path, data: bytes) -> tuple[list[Optional[str]], dict[int, str]]:
    """Lines as text (None where a line is not UTF-8) and {line number: reason} for the bad ones.

    Decoding line by line, not the whole file, is what lets an error name the bad line.
    """
    if data.startswith(UTF16_BOMS):
        raise DataError("the file is UTF-16 encoded; save it as UTF-8", path)
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    lines: list[Optional[str]] = []
    bad_lines: dict[int, str] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            bad_lines[number] = f"invalid UTF-8 at byte {exc.start + 1} of the line (the file must be UTF-8 encoded)"
            lines.append(None)
    return lines, bad_lines


def read_utf8_text(path: str | os.PathLike) -> str:
    """The whole text of a UTF-8 file (a leading byte-order mark dropped), for config and model JSON files.

    Raises DataError naming the file (and the line and byte for invalid UTF-8) instead of a UnicodeDecodeError.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", path) from None
    if data.startswith(UTF16_BOMS):
        raise DataError("the file is UTF-16 encoded; save it as UTF-8", path)
    data = data[len(UTF8_BOM):] if data.startswith(UTF8_BOM) else data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"invalid UTF-8 at byte {column} of the line (the file must be UTF-8 encoded)", path,
                        line) from None


def read_json_file(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """A UTF-8 JSON file's value; DataError naming the file, line and column for broken JSON or bad UTF-8
    (``what`` says what the file is, e.g. "model config")."""
    text = read_utf8_text(path)
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"broken JSON in the {what} ({json_error(exc)})", path, exc.lineno) from None


def _reject(result: ReadResult, path: Path, line: int, reason: str, skip_bad: bool) -> None:
    """Raise for a bad record, or count it when the user asked to skip bad records."""
    if not skip_bad:
        raise DataError(reason, path, line)
    result.note_skip(f"{path}:{line}: {reason}")


def _reject_undecodable(result: ReadResult, path: Path, bad_lines: dict[int, str], numbers: Iterable[int],
                        skip_bad: bool) -> bool:
    """Reject the record if one of its lines is not UTF-8; True when it was rejected."""
    number = next((number for number in numbers if number in bad_lines), None)
    if number is None:
        return False
    _reject(result, path, number, bad_lines[number], skip_bad)
    return True


def _add(result: ReadResult, path: Path, line: int, skip_bad: bool, make: Callable[[], dict[str, str]]) -> None:
    try:
        result.records.append(make())
    except ValueError as exc:
        _reject(result, path, line, str(exc), skip_bad)


def _json_type(value: Any) -> str:
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _check_fields(obj: Any, required: Sequence[str]) -> dict[str, str]:
    """The record with the required string fields (stripped), or ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object with fields {', '.join(required)}, got {_json_type(obj)}")
    record = {}
    for name in required:
        if name not in obj:
            raise ValueError(f"missing field {name!r}")
        value = obj[name]
        if not isinstance(value, str):
            raise ValueError(f"field {name!r} must be a string, got {_json_type(value)}")
        if not value.strip():
            raise ValueError(f"field {name!r} is empty")
        surrogate = _first_lone_surrogate(value)
        if surrogate is not None:  # JSON "\ud800" escapes decode to characters no UTF-8 file can hold
            raise ValueError(f"field {name!r} contains an unpaired surrogate escape \\u{ord(surrogate):04x}")
        record[name] = value.strip()
    return record


# What the src / tgt of a converted record were called in its own layout (error messages name those).
LAYOUT_FIELDS = {"alpaca": {"'src'": "'instruction'/'input'", "'tgt'": "'output'"},
                 "sharegpt": {"'src'": "the user turn", "'tgt'": "the assistant turn"},
                 "messages": {"'src'": "the user message", "'tgt'": "the assistant message"}}


def _check_laid_out(obj: Any, required: Sequence[str], result: ReadResult) -> dict[str, str]:
    """:func:`_check_fields` after turning a record of another layout (:mod:`.formats`) into src/tgt. The first
    record fixes the file's layout unless the caller named it; a record of another layout is refused."""
    if not isinstance(obj, dict) or not set(required) <= {"src", "tgt"}:
        return _check_fields(obj, required)
    layout = formats.detect_layout(obj)
    if result.layout is None:
        if layout is None:
            raise ValueError(formats.unknown_layout(obj))
        result.layout = layout
    elif not result.fixed_layout and layout != result.layout:
        raise ValueError(formats.unknown_layout(obj) if layout is None else
                         f"a record in {layout} format, but the file's first record is in {result.layout} format "
                         "(one format per file)")
    if result.layout == "src_tgt":
        return _check_fields(obj, required)
    try:
        return _check_fields(formats.to_pair(obj, result.layout), required)
    except ValueError as error:
        message = str(error)
        for ours, theirs in LAYOUT_FIELDS[result.layout].items():
            message = message.replace(f"field {ours}", f"field {ours} ({theirs})")
        raise ValueError(message) from None


def _first_lone_surrogate(text: str) -> Optional[str]:
    return next((char for char in text if 0xD800 <= ord(char) <= 0xDFFF), None)


TOO_DEEP = "nested deeper than Python's JSON parser can follow"


def loads(text: str, **options: Any) -> Any:
    """``json.loads``, but JSON nested past Python's recursion limit (``[[[[…``) raises JSONDecodeError with
    :data:`TOO_DEEP` like any other broken JSON, not RecursionError."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, text, 0) from None


def json_error(exc: json.JSONDecodeError, line: bool = False) -> str:
    """json's complaint with its place, e.g. ``"Expecting ',' delimiter at column 9"`` (``line``: "at line 1
    column 9"). json's "Unterminated string starting at" loses its own dangling "at" (it would read "at at")."""
    if exc.msg == TOO_DEEP:  # no place: the parser gave up inside the nesting
        return TOO_DEEP
    place = f"line {exc.lineno} column {exc.colno}" if line else f"column {exc.colno}"
    return f"{exc.msg.removesuffix(' at')} at {place}"


def _parse_json(text: str) -> Any:
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"broken JSON ({json_error(exc)})") from None


def _read_jsonl(path: Path, lines: list[Optional[str]], bad_lines: dict[int, str], required: Sequence[str],
                skip_bad: bool, result: ReadResult) -> None:
    for number, line in enumerate(lines, start=1):
        if _reject_undecodable(result, path, bad_lines, [number], skip_bad) or not line.strip():
            continue
        _add(result, path, number, skip_bad,
             lambda line=line: _check_laid_out(_parse_json(line), required, result))


def _read_json_array(path: Path, lines: list[Optional[str]], bad_lines: dict[int, str], required: Sequence[str],
                     skip_bad: bool, result: ReadResult) -> None:
    if bad_lines:  # one bad byte breaks the whole array, so this cannot be skipped
        number, reason = next(iter(bad_lines.items()))
        raise DataError(reason + "; a bad line cannot be skipped inside a JSON array", path, number)
    text = "\n".join(lines)
    try:
        items = loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"broken JSON ({json_error(exc)})", path, exc.lineno) from None
    if not isinstance(items, list):
        raise DataError(f"expected a JSON array of objects, got {_json_type(items)}", path)
    for index, (obj, number) in enumerate(zip(items, _array_element_lines(text, len(items)))):
        _add(result, path, number, skip_bad,
             lambda obj=obj, index=index: _array_element(index, obj, required, result))


def _array_element(index: int, obj: Any, required: Sequence[str], result: ReadResult) -> dict[str, str]:
    try:
        return _check_laid_out(obj, required, result)
    except ValueError as exc:
        raise ValueError(f"array element {index}: {exc}") from None


def _array_element_lines(text: str, count: int) -> list[int]:
    """1-based line where each top-level array element starts (the text is known to parse)."""
    decoder = json.JSONDecoder()
    starts, position = [], text.index("[") + 1
    for _ in range(count):
        while text[position] in " \t\r\n,":
            position += 1
        starts.append(text.count("\n", 0, position) + 1)
        _, position = decoder.raw_decode(text, position)
    return starts


def _read_text(path: Path, lines: list[Optional[str]], bad_lines: dict[int, str], required: Sequence[str],
               skip_bad: bool, result: ReadResult) -> None:
    if len(required) != 1:
        raise DataError(f"plain text holds one address per line; it cannot provide the fields "
                        f"{', '.join(required)}. Use JSON lines, a JSON array or CSV with those fields", path)
    name = required[0]
    for number, line in enumerate(lines, start=1):
        if not _reject_undecodable(result, path, bad_lines, [number], skip_bad) and line.strip():
            result.records.append({name: line.strip()})


def _read_csv(path: Path, lines: list[Optional[str]], bad_lines: dict[int, str], required: Sequence[str],
              column: Optional[str], skip_bad: bool, result: ReadResult) -> None:
    mapping = _csv_field_mapping(path, required, column)
    # Undecodable lines become blank so the parser keeps its line count; the record holding one is rejected.
    # strict: an unclosed quote raises instead of swallowing every following row into one cell
    reader = csv.reader(io.StringIO("\n".join(line or "" for line in lines)),
                        "excel-tab" if path.suffix.lower() == ".tsv" else "excel", strict=True)
    first_line = 1
    try:
        header, header_line = _csv_header(path, reader, bad_lines)
        missing = [source for source in mapping.values() if source not in header]
        if missing:
            # --column names the one address column of an address list; pair files need src and tgt columns
            hint = " (name the address column with --column)" if column is None and len(required) == 1 else (
                " (a pair file needs the columns src and tgt; rename them in the header)" if column is None else "")
            raise DataError(f"CSV header has no column {', '.join(map(repr, missing))}{hint}; the columns are: "
                            f"{', '.join(repr(name) for name in header)}", path, header_line)
        positions = {target: header.index(source) for target, source in mapping.items()}
        first_line = reader.line_num + 1
        for row in reader:
            record_lines = range(first_line, reader.line_num + 1)  # a quoted cell may span lines
            first_line = reader.line_num + 1
            if (_reject_undecodable(result, path, bad_lines, record_lines, skip_bad)
                    or not any(cell.strip() for cell in row)):
                continue
            _add(result, path, record_lines[0], skip_bad, lambda row=row: _csv_record(row, header, positions))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DataError("malformed CSV: a quoted cell opened in this record is never closed (a stray \" ?)",
                            path, first_line) from None
        raise DataError(f"malformed CSV ({exc})", path, reader.line_num) from None


def _csv_field_mapping(path: Path, required: Sequence[str], column: Optional[str]) -> dict[str, str]:
    """Record field -> CSV column name."""
    if column is None:
        return {name: name for name in required}
    if len(required) != 1:
        raise DataError(f"--column names one column, but the fields {', '.join(required)} are needed; "
                        "give the CSV columns those names", path)
    return {required[0]: column}


def _csv_header(path: Path, reader: Any, bad_lines: dict[int, str]) -> tuple[list[str], int]:
    for row in reader:
        if reader.line_num in bad_lines:
            raise DataError("the CSV header row: " + bad_lines[reader.line_num], path, reader.line_num)
        if any(cell.strip() for cell in row):
            return [name.strip() for name in row], reader.line_num
    raise DataError("empty CSV file: expected a header row", path)


def _csv_record(row: list[str], header: list[str], positions: dict[str, int]) -> dict[str, str]:
    if len(row) < len(header):
        raise ValueError(f"row has {len(row)} cells, the header has {len(header)}")
    if any(cell.strip() for cell in row[len(header):]):  # trailing empty cells (spreadsheet exports) are harmless
        raise ValueError(f"row has {len(row)} cells, the header has {len(header)} (a separator inside an address? "
                         "quote that cell)")
    return _check_fields({target: row[index] for target, index in positions.items()}, list(positions))


def json_line(record: dict[str, Any]) -> str:
    """Compact, key-order-preserving, non-ASCII-preserving JSON line (stable bytes for a given record)."""
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n"


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]], *, overwrite: bool = True) -> int:
    """Atomically write records as JSON lines; returns how many were written (``overwrite``: see atomic_write)."""
    count = 0
    with atomic_write(path, overwrite=overwrite) as handle:
        for record in records:
            handle.write(json_line(record))
            count += 1
    return count


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")
