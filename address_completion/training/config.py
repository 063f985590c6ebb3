"""Training configs in the vocabulary of PaddleNLP's ``llm/run_finetune.py``: keys, validation, overrides.

A config is one JSON object, e.g. PaddleNLP's ``llm/config/qwen/lora_argument_0p5b.json``. Its keys are
the fields of ``paddlenlp.trl``'s ``ModelConfig``, ``DataConfig`` and ``SFTConfig`` (the dataclasses
run_finetune parses), plus what run_finetune lacks (:data:`EXTRA_KEYS`). Keys starting with ``_`` are
comments (JSON has none) and are ignored.

Everything is checked before a model is loaded: an unknown key names the closest valid one, values
must have the field's type, lengths must fit, the dataset folder must hold the files the run reads,
and keys that do nothing on this device are switched off with one warning each. Command-line
``--key value`` pairs override the file and are typed by the same field types.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data import dataio
from ..errors import ConfigError, OutputExistsError, closest_match
from ..data.gazetteer import DEFAULT_DETAIL, DETAILS
from ..inference.generate import DECODINGS
from ..data.prompt import GROUNDINGS
from ..runtime import logger

COMMENT_PREFIX = "_"
CHECKPOINT_PREFIX = "checkpoint-"
# Files a finished run leaves in output_dir; finding one means the folder holds an earlier result.
RUN_OUTPUT_FILES = ("summary.json", "metrics.jsonl", "loss.png", "train_config.json", "lora_config.json",
                    "peft_model.safetensors.index.json", "model.safetensors.index.json", "lora_model_state.pdparams",
                    "model_state.pdparams", "model.safetensors")
# The learning-rate scheduler's state in a checkpoint: JSON here, a pickle (PaddleNLP's own name) in the old layout.
SCHEDULER_STATE_FILES = ("scheduler.json", "scheduler.pdparams")
# What metric_for_best_model may name: the evaluation during training reports exactly these.
BEST_MODEL_METRICS = {"accuracy": True, "eval_accuracy": True, "loss": False, "eval_loss": False}


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

# run_finetune keys this trainer does not implement: an error when set to anything but their default.
UNSUPPORTED_KEYS = {
    "pissa": "PiSSA replaces the base weights with a residual on the first forward pass, so its adapter merged "
             "onto the original base model is not the trained model; train plain LoRA (pissa: false)",
    "weight_quantize_algo": "quantized training is not supported on this stack",
    **{key: "only LoRA and full fine-tuning are implemented"
       for key in ("vera", "lokr", "prefix_tuning", "reft", "use_mora", "lora_use_mixer")},
    "continue_training": "training always starts from the pretrained weights of model_name_or_path",
    "from_aistudio": "download the model once and pass its folder as model_name_or_path",
    "save_to_aistudio": "upload the adapter from output_dir yourself",
    "use_long_sequence_strategies": "long-sequence RoPE strategies are not needed for addresses and not implemented",
    "chat_template": "the prompt is the model's own chat template (tokenizer_config.json); edit it there",
    "autoregressive": "pre-training style data is not supported; use src/tgt pairs",
    "use_pose_convert": "PoSE data conversion is not implemented",
    "do_export": "export is not part of training here; use `address-completion merge`",
    "benchmark": "use bench/train_throughput.py for throughput", "autotuner_benchmark": "use bench/train_throughput.py",
    "to_static": "static-graph training is not supported", "enable_auto_parallel": "auto parallel is not supported",
    "use_ssa": "shifted sparse attention is not implemented for this trainer",
}
# Keys accepted for compatibility that this trainer does not use: a warning when set to a non-default value.
IGNORED_KEYS = {
    "eval_with_do_generation": "evaluation always decodes greedily and reports exact-match eval_accuracy",
    "lazy": "pair files are small and always read at once",
    "max_seq_length": "max_length sets the sample length", "dataset_text_field": "samples are src/tgt pairs",
    "task_name": "not used", "dataset_num_proc": "not used", "dataset_batch_size": "not used",
}
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
# Keys that only do something on a GPU: switched off on CPU with one warning each.
GPU_ONLY_KEYS = ("use_flash_attention", "flash_mask", "use_fused_rms_norm", "use_fused_rope", "use_fused_linear",
                 "use_fused_dropout_add", "use_fused_linear_cross_entropy", "fp16", "bf16", "amp_master_grad")
PARALLEL_KEYS = ("tensor_parallel_degree", "pipeline_parallel_degree", "sharding_parallel_degree",
                 "sep_parallel_degree", "context_parallel_degree", "expert_parallel_degree")


@dataclass
class TrainConfig:
    """A validated config: the parsed dataclasses plus our extra keys and what was adapted."""

    values: dict[str, Any]  # every key given (file + overrides), typed, after device adaptation
    model_args: Any  # paddlenlp.trl.ModelConfig
    data_args: Any  # paddlenlp.trl.DataConfig
    training_args: Any  # paddlenlp.trl.SFTConfig
    extras: dict[str, Any]
    device: str
    dtype: str  # model dtype: float32 on CPU, bfloat16/float16 with fp16_opt_level O2 on GPU
    source: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def output_dir(self) -> Path:
        return Path(self.training_args.output_dir)

    @property
    def dataset_dir(self) -> Path:
        return Path(self.data_args.dataset_name_or_path)

    @property
    def evaluates(self) -> bool:
        return needs_dev_set(self.values)

    def resolved(self) -> dict[str, Any]:
        """The keys actually used, as a config this trainer accepts again (train_config.json)."""
        values = {**DATA_DEFAULTS, **self.values}
        values.update({name: self.extras[name] for name in self.extras})
        header = {"_comment": f"resolved from {self.source or 'arguments'}; device {self.device}, dtype {self.dtype}"}
        return {**header, **{key: values[key] for key in sorted(values)}}


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


def parse_overrides(tokens: Sequence[str]) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs; a ``--flag`` followed by another ``--key`` (or nothing) is true."""
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
        overrides[key.replace("-", "_")] = value
        index += 1
    return overrides


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
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
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError
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


