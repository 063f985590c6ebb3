"""A training config checked and assembled: the values of :mod:`.config_keys` (run_finetune's vocabulary, read
and typed) validated, adapted to the device and built into PaddleNLP's dataclasses (:class:`TrainConfig`).

Everything is checked before a model is loaded: values must fit together, lengths must fit, the dataset folder
must hold the files the run reads, keys run_finetune has but this trainer does not implement are refused, and
keys that do nothing on this device are switched off with one warning each.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import runtime
from ..errors import ConfigError
from ..model.modeling import check_model_source
from ..runtime import logger, select_device
from .checkpoints import checkpoint_is_complete
from .config_keys import EXTRA_KEYS, KeySpec, RawConfig, key_vocabulary, merge_values, parse_overrides, read_config_file
from .curves import check_report_to

# What metric_for_best_model may name: the evaluation during training reports exactly these.
BEST_MODEL_METRICS = {"accuracy": True, "eval_accuracy": True, "loss": False, "eval_loss": False}

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
        check_model_source(model, flag="--model_name_or_path")  # first and fast: an offline hub name fails before paddle is imported
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

    device = select_device(requested)
    if device == "cpu":
        return device, 1, False
    try:
        bf16 = bool(paddle.amp.is_bfloat16_supported())
    except Exception:  # older builds lack the query: assume Ampere-or-newer is not guaranteed
        bf16 = False
    return device, paddle.device.cuda.device_count(), bf16
