"""The keys of a training config and their values before any check: PaddleNLP ``llm/run_finetune.py``'s
vocabulary, the config file read, command-line overrides parsed and every value typed.

A config is one JSON object, e.g. PaddleNLP's ``llm/config/qwen/lora_argument_0p5b.json``. Its keys are
the fields of ``paddlenlp.trl``'s ``ModelConfig``, ``DataConfig`` and ``SFTConfig`` (the dataclasses
run_finetune parses), plus what run_finetune lacks (:data:`EXTRA_KEYS`). Keys starting with ``_`` are
comments (JSON has none) and are ignored. Command-line ``--key value`` pairs override the file and are typed by
the same field types (a true/false word as :mod:`..flags` reads it). An unknown key names the closest valid one.
:mod:`.config` checks the values and builds the TrainConfig.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data import dataio
from ..data.gazetteer import DEFAULT_DETAIL, DETAILS
from ..data.prompt import DECODINGS, GROUNDINGS
from ..errors import ConfigError, closest_match
from ..flags import user_path
from ..flags import is_true_word

COMMENT_PREFIX = "_"


@dataclass(frozen=True)
class KeySpec:
    """One accepted config key: where it goes and what values it takes."""

    name: str
    group: str  # "model", "data", "training" or "extra"
    kind: str  # bool, int, float, str, str_list, int_list, int_list_list, dict
    optional: bool
    default: Any
    choices: tuple[str, ...] = ()
    help: str = ""


# Keys run_finetune does not have. lora_alpha=None means run_finetune's own choice: 2 * lora_rank (4 with rslora).
EXTRA_KEYS = (
    KeySpec("lora_alpha", "extra", "float", True, None,
            help="LoRA scaling numerator; default 2*lora_rank (4 with rslora)"),
    KeySpec("lora_dropout", "extra", "float", False, 0.0, help="dropout on the LoRA branch"),
    KeySpec("target_modules", "extra", "str_list", True, None,
            help="layers that get LoRA (names like q_proj or regexes); default: every attention and MLP projection"),
    KeySpec("trainable_modules", "extra", "str_list", True, None,
            help="parameter-name regexes trained fully next to LoRA and saved in the adapter, e.g. [\".*norm.*\"]"),
    KeySpec("eval_samples", "extra", "int", True, None,
            help="dev pairs used by evaluation during training (loss and greedy exact match); null = all"),
    KeySpec("eval_max_new_tokens", "extra", "int", True, None,
            help="generation limit during evaluation; default: longest dev answer + 2 tokens"),
    KeySpec("grounding", "extra", "str", False, "candidates", choices=GROUNDINGS,
            help="candidates: the prompt carries the gazetteer's candidate chains (prompt.user_message); "
                 "none: the plain seed-tutorial prompt. Predict/serve/evaluate must use the same setting"),
    KeySpec("no_candidate_rate", "extra", "float", False, 0.1,
            help="share of training examples (grounded prompts) shown with their candidates withheld (候选: 无), "
                 "so the model learns to write the answer itself when the gazetteer finds nothing; the others list "
                 "their candidates in a seeded per-example shuffle"),
    KeySpec("decoding", "extra", "str", False, "constrained", choices=DECODINGS,
            help="how eval_accuracy decodes during training: constrained (choose among the gazetteer's "
                 "candidates) or free (greedy generation)"),
    KeySpec("detail", "extra", "str", False, DEFAULT_DETAIL, choices=DETAILS,
            help="verbatim: answers keep every character written after the division names (prepare's default); "
                 "clean: the earlier folding. Use the setting the data was prepared with, and the same at predict, "
                 "serve and evaluate"),
    KeySpec("group_by_length", "extra", "bool", False, True,
            help="batch samples of similar length together (seeded, like Hugging Face's group_by_length): less "
                 "padding and few distinct batch shapes, so memory stays flat; false: plain seeded shuffle"),
    KeySpec("safe_serialization", "extra", "bool", False, True,
            help="write the adapter (or model) and checkpoints as safetensors (PaddleNLP's unified checkpoint); "
                 "false: the older pickled .pdparams layout"),
)
# Keys of PaddleFormers' YAML configs (examples/config/sft/*.yaml, its `paddleformers-cli train`) that
# run_finetune's vocabulary spells differently or lacks: named together in one error, each with what to write here.
# PaddleFormers' other keys (model_name_or_path, lora, lora_rank, learning_rate, ...) are run_finetune's own.
PADDLEFORMERS_KEYS = {
    "train_dataset_path": "give dataset_name_or_path, a folder holding train.json (and dev.json), src/tgt pairs",
    "eval_dataset_path": "put dev.json in the dataset_name_or_path folder",
    "train_dataset_type": "pair files are run_finetune's src/tgt JSON lines; drop it",
    "eval_dataset_type": "pair files are run_finetune's src/tgt JSON lines; drop it",
    "train_dataset_prob": "one dataset per run; drop it", "eval_dataset_prob": "one dataset per run; drop it",
    "mix_strategy": "one dataset per run; drop it",
    "max_seq_len": "write max_length (source and answer together)",
    "packing": "write zero_padding (packs samples into rows)",
    "stage": "only supervised fine-tuning exists here; drop it",
    "fine_tuning": "write lora: true for LoRA (false: full fine-tuning)",
    "attn_impl": "attention is PaddleNLP's own on CPU; drop it",
}


# ---------------------------------------------------------------- key vocabulary


def _kind_of(annotation: Any) -> tuple[str, bool, tuple[str, ...]]:
    """(kind, optional, choices) of a dataclass field annotation."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        annotation = members[0] if len(members) == 1 else str
        origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "str", optional, tuple(str(member.value) for member in annotation)
    if annotation in (bool, int, float, str):
        return annotation.__name__, optional, ()
    if origin in (list, typing.List):
        (item,) = typing.get_args(annotation) or (str,)
        if item is int:
            return "int_list", optional, ()
        if typing.get_origin(item) in (list, typing.List):
            return "int_list_list", optional, ()
        return "str_list", optional, ()
    if annotation is dict or origin is dict:
        return "dict", optional, ()
    return "str", optional, ()


