"""The merge check ``merge`` and ``export`` share: a probe batch of real address prompts, its logits, and the rule
that accepts merged weights (they reproduce base + adapter within a tolerance scaled by the largest |logit|,
and the adapter changes something). Also the adapter checks both run before merging (read_lora_config) and
the merge itself in memory (merge_and_restore). Paddle is imported inside the functions that run a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.prompt import render_prompt
from ..errors import AddressCompletionError, ConfigError
from ..runtime import logger
from .encoding import encode_prompts, left_padded_batch, padding_token_id
from .modeling import read_adapter_config

LORA_CONFIG_FILE = "lora_config.json"
# Merged weights are rounded once (W + BA) where base + adapter rounds twice; fp32 differs by ~1e-6.
DEFAULT_TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}
PROBE_ADDRESSES = (
    "碑林区扬子江南路467-6号",
    "海淀区中关村大街27号",
    "补齐五级行政地址: 浙江省杭州市西湖区文三路90号",
    "天河区体育西路191号中石化大厦B座",
)


class MergeVerificationError(AddressCompletionError):
    """The reloaded merged model does not reproduce base + adapter."""


def read_lora_config(lora_path: str | os.PathLike) -> dict:
    """The adapter's lora_config.json, refusing adapters whose merge would not equal the trained model."""
    path = Path(lora_path) / LORA_CONFIG_FILE
    config = read_adapter_config(lora_path)
    if config.get("pissa"):
        raise ConfigError(f"{path}: pissa is true. A PiSSA adapter replaces the base weights with a residual on its "
                          "first forward pass, so adding it to the original base model is not the trained model. "
                          "Serve it unmerged (--lora-path) or train without pissa")
    return config


def default_tolerance(dtype: str) -> float:
    return DEFAULT_TOLERANCE.get(dtype, DEFAULT_TOLERANCE["float32"])


def allowed_difference(tolerance: float, logit_scale: float) -> float:
    """The largest merged-vs-adapter logit difference accepted: ``tolerance`` for logits within ±1, growing
    with the largest |logit| beyond that (rounding error is relative: the same merge of a real 135M model
    moves logits near 20 by ~1e-4, of the tiny default model by ~1e-5)."""
    return tolerance * max(1.0, logit_scale)


# ---------------------------------------------------------------- probe batch and logits


def check_tolerance(tolerance: float) -> float:
    """``--tolerance`` of a merge or export check as a float; ConfigError unless finite and >= 0 (nan or inf
    would let any logit difference pass the verification)."""
    tolerance = float(tolerance)
    if not 0 <= tolerance < float("inf"):
        raise ConfigError(f"--tolerance must be a finite number >= 0, got {tolerance}")
    return tolerance


