"""Small, tested replacements for PaddleNLP code that is slow on CPU; applied in one place (:func:`apply`).

Profiling a 0.5B-shape LoRA step on CPU showed ~43% of the time in elementwise kernels, which Paddle runs on
one core whatever OMP_NUM_THREADS says. Each patch here does the same arithmetic with fewer or cheaper
elementwise operations; each is kept in :data:`DEFAULT` only when ``bench/train_throughput.py``
measured a gain beyond the run-to-run spread (docs/performance.md); the others stay available to the bench
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
- ``silu_mul``: Qwen2's MLP calls Paddle's fused ``swiglu(gate, up)``, whose CPU kernel and gradient run slower
  than the two kernels ``silu(gate) * up`` (the same function, by its definition).
- ``attention_grouped``: with fewer key/value heads than query heads (Qwen2.5-0.5B: 2 for 14), PaddleNLP tiles
  k and v to every query head and divides the transposed q by sqrt(head_dim). The patch scales q while it is
  still contiguous and multiplies each key/value head with its group of query heads stacked as rows of one
  matrix, so nothing is tiled; softmax runs without PaddleNLP's float32 casts when the input already is float32.
- ``transpose_dense`` (acts inside ``attention_grouped``): Paddle's transpose returns a strided view, and the
  copy that makes it contiguous for the next matmul goes through the generic strided-copy kernel, ~4x slower
  than its dense transpose kernel on CPU (a [8, 104, 2, 7, 64] float32 permutation: ~10 ms against ~2.5 ms,
  measured here); the attention's q, k, v and output permutations run the dense kernel forward and backward.
- ``rmsnorm_backward`` (acts inside ``rmsnorm_square``): autograd differentiates RMSNorm through two
  broadcast multiplications, whose gradients reduce the broadcast operand with a slow generic kernel; the
  closed-form gradient (a PyLayer) uses only forward kernels and saves one activation instead of three.
- ``expand_broadcasts`` (acts inside ``attention_grouped`` and ``rmsnorm_backward``): Paddle's CPU elementwise
  kernels are 10-40x slower when one operand broadcasts than on equal shapes (the [8, 2, 7, 104, 104] scores
  plus the [8, 1, 1, 104, 104] mask: ~11 ms, against ~0.3 ms for expanding the mask and adding; RMSNorm's
  per-token inverse and per-channel weight: ~0.5 ms against ~0.15 ms; measured here). Those operands are
  expanded to the full shape first; the sums are the same floats.
- ``rowmean_matmul`` (acts inside ``rmsnorm_backward``): RMSNorm's means over the hidden axis as a matmul with a
  column of 1/hidden, which runs on every core ([832, 896]: ~0.08 ms against ~0.65 ms for Paddle's mean kernel);
  the sums are grouped differently, so results differ in the last bits.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Callable, Iterable

from ..errors import ConfigError

PATCHES: dict[str, str] = {
    "rmsnorm_square": "Qwen2 RMSNorm squares with x*x instead of x.pow(2)",
    "rope_matmul": "Qwen2 RoPE: cos/sin expanded to q's shape, rotate_half as a matmul with a 0/±1 matrix",
    "lora_rank_scale": "LoRA scales the rank-r intermediate (x@A)*s instead of the output (x@A@B)*s",
    "silu_mul": "Qwen2 MLP: silu(gate) * up instead of Paddle's fused swiglu kernel",
    "attention_grouped": "Qwen2 attention: query heads grouped per key/value head instead of tiling k and v",
    "transpose_dense": "attention_grouped's transposes copied by Paddle's transpose kernel, not its strided copy",
    "rmsnorm_backward": "rmsnorm_square's RMSNorm with its gradient written out: no broadcast-multiply gradients",
    "expand_broadcasts": "attention's mask and rmsnorm_backward's inverse and weight expanded before their "
                         "elementwise ops",
    "rowmean_matmul": "rmsnorm_backward's means over the hidden axis as a matmul with a column of 1/hidden",
}
# Kept: lora_rank_scale lowered peak RSS at the 0.5B shape beyond the spread (7111-7161 MB vs stock 7499-7644 MB,
# 2 alternated rounds). rmsnorm_square and rope_matmul: on a quiet machine (load ~1, 2026-11-30 16:09 UTC)
# `bench/train_throughput.py --shapes 0.5b --interleave --variants default,default+rmsnorm_square,
# default+rmsnorm_square+rope_matmul` made every paired step faster: 1.04x (1.01-1.09) and 1.24x (1.02-1.39);
# under load (3-4) earlier the same day they showed no gain. docs/performance.md has the current table.
# silu_mul and attention_grouped: on an AMD EPYC (load ~1.9, 2026-11-30 18:34 UTC) `bench/train_throughput.py
# --shapes 0.5b --interleave --variants default,default+silu_mul,default+attention_grouped,
# default+silu_mul+attention_grouped` gave 1.01x (1.00-1.06), 1.04x (1.03-1.13) and together 1.12x (1.02-1.17).
# transpose_dense: same machine, load 1.1-1.9, 2026-11-30 21:29 UTC, `ADDRESS_COMPLETION_MMAP_THRESHOLD=0 python
# bench/train_throughput.py --shapes 0.5b --interleave --variants default,default+transpose_dense --steps 12`:
# 1.10x (0.92-1.22) paired (75.4 -> 82.1 tokens/s); 6 steps before it: 1.07x (0.83-1.26).
# rmsnorm_backward: same machine, load ~0.2-1, 2026-12-01 00:24 UTC, `python bench/train_throughput.py --shapes 0.5b
# --rounds 2 --steps 4 --peer --variants default+M,default+rmsnorm_backward+M` (default then = the six above) with
# M = MALLOC_MMAP_THRESHOLD_=33554432+MALLOC_TRIM_THRESHOLD_=17179869184 (heap settings, since found to make no
# steady-state difference): 79.6 -> 86.0 tokens/s (0.99x -> 1.07x the torch peer, spreads 0.96-1.02 and
# 1.06-1.08), peak RSS 7262 -> 7074 MB. docs/performance.md.
# Not in DEFAULT (no gain beyond the spread yet): expand_broadcasts and rowmean_matmul. Profiled, they cut a step's
# add/multiply/mean/RMSNorm-gradient time by ~0.27 s of ~9.6 s, but paired on the AMD machine (load 1.1-1.6,
# 2026-12-01 03:51-04:01 UTC) `bench/train_throughput.py --shapes 0.5b --interleave --variants
# default,default+expand_broadcasts+rowmean_matmul --steps 10` gave 1.04x (0.92-1.11), and 6 steps with
# expand_broadcasts alone 1.00x (0.93-1.02).
DEFAULT: tuple[str, ...] = ("lora_rank_scale", "rmsnorm_square", "rope_matmul", "silu_mul", "attention_grouped",
                            "transpose_dense", "rmsnorm_backward")

_applied: set[str] = set()  # the patches installed now
_stock: dict[str, Callable] = {}  # "owner.attribute" -> PaddleNLP's own code: what remove() puts back


def _original(owner_and_attribute: str) -> Callable:
    """PaddleNLP's code that a patch replaced (what a replacement falls back to outside its case)."""
    return _stock[owner_and_attribute]