# ---------------------------------------------------------------- checks


def needs_dev_set(values: Mapping[str, Any]) -> bool:
    """True when the run evaluates, so dataset/dev.json must exist."""
    return bool(values.get("do_eval") or values.get("evaluation_strategy", "no") != "no"
                or values.get("load_best_model_at_end"))


def _require(condition: bool, origin: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{origin}: {message}")


def check_values(values: Mapping[str, Any], origins: Mapping[str, str], vocabulary: Mapping[str, KeySpec],
                 source: str | None) -> None:
    """Value checks run_finetune leaves to a crash deep inside training."""
    where = lambda key: origins.get(key, source or "config")  # noqa: E731 - tiny lookup
    get = lambda key: values.get(key, vocabulary[key].default)  # noqa: E731

    for key in ("model_name_or_path", "dataset_name_or_path", "output_dir"):
        _require(bool(values.get(key)), source or "config", f"{key} is required")
    for key, reason in UNSUPPORTED_KEYS.items():
        if key in values and values[key] != vocabulary[key].default:
            raise ConfigError(f"{where(key)}: {key}={json.dumps(values[key])} is not supported: {reason}")
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                "src_length", "max_length", "lora_rank", "logging_steps"):
        _require(get(key) >= 1, where(key), f"{key} must be at least 1, got {get(key)}")
    _require(get("src_length") < get("max_length"), where("src_length"),
             f"src_length ({get('src_length')}) must be smaller than max_length ({get('max_length')}): "
             "max_length counts the source and the answer together")
    _require(get("learning_rate") > 0, where("learning_rate"), "learning_rate must be positive")
    _require(get("max_steps") > 0 or get("max_steps") == -1, where("max_steps"),
             f"max_steps must be at least 1, or -1 (the default) to train num_train_epochs; got {get('max_steps')} "
             "(run_finetune would silently train whole epochs instead)")
    _require(get("max_steps") > 0 or get("num_train_epochs") > 0, where("num_train_epochs"),
             "set num_train_epochs > 0 or max_steps > 0")
    for key in ("eval_samples", "eval_max_new_tokens", "save_total_limit", "eval_steps", "pad_to_multiple_of"):
        value = values.get(key)
        _require(value is None or value >= 1, where(key), f"{key} must be at least 1 (or null), got {value}")
    _require(0.0 <= get("lora_dropout") < 1.0, where("lora_dropout"), "lora_dropout must be in [0, 1)")
    _require(0.0 <= get("no_candidate_rate") <= 1.0, where("no_candidate_rate"),
             f"no_candidate_rate must be between 0 and 1 (a share of the training examples), got "
             f"{get('no_candidate_rate')}")
    alpha = values.get("lora_alpha")
    _require(alpha is None or alpha > 0, where("lora_alpha"), "lora_alpha must be positive")
    _require(get("neftune_noise_alpha") > 0, where("neftune_noise_alpha"), "neftune_noise_alpha must be positive")
    _require(get("lora_plus_scale") > 0, where("lora_plus_scale"), "lora_plus_scale must be positive")
    # optimizer and schedule values PaddleNLP takes without a check (a 0 save_steps divides by zero at step 1)
    _require(get("save_strategy") != "steps" or not get("do_train") or get("save_steps") >= 1, where("save_steps"),
             f"save_steps must be at least 1 with save_strategy steps, got {get('save_steps')} "
             "(save_strategy no saves no checkpoint)")
    _require(get("weight_decay") >= 0, where("weight_decay"), f"weight_decay must be >= 0, got {get('weight_decay')}")
    _require(0.0 <= get("warmup_ratio") <= 1.0, where("warmup_ratio"),
             f"warmup_ratio must be between 0 and 1 (a fraction of the steps), got {get('warmup_ratio')}")
    _require(get("warmup_steps") >= 0, where("warmup_steps"), f"warmup_steps must be >= 0, got {get('warmup_steps')}")
    for key in ("adam_beta1", "adam_beta2"):
        _require(0.0 <= get(key) < 1.0, where(key), f"{key} must be in [0, 1), got {get(key)}")
    _require(get("adam_epsilon") > 0, where("adam_epsilon"), f"adam_epsilon must be positive, got {get('adam_epsilon')}")
    if not get("lora"):
        for key in ("lora_path", "lora_alpha", "target_modules", "trainable_modules", "rslora"):
            _require(not values.get(key), where(key),
                     f"{key} applies to LoRA training; set lora: true or remove {key}")
    lora_path = values.get("lora_path")
    _require(not lora_path or (Path(lora_path).expanduser() / "lora_config.json").is_file(), where("lora_path"),
             f"lora_path {lora_path!r} holds no lora_config.json; pass a LoRA adapter folder")
    resume_from = values.get("resume_from_checkpoint")
    _require(not resume_from or checkpoint_is_complete(Path(resume_from).expanduser()), where("resume_from_checkpoint"),
             f"resume_from_checkpoint {resume_from!r} is not a complete checkpoint folder (trainer_state.json, "
             "scheduler.json or scheduler.pdparams, rng_state.pth)")
    metric = values.get("metric_for_best_model")
    _require(metric is None or metric in BEST_MODEL_METRICS, where("metric_for_best_model"),
             f"metric_for_best_model must be one of {', '.join(BEST_MODEL_METRICS)}; got {metric!r} "
             "(accuracy = exact match of greedy decoding on dev)")
    _require(values.get("do_eval", True) is not False or get("evaluation_strategy") == "no", where("do_eval"),
             f"do_eval is false, but evaluation_strategy {get('evaluation_strategy')!r} evaluates anyway (PaddleNLP "
             "turns do_eval on); to train without evaluation also set evaluation_strategy no")
    if get("load_best_model_at_end"):
        _require(get("evaluation_strategy") == get("save_strategy"), where("load_best_model_at_end"),
                 f"load_best_model_at_end needs evaluation_strategy ({get('evaluation_strategy')}) and save_strategy "
                 f"({get('save_strategy')}) to be equal")
    _require(get("do_train") or needs_dev_set(values), source or "config",
             "nothing to do: set do_train and/or do_eval to true")


