"""Small, tested replacements for PaddleNLP code that is slow on CPU; applied in one place (:func:`apply`).

Profiling a 0.5B-shape LoRA step on CPU showed ~43% of the time in elementwise kernels, which Paddle runs on
one core whatever OMP_NUM_THREADS says. Each patch here does the same arithmetic with fewer or cheaper
elementwise operations; each is kept in :data:`DEFAULT` only when ``bench/train_throughput.py``
measured a gain beyond the run-to-run spread (README, "Performance"); the others stay available to the bench
(``--variants stock,rope_matmul``) for a measurement on a quieter machine. Every patch leaves parameters, saved
files and merges exactly as PaddleNLP defines them.

- ``rmsnorm_square``: Qwen2's RMSNorm squares with ``x.pow(2)``; Paddle's CPU pow kernel (and its gradient)
  cost far more than ``x * x``, which is the correctly rounded square (Paddle's pow is not, so logits differ in
  the last bits).
- ``rope_matmul``: Qwen2's rotary embedding multiplies q and k by cos/sin broadcast over the heads and builds
  rotate_half from two slices and a concat; Paddle's broadcasting and slicing kernels (forward and backward)
  are slow on CPU. cos/sin are expanded to q's shape once, and rotate_half is ``x @ R`` with R the 0/±1
  matrix that permutes and negates the halves (exact: each output is one input times ±1).
- ``lora_rank_scale``: LoRA multiplies its output ``x @ A @ B`` ([tokens, out]) by alpha/r; multiplying the
  rank-r intermediate ``x @ A`` instead scales r numbers per token instead of ``out`` (8 instead of up to
  4,864). The weights are untouched, so a saved adapter and a merge are those of stock PaddleNLP.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

from ..errors import ConfigError

PATCHES: dict[str, str] = {
    "rmsnorm_square": "Qwen2 RMSNorm squares with x*x instead of x.pow(2)",
    "rope_matmul": "Qwen2 RoPE: cos/sin expanded to q's shape, rotate_half as a matmul with a 0/±1 matrix",
    "lora_rank_scale": "LoRA scales the rank-r intermediate (x@A)*s instead of the output (x@A@B)*s",
}
# Kept: lora_rank_scale lowered peak RSS at the 0.5B shape beyond the spread (7111-7161 MB vs stock 7499-7644 MB,
# 2 alternated rounds). rmsnorm_square and rope_matmul: on a quiet machine (load ~1, 2026-11-30 16:09 UTC)
# `bench/train_throughput.py --shapes 0.5b --interleave --variants default,default+rmsnorm_square,
# default+rmsnorm_square+rope_matmul` made every paired step faster: 1.04x (1.01-1.09) and 1.24x (1.02-1.39);
# under load (3-4) earlier the same day they showed no gain. README, "Performance", has the tables.
DEFAULT: tuple[str, ...] = ("lora_rank_scale", "rmsnorm_square", "rope_matmul")

_applied: dict[str, tuple[object, str, Callable]] = {}  # name -> (owner, attribute, original) for remove()


def _rmsnorm_forward(self, hidden_states):
    import paddle

    if self.config.use_fused_rms_norm:
        return _applied["rmsnorm_square"][2](self, hidden_states)
    with paddle.amp.auto_cast(False):
        hidden = hidden_states.astype("float32")
        variance = (hidden * hidden).mean(-1, keepdim=True)
        hidden_states = paddle.rsqrt(variance + self.variance_epsilon) * hidden_states
    if self.weight.dtype in (paddle.float16, paddle.bfloat16):
        hidden_states = paddle.cast(hidden_states, self.weight.dtype)
    return hidden_states * self.weight


def _lora_forward(self, input, *args, **kwargs):  # noqa: A002 - PaddleNLP's signature
    import paddle.nn.functional as functional

    plain = not (self.disable_lora or self.merged or self.use_quick_lora or self.use_mora or self.pissa
                 or self.lora_use_mixer)
    if not plain:
        return _applied["lora_rank_scale"][2](self, input, *args, **kwargs)
    result = functional.linear(x=input, weight=self.weight, bias=self.bias, name=self.name)
    result += ((self.lora_dropout(input) @ self.lora_A) * self.scaling) @ self.lora_B  # in place, as PaddleNLP
    return result


@functools.lru_cache(maxsize=8)
def _rotate_half_matrix(dim: int, dtype: str) -> Any:
    """R with ``x @ R == concat([-x[..., dim/2:], x[..., :dim/2]])`` ([dim, dim], entries 0 and ±1)."""
    import numpy as np
    import paddle

    half = dim // 2
    matrix = np.zeros((dim, dim), dtype="float32")
    matrix[np.arange(half) + half, np.arange(half)] = -1.0  # output j < half takes -x[j + half]
    matrix[np.arange(half), np.arange(half) + half] = 1.0  # output j >= half takes x[j - half]
    return paddle.to_tensor(matrix, dtype=dtype, stop_gradient=True)


def _apply_rotary_pos_emb(q, k, cos, sin, position_ids):
    import paddle

    if position_ids is None:
        return _applied["rope_matmul"][2](q, k, cos, sin, position_ids)
    cos = cos.squeeze(axis=[0, 2])[position_ids].unsqueeze(2)  # [batch, seq, 1, head_dim], as PaddleNLP
    sin = sin.squeeze(axis=[0, 2])[position_ids].unsqueeze(2)
    rotation = _rotate_half_matrix(q.shape[-1], str(q.dtype).replace("paddle.", ""))
    embedded = []
    for states in (q, k):
        shape = states.shape
        embedded.append(states * cos.expand(shape) + paddle.matmul(states, rotation) * sin.expand(shape))
    return tuple(embedded)


def _targets() -> dict[str, tuple[object, str, Callable]]:
    from paddlenlp.peft.lora.lora_layers import LoRALinear
    from paddlenlp.transformers.qwen2 import modeling as qwen2
    from paddlenlp.transformers.qwen2.modeling import Qwen2RMSNorm

    return {"rmsnorm_square": (Qwen2RMSNorm, "forward", _rmsnorm_forward),
            "rope_matmul": (qwen2, "apply_rotary_pos_emb", _apply_rotary_pos_emb),
            "lora_rank_scale": (LoRALinear, "forward", _lora_forward)}


def apply(names: Iterable[str] | None = None) -> list[str]:
    """Install the named patches (default: :data:`DEFAULT`) on PaddleNLP's classes; idempotent.

    Returns the names now applied. Raises ConfigError naming an unknown patch. Imports paddlenlp.
    """
    names = list(DEFAULT if names is None else names)
    unknown = [name for name in names if name not in PATCHES]
    if unknown:
        raise ConfigError(f"unknown patch(es) {', '.join(unknown)}; choose from {', '.join(PATCHES)}")
    targets = _targets()
    for name in names:
        if name in _applied:
            continue
        owner, attribute, replacement = targets[name]
        _applied[name] = (owner, attribute, getattr(owner, attribute))
        setattr(owner, attribute, replacement)
    return sorted(_applied)


def remove(names: Iterable[str] | None = None) -> None:
    """Restore PaddleNLP's own code for the named patches (default: every applied one)."""
    for name in list(_applied if names is None else names):
        if name in _applied:
            owner, attribute, original = _applied.pop(name)
            setattr(owner, attribute, original)