def _rmsnorm_forward(self, hidden_states):
    import paddle

    if self.config.use_fused_rms_norm:
        return _original("Qwen2RMSNorm.forward")(self, hidden_states)
    if ("rmsnorm_backward" in _applied and hidden_states.dtype == self.weight.dtype == paddle.float32
            and paddle.in_dynamic_mode() and paddle.is_grad_enabled()  # decoding keeps the plain forward
            and not (hidden_states.stop_gradient and self.weight.stop_gradient)):
        return _rms_norm_layer().apply(hidden_states, self.weight, self.variance_epsilon)
    with paddle.amp.auto_cast(False):
        hidden = hidden_states.astype("float32")
        variance = (hidden * hidden).mean(-1, keepdim=True)
        hidden_states = paddle.rsqrt(variance + self.variance_epsilon) * hidden_states
    if self.weight.dtype in (paddle.float16, paddle.bfloat16):
        hidden_states = paddle.cast(hidden_states, self.weight.dtype)
    return hidden_states * self.weight


def _full(operand, shape):
    """``operand`` expanded to ``shape`` under ``expand_broadcasts`` (else left to broadcast): Paddle's CPU
    kernels for equal shapes are 10-40x faster than its broadcasting ones, the expand included."""
    return operand.expand(shape) if "expand_broadcasts" in _applied else operand