def probe_batch(tokenizer: Any) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Left-padded real address prompts (the same template predict uses): ids, mask, position ids."""
    prompts = [render_prompt(tokenizer, address) for address in PROBE_ADDRESSES]
    return left_padded_batch(encode_prompts(tokenizer, prompts), padding_token_id(tokenizer))


def probe_logits(model: Any, batch: tuple[list[list[int]], list[list[int]], list[list[int]]]) -> Any:
    """Logits (numpy, float32) of the probe batch."""
    import paddle

    input_ids, attention_mask, position_ids = batch
    with paddle.no_grad():
        output = model(input_ids=paddle.to_tensor(input_ids, dtype="int64"),
                       attention_mask=paddle.to_tensor(attention_mask, dtype="int64"),
                       position_ids=paddle.to_tensor(position_ids, dtype="int64"), use_cache=False)
    logits = output[0] if isinstance(output, (tuple, list)) else getattr(output, "logits", output)
    return logits.astype("float32").numpy()


def max_logit_difference(first: Any, second: Any, attention_mask: list[list[int]]) -> float:
    """Largest absolute logit difference over real (non-padding) positions."""
    import numpy as np

    real = np.asarray(attention_mask, dtype=bool)
    return float(np.abs(first[real] - second[real]).max())


def max_abs_logit(logits: Any, attention_mask: list[list[int]]) -> float:
    """Largest |logit| over real (non-padding) positions."""
    import numpy as np

    return float(np.abs(logits[np.asarray(attention_mask, dtype=bool)]).max())


# ---------------------------------------------------------------- the merge check (merge and export both use it)


@dataclass(frozen=True)
class MergeCheck:
    adapter_effect: float  # largest |logit| change the adapter makes on the probe batch
    max_abs_diff: float  # largest |logit difference| merged vs base + adapter
    max_abs_logit: float  # largest |logit| of base + adapter (scales the tolerance, see allowed_difference)
    allowed: float


def adapter_reference(lora_model: Any, batch: tuple[list[list[int]], list[list[int]], list[list[int]]]) -> tuple[
        Any, float]:
    """(base + adapter logits on ``batch`` [rows, positions, vocab], the largest |logit| change the adapter makes).

    Switches the adapter off and on again; ``lora_model`` is left as it came.
    """
    reference = probe_logits(lora_model, batch)
    lora_model.disable_lora()
    effect = max_logit_difference(reference, probe_logits(lora_model, batch), batch[1])
    lora_model.enable_lora()
    return reference, effect


def check_merged_logits(lora_path: str, reference: Any, adapter_effect: float, merged_logits: Any,
                        attention_mask: list[list[int]], tolerance: float, consequence: str) -> MergeCheck:
    """Accept a merge only if the adapter does something and the merged weights reproduce base + adapter.

    ``reference``/``merged_logits``: probe logits [rows, positions, vocab] of base + adapter and of the merged
    weights; ``tolerance`` is scaled by the largest |logit| (:func:`allowed_difference`). ``consequence`` ends the
    error message (what was not done). Raises MergeVerificationError for an adapter that changes no logit (all
    lora_B zero: an empty merge) and for a difference above the bound (NaN included).
    """
    max_diff = max_logit_difference(reference, merged_logits, attention_mask)
    scale = max_abs_logit(reference, attention_mask)
    allowed = allowed_difference(tolerance, scale)
    logger.info("max |logit difference| merged vs base + adapter: %.3g (allowed %.3g: tolerance %.1g x largest "
                "|logit| %.3g; the adapter itself moves the logits by up to %.3g)", max_diff, allowed, tolerance,
                scale, adapter_effect)
    if not adapter_effect > 0:  # also catches NaN
        raise MergeVerificationError(
            f"the adapter {lora_path} does not change the base model's logits at all on the probe batch (all its "
            f"lora_B are zero: an untrained adapter?); merging it would do nothing, so {consequence}")
    if not max_diff <= allowed:  # also catches NaN
        raise MergeVerificationError(
            f"the merged model's logits differ from base + adapter by {max_diff:.3g} (> {allowed:.3g}: tolerance "
            f"{tolerance:g} x largest |logit| {max(1.0, scale):.3g}) on the probe batch; {consequence}")
    return MergeCheck(adapter_effect, max_diff, scale, allowed)


def merge_and_restore(lora_model: Any) -> Any:
    """merge() + restore_original_model(): the plain model with W + scaling * A @ B in every adapted layer.

    restore_original_model() rebuilds each adapted layer as a Linear *with* a (zero) bias even where the
    original layer had none (Qwen2's o_proj and MLP projections); those biases are dropped again so the
    saved model has exactly the base model's tensors.
    """
    import numpy as np

    bias_free = [name for name, layer in lora_model.model.named_sublayers()
                 if hasattr(layer, "lora_A") and getattr(layer, "bias", None) is None]
    lora_model.merge()
    model = lora_model.restore_original_model()
    layers = dict(model.named_sublayers())
    for name in bias_free:
        layer = layers[name]
        if layer.bias is not None and not np.any(layer.bias.numpy()):
            layer.bias = None
    return model

