"""The model a run trains: the base model with run_finetune's config handling, NEFTune, the LoRA wrapping and its
checks (target patterns that match, a rank the layers can hold). Imports paddle/PaddleNLP inside its functions:
train imports this module while its CLI still only parses flags."""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

from ..errors import ConfigError
from ..model.modeling import load_adapter, load_model
from .config import TrainConfig
from .samples import IGNORE_INDEX


def build_model(cfg: TrainConfig) -> Any:
    """The base model (run_finetune's config handling), wrapped in LoRA when ``lora`` is true."""
    from paddlenlp.transformers.configuration_utils import LlmMetaConfig

    model_args, training_args = cfg.model_args, cfg.training_args
    overrides = {key: getattr(training_args, key) for key in LlmMetaConfig._get_defaults()
                 if hasattr(training_args, key)}
    overrides.update(seq_length=cfg.data_args.max_length, ignore_index=IGNORE_INDEX)
    model = load_model(model_args.model_name_or_path, dtype=cfg.dtype, config_overrides=overrides,
                       flag="--model_name_or_path")  # train's override spelling of the key
    if model_args.neftune:
        add_neftune(model, model_args.neftune_noise_alpha)
    if model_args.lora:
        model = wrap_lora(model, cfg)
    return model


def wrap_lora(model: Any, cfg: TrainConfig) -> Any:
    from paddlenlp.peft import LoRAConfig, LoRAModel

    model_args = cfg.model_args
    if model_args.lora_path:
        lora_model = load_adapter(model, model_args.lora_path, base=model_args.model_name_or_path, flag="lora_path")
        lora_model.mark_only_lora_as_trainable()
        return lora_model
    target_modules = lora_target_patterns(cfg.extras["target_modules"], model)
    if cfg.extras["target_modules"] is not None:  # the defaults are PaddleNLP's own for this architecture
        check_patterns_match("target_modules", cfg.extras["target_modules"], target_modules,
                             [name for name, _ in model.named_sublayers()])
    check_lora_rank(model_args.lora_rank, target_modules, model)
    if cfg.extras["trainable_modules"]:
        check_patterns_match("trainable_modules", cfg.extras["trainable_modules"], cfg.extras["trainable_modules"],
                             [name for name, _ in model.named_parameters()])
    lora_config = LoRAConfig(
        target_modules=target_modules,
        r=model_args.lora_rank, lora_alpha=cfg.extras["lora_alpha"], lora_dropout=cfg.extras["lora_dropout"],
        rslora=model_args.rslora, lora_plus_scale=model_args.lora_plus_scale, pissa=False, merge_weights=False,
        tensor_parallel_degree=cfg.training_args.tensor_parallel_degree, dtype=cfg.dtype,
        base_model_name_or_path=model_args.model_name_or_path, use_quick_lora=model_args.use_quick_lora,
        trainable_modules=cfg.extras["trainable_modules"])
    lora_model = LoRAModel(model, lora_config)
    if not any(not parameter.stop_gradient for parameter in lora_model.parameters()):
        raise ConfigError(f"target_modules {cfg.extras['target_modules']} matched no layer; layer names look like "
                          "model.layers.0.self_attn.q_proj (use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                          "down_proj)")
    return lora_model


def lora_target_patterns(names: Sequence[str] | str | None, model: Any) -> list[str]:
    """Regexes for LoRAConfig: run_finetune's defaults, or plain layer names (``q_proj``) turned into ``.*q_proj.*``."""
    if names is None:
        from paddlenlp.trl.llm_utils import get_lora_target_modules

        return list(get_lora_target_modules(model))
    names = [names] if isinstance(names, str) else list(names)
    return [f".*{name}.*" if re.fullmatch(r"[A-Za-z0-9_]+", name) else name for name in names]


def check_patterns_match(key: str, given: Sequence[str] | str | None, patterns: Sequence[str],
                         names: Sequence[str]) -> None:
    """ConfigError naming the first pattern of config key ``key`` that matches none of ``names`` (PaddleNLP
    fullmatches each pattern against layer or parameter names and ignores one that matches nothing)."""
    shown = [given] if isinstance(given, str) else list(given or patterns)
    for index, pattern in enumerate(patterns):
        try:
            matched = any(re.fullmatch(pattern, name) for name in names)
        except re.error as error:
            raise ConfigError(f"{key}: {shown[index]!r} is not a valid regular expression ({error})") from None
        if not matched:
            example = next((name for name in names if name.endswith("q_proj")), names[0] if names else "")
            hint = " (for LoRA: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)" \
                if key == "target_modules" else ""
            raise ConfigError(f"{key}: {shown[index]!r} matches no layer of the model; names look like "
                              f"{example}{hint}")


def check_lora_rank(rank: int, patterns: Sequence[str], model: Any) -> None:
    """ConfigError when ``lora_rank`` exceeds the smallest dimension of a layer LoRA adapts: a rank above
    min(in, out) adds parameters (an adapter larger than the model) but no expressive power."""
    smallest = None
    for name, layer in model.named_sublayers():
        weight = getattr(layer, "weight", None)
        if weight is None or len(weight.shape) != 2 or not any(re.fullmatch(pattern, name) for pattern in patterns):
            continue
        size = min(int(weight.shape[0]), int(weight.shape[1]))
        if smallest is None or size < smallest[1]:
            smallest = (name, size)
    if smallest is not None and rank > smallest[1]:
        raise ConfigError(f"lora_rank {rank} exceeds {smallest[1]}, the smallest dimension of the layers LoRA adapts "
                          f"({smallest[0]} is {smallest[1]} wide); a larger rank only adds parameters. Choose "
                          f"lora_rank <= {smallest[1]}")


def add_neftune(model: Any, noise_alpha: float) -> Any:
    """NEFTune: uniform noise of size alpha/sqrt(length*hidden) on the input embeddings, in training only."""
    import paddle

    embeddings = model.get_input_embeddings()

    def add_noise(layer: Any, inputs: Any, output: Any) -> Any:
        if not layer.training:
            return output
        magnitude = noise_alpha / math.sqrt(output.shape[-2] * output.shape[-1])
        return output + paddle.uniform(output.shape, dtype=output.dtype, min=-magnitude, max=magnitude)

    return embeddings.register_forward_post_hook(add_noise)


def trainable_parameters(model: Any) -> tuple[int, int]:
    trainable = total = 0
    for parameter in model.parameters():
        count = int(math.prod(parameter.shape))
        total += count
        trainable += 0 if parameter.stop_gradient else count
    return trainable, total