def check_dataset(values: Mapping[str, Any], origins: Mapping[str, str]) -> Path:
    """The dataset folder holds train.json (when training) and dev.json (when evaluating)."""
    folder = Path(values["dataset_name_or_path"]).expanduser()
    origin = origins.get("dataset_name_or_path", "config")
    if not folder.is_dir():
        raise ConfigError(f"{origin}: dataset_name_or_path {str(folder)!r} is not a folder; it must hold train.json "
                          "and dev.json (JSON lines with src/tgt), e.g. made by `address-completion prepare` + `split`")
    needed = (["train.json"] if values.get("do_train") else []) + (["dev.json"] if needs_dev_set(values) else [])
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        why = {"train.json": "do_train is true", "dev.json": "the run evaluates (do_eval / evaluation_strategy / "
                                                            "load_best_model_at_end)"}
        raise ConfigError(f"{origin}: {folder} has no {' and no '.join(missing)} ("
                          + "; ".join(f"{name} is needed because {why[name]}" for name in missing) + ")")
    return folder


def adapt_to_device(values: dict[str, Any], device: str, device_count: int, bf16_supported: bool,
                    origins: Mapping[str, str]) -> list[str]:
    """Switch off keys that do nothing (or break) on this device; one warning each, returned and logged."""
    notes = []

    def note(key: str, message: str) -> None:
        text = f"{origins.get(key, key)}: {message}"
        notes.append(text)
        logger.warning("warning: %s", text)

    if device == "cpu":
        for key in GPU_ONLY_KEYS:
            if values.get(key):
                values[key] = False
                if key in ("fp16", "bf16"):
                    note(key, f"{key} is not supported on CPU; training in float32")
                else:
                    note(key, f"{key} needs a GPU; ignored on CPU")
    elif values.get("fp16"):
        if bf16_supported:
            values["fp16"], values["bf16"] = False, True
            note("fp16", "Qwen2 models give NaN / zero loss in fp16; using bf16 instead")
        else:
            note("fp16", "Qwen2 models often give NaN loss in fp16 and this GPU has no bf16; watch the loss")
    for key in PARALLEL_KEYS:
        if (values.get(key) or 1) > device_count:
            note(key, f"{key}={values[key]} but only {device_count} {device} device(s) here; using 1")
            values[key] = 1
    if values.get("sharding") and device_count <= 1:
        note("sharding", f"sharding {values['sharding']!r} does nothing with one device; ignored")
        values["sharding"] = ""
    return notes


