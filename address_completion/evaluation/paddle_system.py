"""The ``paddle`` system: a model folder (base, merged, or base + ``lora_path`` adapter) run here with
:class:`address_completion.inference.generate.Completer` — the training prompt builder and its decoding (free or
constrained, grounded or not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationInfo, model_validator

from .. import runtime
from ..data.gazetteer import DETAILS
from ..data.prompt import DECODINGS, GROUNDINGS
from ..errors import ConfigError
from ..inference.generate import Completer, check_min_confidence
from ..model.gguf_import import is_gguf_path
from ..model.modeling import check_model_source
from ..model.package_files import is_package_path, local_model_path
from ..runtime import logger, looks_like_local_path
from .settings_model import choice, integer, number, text
from .systems import (DEVICES, DTYPES, Answer, EvalSettings, System, SystemOptions, SystemSpec, files_stamp,
                      gazetteer_stamp, where_of)


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