@functools.lru_cache(maxsize=8)
def _mean_column(size: int, dtype: str) -> Any:
    """A [size, 1] column of 1/size: ``x @ column`` is x's mean over its last axis (keepdim)."""
    import paddle

    return paddle.full([size, 1], 1.0 / size, dtype=dtype)


def _row_mean(x):
    """Mean over the last axis, keepdim: by matmul under ``rowmean_matmul`` (every core; Paddle's CPU mean kernel
    runs on one), else Paddle's mean."""
    import paddle

    if "rowmean_matmul" in _applied:
        return paddle.matmul(x, _mean_column(x.shape[-1], str(x.dtype).replace("paddle.", "")))
    return x.mean(-1, keepdim=True)


@functools.lru_cache(maxsize=1)
def _rms_norm_layer() -> Any:
    import paddle
    from paddle.autograd import PyLayer

    class RMSNorm(PyLayer):
        """y = x * r * w with r = 1/sqrt(mean(x*x) + eps) over the last axis; the gradient in closed form,
        dx = r * (g*w - n * mean(g*w*n)) with n = x*r (and dw = sum of g*n over the tokens), which replaces the
        multiply gradients of autograd's chain (each reduces a broadcast operand) by forward kernels."""

        @staticmethod
        def forward(ctx, x, weight, epsilon):
            inverse = paddle.rsqrt(_row_mean(x * x) + epsilon)  # [..., 1]
            normed = x * _full(inverse, x.shape)
            ctx.save_for_backward(normed, inverse, weight)
            ctx.input_frozen = x.stop_gradient
            return normed * _full(weight, x.shape)

        @staticmethod
        def backward(ctx, grad):
            normed, inverse, weight = ctx.saved_tensor()
            shape = grad.shape
            scaled = grad * _full(weight, shape)
            # Paddle wants None for an input that takes no gradient: the weight under LoRA (no reduction over
            # the tokens then), the input when only the norms train (trainable_modules) over frozen embeddings
            grad_x = None if ctx.input_frozen else \
                (scaled - normed * _full(_row_mean(scaled * normed), shape)) * _full(inverse, shape)
            grad_weight = None if weight.stop_gradient else (grad * normed).reshape([-1, weight.shape[0]]).sum(0)
            return grad_x, grad_weight

    return RMSNorm


def _lora_forward(self, input, *args, **kwargs):  # noqa: A002 - PaddleNLP's signature
    import paddle.nn.functional as functional

    plain = not (self.disable_lora or self.merged or self.use_quick_lora or self.use_mora or self.pissa
                 or self.lora_use_mixer)
    if not plain:
        return _original("LoRALinear.forward")(self, input, *args, **kwargs)
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
        return _original("qwen2.apply_rotary_pos_emb")(q, k, cos, sin, position_ids)
    cos = cos.squeeze(axis=[0, 2])[position_ids].unsqueeze(2)  # [batch, seq, 1, head_dim], as PaddleNLP
    sin = sin.squeeze(axis=[0, 2])[position_ids].unsqueeze(2)
    rotation = _rotate_half_matrix(q.shape[-1], str(q.dtype).replace("paddle.", ""))
    embedded = []
    for states in (q, k):
        shape = states.shape
        embedded.append(states * cos.expand(shape) + paddle.matmul(states, rotation) * sin.expand(shape))
    return tuple(embedded)