def key_vocabulary() -> dict[str, KeySpec]:
    """Every accepted key, from PaddleNLP's own dataclasses (imports paddlenlp) plus :data:`EXTRA_KEYS`."""
    from paddlenlp.trl import DataConfig, ModelConfig, SFTConfig

    vocabulary: dict[str, KeySpec] = {}
    for group, cls in (("model", ModelConfig), ("data", DataConfig), ("training", SFTConfig)):
        for item in dataclasses.fields(cls):
            kind, optional, choices = _kind_of(item.type)
            default = item.default if item.default is not dataclasses.MISSING else None
            vocabulary[item.name] = KeySpec(item.name, group, kind, optional or default is None, default, choices,
                                            item.metadata.get("help", ""))
    for spec in EXTRA_KEYS:
        vocabulary[spec.name] = spec
    return vocabulary


# ---------------------------------------------------------------- reading and typing values


def _key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level-looking ``"key":`` in a JSON text (for error messages)."""
    lines = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for match in re.finditer(r'"([^"\\]+)"\s*:', line):
            lines.setdefault(match.group(1), number)
    return lines


@dataclass
class RawConfig:
    """A config file's values before validation, with where each came from."""

    values: dict[str, Any]
    origins: dict[str, str]  # key -> "file.json:12" or "command line --key"
    source: str | None = None


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: a dict, or _DuplicateKey for a key written twice in one object."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _looks_like_yaml(text: str) -> bool:
    """Whether the first line that is no comment, blank or ``---`` is a YAML ``key:`` line."""
    lines = [line for line in text.splitlines() if line.strip() not in ("", "---") and not line.lstrip().startswith("#")]
    return bool(lines) and re.match(r"\s*[A-Za-z_][\w.-]*\s*:", lines[0]) is not None


def read_config_file(path: str | os.PathLike) -> RawConfig:
    """The JSON object in ``path`` (comment keys dropped), or a ConfigError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found" if not path.exists() else f"{path} is not a file")
    text = dataio.read_utf8_text(path)
    if not text.strip():
        raise ConfigError(f"{path} is empty; write a JSON object of run_finetune keys, e.g. configs/tiny_cpu.json")
    try:
        values = dataio.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        hint = ""
        if path.suffix.lower() in (".yaml", ".yml") or _looks_like_yaml(text):
            hint = ("; train takes a JSON config in PaddleNLP run_finetune's vocabulary (YAML is for evaluate; a "
                    "PaddleFormers YAML's keys mostly carry over, written as JSON), e.g. configs/tiny_cpu.json")
        raise ConfigError(f"{path}:{exc.lineno}: broken JSON ({dataio.json_error(exc)}){hint}") from None
    except _DuplicateKey as exc:
        lines = [number for number, line in enumerate(text.splitlines(), 1) if f'"{exc.key}"' in line]
        where = f" (lines {', '.join(map(str, lines))})" if len(lines) > 1 else ""
        raise ConfigError(f"{path}: key {exc.key!r} is given twice{where}; JSON keeps only the last one silently, "
                          "so give each key once") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of run_finetune keys, got {type(values).__name__}")
    lines = _key_lines(text)
    kept = {key: value for key, value in values.items() if not key.startswith(COMMENT_PREFIX)}
    origins = {key: f"{path}:{lines[key]}" if key in lines else str(path) for key in kept}
    return RawConfig(kept, origins, str(path))


class _BareFlag(str):
    """A ``--key`` given without a value: "true" for a boolean key, an error for any other (typed_value)."""


# Keys whose command-line value is a local path (or a model name, left as given unless it starts with ~).
PATH_KEYS = frozenset({"model_name_or_path", "tokenizer_name_or_path", "lora_path", "dataset_name_or_path", "output_dir",
                       "logging_dir", "resume_from_checkpoint"})


def parse_overrides(tokens: Sequence[str]) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs; a ``--flag`` followed by another ``--key`` (or nothing) is true.
    ConfigError for a key given twice, in either spelling."""
    overrides: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"unexpected command-line argument {token!r}: overrides are written --key value")
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is None or (following.startswith("--") and len(following) > 2):
                value = _BareFlag("true")
            else:
                value = following
                index += 1
        key = key.replace("-", "_")
        if key in overrides:  # the last would win silently, as argparse did before flags.GivenOnce
            raise ConfigError(f"--{key} is given twice on the command line: {overrides[key]!s} and {value!s}; "
                              "give it once")
        # the shell leaves ~ alone after = (--output_dir=~/runs); expanded as every command-line path is
        overrides[key] = user_path(value) if key in PATH_KEYS and not isinstance(value, _BareFlag) else value
        index += 1
    return overrides