def serialization_notes(values: dict[str, Any], origins: Mapping[str, str]) -> list[str]:
    """safe_serialization decides unified_checkpoint (PaddleNLP writes safetensors only in unified checkpoints).

    A unified_checkpoint that disagrees is overridden with one warning: pickled weights are written only
    when the user asks for them with safe_serialization false.
    """
    safe = values.get("safe_serialization", True)
    notes = []
    if "unified_checkpoint" in values and values["unified_checkpoint"] != safe:
        given = json.dumps(values["unified_checkpoint"])
        notes.append(f"{origins.get('unified_checkpoint', 'unified_checkpoint')}: unified_checkpoint {given} is "
                     f"overridden by safe_serialization {json.dumps(safe)} (true: safetensors in unified checkpoints; "
                     "false: the pickled .pdparams layout)")
        logger.warning("warning: %s", notes[-1])
    values["unified_checkpoint"] = safe
    return notes


def ignored_key_notes(values: Mapping[str, Any], vocabulary: Mapping[str, KeySpec],
                      origins: Mapping[str, str]) -> list[str]:
    """One warning per compatibility key set to something this trainer does not use."""
    notes = []
    for key, reason in IGNORED_KEYS.items():
        if key in values and values[key] != vocabulary[key].default:
            notes.append(f"{origins.get(key, key)}: {key} is ignored: {reason}")
            logger.warning("warning: %s", notes[-1])
    return notes


