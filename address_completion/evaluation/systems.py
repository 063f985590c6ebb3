"""The systems an evaluation compares, and what they share: run settings, a system's spec, the answer format and
the :class:`System` base class. Each system turns a batch of bare addresses (prompt prefix already stripped, where
evaluate reads the test file) into completions.

The kinds live by job: ``paddle`` (a model run here) in :mod:`.paddle_system`; ``openai`` (an OpenAI-compatible
endpoint) and ``predictions`` (a JSONL file made elsewhere) in :mod:`.remote_systems`; ``rules`` (jionlp, cpca,
the gazetteer's parser) and ``prior`` (the gazetteer's first candidate, or the city-frequency baseline) in
:mod:`.baselines`; :mod:`.registry` maps each ``kind:`` to its class.

Answers: ``predict`` returns, per address, either the completed text or an :data:`Answer` dict
``{"predict": str, "abstained": bool (default False), ...extra keys}``. An abstained item is one the
system declines to complete (its ``predict`` is then usually the input unchanged); extra keys such as
``candidates``, ``probability`` or ``decoding`` are stored with the prediction. See :func:`as_answer`.

Each kind declares its ``systems:`` keys as a pydantic model (``OPTIONS``: unknown keys, types, bounds and
choices), checked by :meth:`System.check_options` with the project's one-line messages.

Nothing here imports paddle, jionlp or cpca at module level.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from pydantic import ValidationInfo

from .. import DEFAULT_PROMPT_PREFIX
from ..data import gazetteer
from ..data.gazetteer import DEFAULT_DETAIL
from ..errors import AddressCompletionError, ConfigError
from .settings_model import options_base, validate_options


# One answer of System.predict: the completed address, or {"predict": str, "abstained": bool, ...extras}.
Answer = Union[str, dict[str, Any]]
# Keys of a prediction record the evaluator writes itself; an answer's extras may not use them.
RECORD_KEYS = ("prompt", "predict", "label", "latency_s", "abstained")


def as_answer(answer: Any, system: str) -> dict[str, Any]:
    """Normalize one ``predict`` result to ``{"predict": str, "abstained": bool, **extras}``.

    Raises AddressCompletionError naming the system when the answer is neither a string nor a dict with
    a string ``predict``, a boolean ``abstained`` (optional, default False) and JSON-serializable extras
    that do not reuse the record's own keys (prompt, label, latency_s).
    """
    if isinstance(answer, str):
        return {"predict": answer, "abstained": False}
    if not isinstance(answer, dict) or not isinstance(answer.get("predict"), str):
        raise AddressCompletionError(f"system {system} returned {type(answer).__name__} {answer!r:.80}; expected "
                                     'a string or {"predict": string, "abstained": bool, ...}')
    abstained = answer.get("abstained", False)
    if not isinstance(abstained, bool):
        raise AddressCompletionError(f"system {system}: 'abstained' must be true or false, got {abstained!r}")
    clash = sorted(key for key in answer if key in RECORD_KEYS and key not in ("predict", "abstained"))
    if clash:
        raise AddressCompletionError(f"system {system}: answer keys {', '.join(clash)} are reserved for the "
                                     "evaluator's record")
    try:
        json.dumps(answer, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise AddressCompletionError(f"system {system}: answer is not JSON-serializable ({exc})") from None
    return {**answer, "abstained": abstained}


DTYPES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class EvalSettings:
    """Run settings shared by all systems (a system may override the remote ones)."""

    batch_size: int = 16
    max_new_tokens: int = 64
    limit: int | None = None
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    concurrency: int = 4
    dtype: str = "float32"
    device: str = "auto"
    worst_errors: int = 10
    prompt_prefix: str = DEFAULT_PROMPT_PREFIX
    detail: str = DEFAULT_DETAIL  # gazetteer.DETAILS: "detail kept" and the paddle systems' default detail


@dataclass(frozen=True)
class SystemSpec:
    """One validated ``systems:`` entry: ``options`` are its kind-specific keys, as written."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # e.g. "configs/eval.yaml: systems[2]" for messages
    limit: int | None = None  # answer only the first N test items (the report counts each system's own total)