_KIND_NAMES = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
               "str_list": "a string or a list of strings", "int_list": "a list of integers",
               "int_list_list": "a list of integer lists", "dict": "a JSON object"}


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return f"{json.dumps(value, ensure_ascii=False)} ({names.get(type(value), type(value).__name__)})"


def _from_text(text: str, spec: KeySpec) -> Any:
    """A command-line string as the field's type (raises ValueError when it is not one)."""
    if spec.optional and text.lower() in ("none", "null"):
        return None
    if spec.kind == "bool":
        value = is_true_word(text)
        if value is None:
            raise ValueError(text)
        return value
    if spec.kind == "int":
        return int(text)
    if spec.kind == "float":
        return float(text)
    if spec.kind in ("str_list", "int_list", "int_list_list", "dict"):
        if text.lstrip().startswith(("[", "{")):
            return json.loads(text)
        if spec.kind == "str_list":
            return [item.strip() for item in text.split(",") if item.strip()]
        return json.loads(text)
    return text


def _check_type(value: Any, spec: KeySpec) -> bool:
    if value is None:
        return spec.optional
    kind = spec.kind
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "str_list":
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value))
    if kind == "int_list":
        return isinstance(value, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    if kind == "int_list_list":
        return isinstance(value, list) and all(isinstance(row, list) for row in value)
    return isinstance(value, dict)


def typed_value(key: str, value: Any, spec: KeySpec, origin: str) -> Any:
    """``value`` checked (and, from the command line, converted) against the key's type and choices."""
    if isinstance(value, _BareFlag) and spec.kind != "bool":  # --output_dir with its value forgotten: not "true"
        raise ConfigError(f"{origin}: {key} needs a value (--{key} VALUE); only true/false keys may stand alone")
    if isinstance(value, str) and origin.startswith("command line") and spec.kind != "str":
        try:
            value = _from_text(value, spec)
        except (ValueError, json.JSONDecodeError):
            raise ConfigError(f"{origin}: {key} must be {_KIND_NAMES[spec.kind]}, got {value!r}") from None
    if not _check_type(value, spec):
        expected = _KIND_NAMES[spec.kind] + (" or null" if spec.optional else "")
        raise ConfigError(f"{origin}: {key} must be {expected}, got {_describe(value)}")
    if spec.kind == "float" and value is not None:
        value = float(value)
        if not math.isfinite(value):  # JSON's NaN / Infinity, or --key inf: training would only produce nan
            raise ConfigError(f"{origin}: {key} must be a finite number, got {value}")
    if spec.choices and value is not None and value not in spec.choices:
        hint = closest_match(value, spec.choices)
        raise ConfigError(f"{origin}: {key} must be one of {', '.join(spec.choices)}; got {value!r}"
                          + (f" (did you mean {hint!r}?)" if hint else ""))
    return value


def merge_values(raw: RawConfig, overrides: Mapping[str, str], vocabulary: Mapping[str, KeySpec]) -> RawConfig:
    """File values with command-line overrides on top; unknown keys fail with the closest valid key."""
    values, origins = dict(raw.values), dict(raw.origins)
    for key, value in overrides.items():
        values[key] = value
        origins[key] = f"command line --{key}"
    foreign = [key for key in values if key in PADDLEFORMERS_KEYS and key not in vocabulary]
    if foreign:
        raise ConfigError("PaddleFormers keys, which this trainer (PaddleNLP run_finetune's vocabulary) does not read: "
                          + "; ".join(f"{origins[key]}: {key}: {PADDLEFORMERS_KEYS[key]}" for key in foreign))
    for key in values:
        if key not in vocabulary:
            hint = closest_match(key, vocabulary)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            extras = ", ".join(spec.name for spec in EXTRA_KEYS)
            raise ConfigError(f"{origins[key]}: unknown key {key!r}{suggestion} (keys are run_finetune's "
                              f"ModelConfig/DataConfig/SFTConfig fields plus {extras})")
    typed = {key: typed_value(key, value, vocabulary[key], origins[key]) for key, value in values.items()}
    return RawConfig(typed, origins, raw.source)