def model_dtype(values: Mapping[str, Any]) -> str:
    """run_finetune's rule: fp16_opt_level O2 loads the weights in half precision, O1 keeps float32 + autocast."""
    if values.get("fp16_opt_level", "O1") == "O2" and (values.get("fp16") or values.get("bf16")):
        return "float16" if values.get("fp16") else "bfloat16"
    return "float32"


# ---------------------------------------------------------------- building the config


def _split_groups(values: Mapping[str, Any], vocabulary: Mapping[str, KeySpec]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "training": {}, "extra": {}}
    for key, value in values.items():
        groups[vocabulary[key].group][key] = value
    return groups


def _training_defaults(values: Mapping[str, Any], device: str) -> dict[str, Any]:
    """Our defaults where PaddleNLP's differ on purpose."""
    import sys

    return {
        "report_to": "visualdl",  # as PaddleNLP: VisualDL logs under output_dir/runs (report_to none: off)
        "disable_tqdm": not sys.stderr.isatty(),  # a progress bar on a terminal, none in logs
        "device": device,
        "logging_steps": 10,
        "save_strategy": "epoch" if values.get("evaluation_strategy") == "epoch" else "steps",
    }


# Data keys whose default differs from run_finetune's on purpose: batch widths rounded up to a multiple of 8
# give the allocator few distinct shapes (peak memory stays flat; see bench/train_throughput.py --widths).
DATA_DEFAULTS = {"pad_to_multiple_of": 8}


def build_config(raw: RawConfig, vocabulary: Mapping[str, KeySpec], device: str, device_count: int = 1,
                 bf16_supported: bool = False) -> TrainConfig:
    """Validated :class:`TrainConfig` from typed values (no model is loaded)."""
    from paddlenlp.trl import DataConfig, ModelConfig, SFTConfig

    values = dict(raw.values)
    values.pop("device", None)
    check_values(values, raw.origins, vocabulary, raw.source)
    notes = adapt_to_device(values, device, device_count, bf16_supported, raw.origins)
    notes += ignored_key_notes(values, vocabulary, raw.origins)
    notes += serialization_notes(values, raw.origins)
    groups = _split_groups(values, vocabulary)
    extras = {spec.name: groups["extra"].get(spec.name, spec.default) for spec in EXTRA_KEYS}
    training = {**_training_defaults(values, device), **groups["training"], "device": device,
                "overwrite_output_dir": True}  # resuming is decided explicitly (see resume_checkpoint)
    training.pop("resume_from_checkpoint", None)
    try:
        model_args = ModelConfig(**groups["model"])
        data_args = DataConfig(**{**DATA_DEFAULTS, **groups["data"]})
        training_args = SFTConfig(**training)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{raw.source or 'config'}: {exc}") from None
    from .curves import check_report_to

    check_report_to(training_args.report_to or [], raw.origins.get("report_to", "report_to (default)"))
    if values.get("lora"):
        extras["lora_alpha"] = default_lora_alpha(values) if extras["lora_alpha"] is None else extras["lora_alpha"]
    values.update(device=device)
    return TrainConfig(values=values, model_args=model_args, data_args=data_args, training_args=training_args,
                       extras=extras, device=device, dtype=model_dtype(values), source=raw.source, warnings=notes)