def files_stamp(path: str | Path | None) -> str | None:
    """Short hash of the names, sizes and modification times of the files in a local folder (or file).

    Part of a cache fingerprint: retraining into the same folder must not reuse old predictions.
    """
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    digest = hashlib.sha1()
    for item in files:
        stat = item.stat()
        digest.update(f"{item.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


SystemOptions = options_base()
# A key users write by mistake, and where its value goes instead.
EXTRA_HINTS = {"api_key": " (API keys come from an environment variable: api_key_env)"}


def where_of(info: ValidationInfo) -> str:
    """The entry's place for messages (``configs/eval.yaml: systems[2]``), given to the validation as context."""
    return (info.context or {}).get("where", "systems")


def check_file(value: str | None, info: ValidationInfo, key: str, what: str) -> None:
    """ConfigError naming the entry and ``key`` when ``value`` is set but names no file (checked with the
    config, before any system runs or any output is written)."""
    if value is not None and not Path(value).expanduser().is_file():
        raise ConfigError(f"{where_of(info)}.{key}: {what} {Path(value).expanduser()} not found")


class System:
    """Base class: ``predict`` maps bare addresses to completed addresses, in order."""

    KIND: ClassVar[str] = ""
    MEASURES_LATENCY: ClassVar[bool] = True  # False when answers are read, not computed
    OPTIONS: ClassVar[Any] = SystemOptions  # the pydantic model of this kind's keys

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        self.spec = spec
        self.settings = settings

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def check_options(cls, options: dict[str, Any], where: str, model: Any = None) -> Any:
        """Validate kind-specific values before anything runs (through ``model``, default :attr:`OPTIONS`);
        return the validated model, or raise ConfigError naming ``where``, the key and what it expects."""
        return validate_options(model or cls.OPTIONS, options, where, cls.KIND, _got, yaml_number_hint, EXTRA_HINTS)

    def unavailable_reason(self) -> str | None:
        """Why this system cannot run here (a missing optional package), or None."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """What determines this system's outputs; cached predictions are reused only if it is unchanged."""
        return {"kind": self.KIND, "prompt_prefix": self.settings.prompt_prefix}

    def check_inputs(self, addresses: list[str]) -> None:
        """Called once with every address still to predict, before the first batch."""

    def predict(self, addresses: list[str]) -> list[Answer]:
        """One :data:`Answer` per address, in order (see :func:`as_answer`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release models, threads or connections."""


def _got(value: Any) -> str:
    """How a wrong value is shown: YAML 1.1 reads yes/no/on/off as booleans, so say so when one arrives."""
    if isinstance(value, bool):
        return f"{value!r} (YAML reads yes/no/on/off as true/false: quote the word if you meant text)"
    return repr(value)


def yaml_number_hint(value: Any, integer: bool) -> str:
    """For text that is a number: how to write it so YAML reads a number. PyYAML follows YAML 1.1, which reads
    ``1e-9`` (no dot, unsigned exponent) and anything quoted as text."""
    try:
        number = float(value) if isinstance(value, str) else math.nan
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    if integer and number.is_integer():
        spelled = str(int(number))
    else:
        mantissa, _, exponent = repr(number).partition("e")
        spelled = (mantissa if "." in mantissa else mantissa + ".0") + (f"e{int(exponent):+d}" if exponent else "")
    why = "; YAML 1.1 numbers need a dot and a signed exponent" if "e" in value.lower() else ""
    return f" (YAML read it as text: write {spelled}, unquoted{why})"


def gazetteer_stamp() -> str:
    """Hash of the gazetteer package's source files: this project's parser and candidate generator decide
    answers, so a cache made with other code must not be reused."""
    digest = hashlib.sha1()
    for source in sorted(Path(gazetteer.__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def abstain(address: str) -> dict[str, Any]:
    """The answer of a system that declines to complete ``address``: the input unchanged, marked."""
    return {"predict": address, "abstained": True}