def _mlp_forward(self, x):
    import paddle.nn.functional as functional

    if self.fuse_attention_ffn or not self.fuse_swiglu:
        return _original("Qwen2MLP.forward")(self, x)
    return self.down_proj(functional.silu(self.gate_proj(x)) * self.up_proj(x))


def _keep_kv_heads(hidden_states, n_rep):
    """repeat_kv while ``attention_grouped`` is applied: the grouped attention takes k and v untiled."""
    return hidden_states


def _grouped_attention(query_states, config, key_states, value_states, attention_mask, output_attentions,
                       attn_mask_startend_row_indices=None, training=True, sequence_parallel=False,
                       skip_recompute=False):
    """PaddleNLP's eager scaled_dot_product_attention (same signature and result) for q [b, s, h, d] and k, v
    [b, t, kv, d] with h a multiple of kv; other cases go to PaddleNLP's own function."""
    import math

    import paddle
    import paddle.nn.functional as functional

    bsz, q_len, num_heads, head_dim = query_states.shape
    kv_len, kv_heads = key_states.shape[1], key_states.shape[2]
    if ("attention_grouped" not in _applied  # removed after this layer was pointed here: PaddleNLP's own
            or config.use_flash_attention or output_attentions or sequence_parallel or attention_mask is None
            or query_states.dtype != paddle.float32 or num_heads % kv_heads or not paddle.in_dynamic_mode()):
        if kv_heads != num_heads and not config.use_flash_attention:  # as PaddleNLP's forward would have tiled
            key_states = _original("qwen2.repeat_kv")(key_states, num_heads // kv_heads)
            value_states = _original("qwen2.repeat_kv")(value_states, num_heads // kv_heads)
        return _original("qwen2.scaled_dot_product_attention")(
            query_states, config, key_states, value_states, attention_mask, output_attentions,
            attn_mask_startend_row_indices=attn_mask_startend_row_indices, training=training,
            sequence_parallel=sequence_parallel, skip_recompute=skip_recompute)
    group = num_heads // kv_heads
    transpose = _dense_transpose if "transpose_dense" in _applied else paddle.transpose
    # [b, s, kv*group, d] -> [b, kv, group*s, d]: query head kv*group+g meets key/value head kv, as repeat_kv
    query = (query_states * (1.0 / math.sqrt(head_dim))).reshape([bsz, q_len, kv_heads, group, head_dim])
    query = transpose(query, [0, 2, 3, 1, 4]).reshape([bsz, kv_heads, group * q_len, head_dim])
    key = transpose(key_states, [0, 2, 1, 3])
    value = transpose(value_states, [0, 2, 1, 3])
    scores = paddle.matmul(query, key, transpose_y=True).reshape([bsz, kv_heads, group, q_len, kv_len])
    scores = scores + _full(attention_mask.reshape([bsz, 1, 1, q_len, kv_len]), scores.shape)
    weights = functional.softmax(scores, axis=-1)
    weights = functional.dropout(weights, p=config.attention_dropout, training=training)
    output = paddle.matmul(weights.reshape([bsz, kv_heads, group * q_len, kv_len]), value)
    output = transpose(output.reshape([bsz, kv_heads, group, q_len, head_dim]), [0, 3, 1, 2, 4])
    return output.reshape([bsz, q_len, num_heads * head_dim])


def _transpose_kernel(x, perm):
    """``paddle.transpose`` by the dense kernel: a contiguous result (not a strided view), in one pass."""
    import paddle

    before = paddle.get_flags(["FLAGS_use_stride_kernel"])
    paddle.set_flags({"FLAGS_use_stride_kernel": False})  # Paddle's switch between the two kernels; put back below
    try:
        return paddle.transpose(x, perm)
    finally:
        paddle.set_flags(before)


@functools.lru_cache(maxsize=1)
def _dense_transpose_layer() -> Any:
    from paddle.autograd import PyLayer

    class DenseTranspose(PyLayer):
        """Permute with the dense kernel, and the gradient back the same way (autograd's own backward of a
        transpose would give a strided view again, copied slowly by the next gradient kernel)."""

        @staticmethod
        def forward(ctx, x, perm):
            ctx.inverse = [perm.index(axis) for axis in range(len(perm))]
            return _transpose_kernel(x, perm)

        @staticmethod
        def backward(ctx, grad):
            return _transpose_kernel(grad, ctx.inverse)

    return DenseTranspose


def _dense_transpose(x, perm: list[int]):
    """``x.transpose(perm)`` materialized by Paddle's dense transpose kernel, forward and backward."""
    if x.stop_gradient:
        return _transpose_kernel(x, perm)
    return _dense_transpose_layer().apply(x, perm)


def _attention_forward(self, *args, **kwargs):
    # Each layer took PaddleNLP's function when it was built: point it at the grouped one. A layer whose function
    # is something else (a recompute setting wraps it in functools.partial) gets k and v tiled, as it expects.
    from paddlenlp.transformers.qwen2 import modeling as qwen2

    if self.attn_func is _original("qwen2.scaled_dot_product_attention"):
        self.attn_func = _grouped_attention
    if self.attn_func is _grouped_attention:
        return _original("Qwen2Attention.forward")(self, *args, **kwargs)
    qwen2.repeat_kv = _original("qwen2.repeat_kv")  # a function that wants k and v tiled, for this call only
    try:
        return _original("Qwen2Attention.forward")(self, *args, **kwargs)
    finally:
        qwen2.repeat_kv = _keep_kv_heads


def _targets() -> dict[str, list[tuple[object, str, Callable]]]:
    from paddlenlp.peft.lora.lora_layers import LoRALinear
    from paddlenlp.transformers.qwen2 import modeling as qwen2

    return {"rmsnorm_square": [(qwen2.Qwen2RMSNorm, "forward", _rmsnorm_forward)],
            "rope_matmul": [(qwen2, "apply_rotary_pos_emb", _apply_rotary_pos_emb)],
            "lora_rank_scale": [(LoRALinear, "forward", _lora_forward)],
            "silu_mul": [(qwen2.Qwen2MLP, "forward", _mlp_forward)],
            "attention_grouped": [(qwen2, "scaled_dot_product_attention", _grouped_attention),
                                  (qwen2, "repeat_kv", _keep_kv_heads),
                                  (qwen2.Qwen2Attention, "forward", _attention_forward)],
            "transpose_dense": [],  # read by _grouped_attention: nothing of PaddleNLP's is replaced
            "rmsnorm_backward": [],  # read by _rmsnorm_forward, likewise
            "expand_broadcasts": [],  # read by _full
            "rowmean_matmul": []}  # read by _row_mean


def _key(owner: object, attribute: str) -> str:
    """``Class.attribute``, or ``qwen2.attribute`` for PaddleNLP's Qwen2 modeling module (the only module patched)."""
    return f"{'qwen2' if isinstance(owner, types.ModuleType) else owner.__name__}.{attribute}"


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
        for owner, attribute, replacement in targets[name]:
            _stock.setdefault(_key(owner, attribute), getattr(owner, attribute))
            setattr(owner, attribute, replacement)
        _applied.add(name)
    return sorted(_applied)


def remove(names: Iterable[str] | None = None) -> None:
    """Restore PaddleNLP's own code for the named patches (default: every applied one)."""
    removed = _applied & set(_applied if names is None else names)
    if not removed:
        return
    targets = _targets()
    for name in removed:
        for owner, attribute, _ in targets[name]:
            setattr(owner, attribute, _stock[_key(owner, attribute)])
        _applied.discard(name)