def default_lora_alpha(values: Mapping[str, Any]) -> float:
    """run_finetune's hard-coded alpha: 2 * rank, or 4 with rslora."""
    return 4.0 if values.get("rslora") else 2.0 * values.get("lora_rank", 8)


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] | Mapping[str, Any] = (), *,
                device: str | None = None, check_paths: bool = True) -> TrainConfig:
    """Read, override, validate and adapt a run_finetune-style config. No model is loaded.

    ``overrides`` is either command-line tokens (``["--lora_rank", "4"]``) or a mapping of typed values.
    ``device=None`` picks the device from the ``device`` key (default: GPU when there is one).
    ``check_paths`` checks that the model can be found (nothing is downloaded) and the dataset folder.
    """
    from .. import runtime

    raw = read_config_file(path) if path is not None else RawConfig({}, {}, None)
    if isinstance(overrides, Mapping):
        raw.values.update(overrides)
        raw.origins.update({key: "arguments" for key in overrides})
        text_overrides: dict[str, str] = {}
    else:
        text_overrides = parse_overrides(overrides)
    model = text_overrides.get("model_name_or_path", raw.values.get("model_name_or_path"))
    runtime.prepare_environment(model=model if isinstance(model, str) else None)
    runtime.import_paddle()  # now, before paddlenlp's dataclasses do it with Paddle's OMP_NUM_THREADS notice
    if check_paths and isinstance(model, str) and model:
        from ..model.modeling import check_model_source

        check_model_source(model)  # first and fast: an offline hub name fails before paddle is imported
    vocabulary = key_vocabulary()
    merged = merge_values(raw, text_overrides, vocabulary)
    requested = device or merged.values.get("device") or "auto"
    if requested not in ("auto", "cpu", "gpu"):
        origin = merged.origins.get("device", "device")
        raise ConfigError(f"{origin}: device must be auto, cpu or gpu; got {requested!r}")
    chosen, count, bf16 = _device_facts(requested)
    if check_paths:
        _require(bool(merged.values.get("dataset_name_or_path")), merged.source or "config",
                 "dataset_name_or_path is required")
        check_dataset(merged.values, merged.origins)
    return build_config(merged, vocabulary, chosen, count, bf16)


def _device_facts(requested: str) -> tuple[str, int, bool]:
    """(device, number of devices, bf16 support) — imports paddle."""
    import paddle

    from ..runtime import select_device

    device = select_device(requested)
    if device == "cpu":
        return device, 1, False
    try:
        bf16 = bool(paddle.amp.is_bfloat16_supported())
    except Exception:  # older builds lack the query: assume Ampere-or-newer is not guaranteed
        bf16 = False
    return device, paddle.device.cuda.device_count(), bf16


# ---------------------------------------------------------------- output folder


def checkpoints_in(output_dir: str | os.PathLike) -> list[Path]:
    """``checkpoint-N`` folders, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [path for path in folder.glob(CHECKPOINT_PREFIX + "*") if path.is_dir()
             and path.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))


def checkpoint_is_complete(checkpoint: Path) -> bool:
    """Every file the Trainer writes for a checkpoint is there (a kill mid-save leaves some out).

    The scheduler state is written last (scheduler.json, or scheduler.pdparams in the pickled layout).
    """
    return (checkpoint / "trainer_state.json").is_file() and (checkpoint / "rng_state.pth").is_file() \
        and any((checkpoint / name).is_file() for name in SCHEDULER_STATE_FILES)


def resume_checkpoint(output_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from, or None to start fresh; never a silent resume.

    An output_dir holding checkpoints or a finished run needs ``resume`` (continue the latest complete
    checkpoint) or ``overwrite`` (start again; the old checkpoints and results are deleted by the caller).
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: resume continues the last checkpoint, "
                          "overwrite starts again")
    folder = Path(output_dir)
    checkpoints = checkpoints_in(folder)
    if resume:
        complete = [path for path in checkpoints if checkpoint_is_complete(path)]
        if not complete:
            raise ConfigError(f"--resume: {folder} holds no complete checkpoint-N folder to resume from")
        if complete[-1] != checkpoints[-1]:
            logger.warning("warning: %s is incomplete (the run stopped while saving it); resuming from %s",
                           checkpoints[-1], complete[-1])
        return complete[-1]
    if overwrite:
        return None
    finished = [name for name in RUN_OUTPUT_FILES if (folder / name).exists()]
    if checkpoints:
        raise OutputExistsError(folder, f"it holds checkpoints of an earlier run ({checkpoints[-1].name}); pass "
                                        "--resume to continue from the last one, or --overwrite to start again "
                                        "(deletes them)")
    if finished:
        raise OutputExistsError(folder, f"it holds the results of an earlier run ({', '.join(finished)}); pass "
                                        "--overwrite to replace them, or choose another output_dir")
    return None
