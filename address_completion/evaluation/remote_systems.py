"""Systems whose answers are made elsewhere.

- ``openai``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, Ollama, DashScope's
  compatible mode, this project's own ``serve``). The user message is ``prompt.user_message(address)``,
  exactly the one the model was trained on (``grounding: candidates`` adds the gazetteer's candidate
  chains, as for a grounded paddle system); temperature 0 (greedy); timeouts and retries with backoff.
- ``predictions``: a JSONL file produced elsewhere, lines ``{"prompt" or "src", "predict"}`` (optional
  ``"abstained": bool``), matched to the test set by input.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import ValidationInfo, model_validator

from ..data import dataio
from ..data.matching import normalize_text
from ..data.prompt import GROUNDINGS, strip_prefix
from ..data.prompt import user_message as prompt_user_message  # user_message here reads a rendered prompt back
from ..errors import AddressCompletionError, ConfigError, DataError
from ..runtime import logger
from .settings_model import choice, integer, number, text
from .systems import (Answer, EvalSettings, System, SystemOptions, SystemSpec, abstain, files_stamp,
                      gazetteer_stamp, where_of, check_file)


class RemoteSystemError(AddressCompletionError):
    """A remote endpoint kept failing or answered something that is not a chat completion."""


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
        grounding: choice(GROUNDINGS, any_case=True) = None

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
            return abstain(address)
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
            check_file(self.path, info, "path", "predictions file")
            return self

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        super().__init__(spec, settings)
        self._table: dict[str, Answer] | None = None

    def key(self, address: str) -> str:
        """How a bare test address is matched to the file's inputs."""
        return normalize_text(address)

    def file_key(self, prompt: str) -> str:
        """:meth:`key` of the input in one line of the file: the user turn of a rendered prompt, or the text itself,
        with the prompt prefix stripped (the file's inputs are read here, the test addresses come bare)."""
        return self.key(strip_prefix(user_message(prompt), self.settings.prompt_prefix))

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
            key = self.file_key(source)
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
