"""The CPU speed patches compute what PaddleNLP computes: same logits, same gradients, same merge."""

from __future__ import annotations

import numpy as np
import pytest

from address_completion.model import export_paddle
from address_completion.model import verify
from address_completion.model import speedups
from address_completion.errors import ConfigError

# lora_rank_scale only moves one multiplication: logits agree to 1e-6. rmsnorm_square replaces Paddle's pow(2), which
# is not correctly rounded (up to 5.6e-7 off the exact square of N(0,1) floats, measured; x*x is exact to half an
# ulp), so the two differ by rounding that the layers carry into the logits (2e-6 measured on the tiny model).
# Float32 rounding of a reordered computation: silu_mul differs by up to 1.3e-6 with Intel's MKL kernels (1e-6 held on
# AMD), so its bound is the same as the other reorderings'.
LOGIT_TOLERANCE = {"lora_rank_scale": 1e-6, "rope_matmul": 1e-6, "rmsnorm_square": 1e-5, "silu_mul": 5e-6,
                   "attention_grouped": 5e-6, "transpose_dense": 5e-6, "rmsnorm_backward": 1e-5,
                   "expand_broadcasts": 1e-5, "rowmean_matmul": 1e-5}
WITH = {"transpose_dense": ["attention_grouped"], "rmsnorm_backward": ["rmsnorm_square"],
        "expand_broadcasts": ["attention_grouped", "rmsnorm_square", "rmsnorm_backward"],
        "rowmean_matmul": ["rmsnorm_square", "rmsnorm_backward"]}  # a patch that acts inside another one is tested with it


@pytest.fixture
def stock(monkeypatch):
    """PaddleNLP's own code during the test (load_model applies no default patch), whatever the session applied
    before; restored after."""
    applied = speedups.apply([])
    speedups.remove()
    monkeypatch.setattr(speedups, "DEFAULT", ())
    yield
    speedups.remove()
    speedups.apply(applied)


def adapter_model(default_model_dir, lora_adapter_dir):
    from address_completion.model.modeling import load_model

    model = load_model(str(default_model_dir), lora_path=str(lora_adapter_dir))
    model.eval()
    return model


def logits_and_gradients(model, batch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits of the probe batch and the gradient of their masked sum w.r.t. every LoRA weight."""
    import paddle

    input_ids, attention_mask, position_ids = (paddle.to_tensor(part, dtype="int64") for part in batch)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=False)[0]
    (logits * attention_mask.unsqueeze(-1).astype("float32")).sum().backward()
    gradients = {name: parameter.grad.numpy().copy() for name, parameter in model.named_parameters()
                 if "lora_" in name}
    model.clear_gradients()
    return logits.numpy(), gradients


@pytest.mark.parametrize("patch", sorted(speedups.PATCHES))
def test_patch_gives_the_stock_logits_and_gradients(patch, stock, default_model_dir, lora_adapter_dir,
                                                    qwen_tokenizer, monkeypatch):
    batch = verify.probe_batch(qwen_tokenizer)
    model = adapter_model(default_model_dir, lora_adapter_dir)
    expected_logits, expected_gradients = logits_and_gradients(model, batch)
    names = sorted([*WITH.get(patch, []), patch])
    assert speedups.apply(names) == names
    kernel, permutations = speedups._transpose_kernel, []
    monkeypatch.setattr(speedups, "_transpose_kernel", lambda x, perm: permutations.append(perm) or kernel(x, perm))
    logits, gradients = logits_and_gradients(model, batch)
    # the dense kernel ran exactly when asked: q, k, v, output per layer forward, and their gradients back
    assert len(permutations) == (2 * 4 * 2 if patch == "transpose_dense" else 0), permutations  # 2 layers
    assert verify.max_logit_difference(logits, expected_logits, batch[1]) <= LOGIT_TOLERANCE[patch]
    assert gradients.keys() == expected_gradients.keys() and len(gradients) == 2 * 7 * 2  # A and B, 7 layers x 2
    for name, gradient in gradients.items():
        scale = max(1.0, float(np.abs(expected_gradients[name]).max()))
        assert float(np.abs(gradient - expected_gradients[name]).max()) <= 1e-5 * scale, name


def cached_step_logits(model, batch) -> np.ndarray:
    """Logits [batch, vocab] of one decoding step through the KV cache after the left-padded probe prompts (the
    path predict and serve take: a 1-token query against the cached keys and values)."""
    import paddle

    input_ids, attention_mask, position_ids = (paddle.to_tensor(part, dtype="int64") for part in batch)
    with paddle.no_grad():
        output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=True, return_dict=True)
        token = paddle.argmax(output.logits[:, -1, :], axis=-1).unsqueeze(-1)
        step = model(input_ids=token, attention_mask=paddle.concat([attention_mask, paddle.ones_like(token)], -1),
                     position_ids=position_ids[:, -1:] + 1, past_key_values=output.past_key_values, use_cache=True,
                     return_dict=True)
    return step.logits[:, -1, :].numpy()


def test_a_cached_decoding_step_gives_the_stock_logits_under_every_patch(stock, default_model_dir,
                                                                          lora_adapter_dir, qwen_tokenizer):
    batch = verify.probe_batch(qwen_tokenizer)
    model = adapter_model(default_model_dir, lora_adapter_dir)
    expected = cached_step_logits(model, batch)
    speedups.apply(sorted(speedups.PATCHES))
    got = cached_step_logits(model, batch)
    assert got.shape == (len(batch[0]), expected.shape[-1]) and float(np.abs(got - expected).max()) <= 1e-5


def test_patched_rmsnorm_is_closer_to_the_exact_value_than_stock(stock):
    """Against RMSNorm in float64: the patched form's error is at most stock's (and within float32 rounding)."""
    import paddle
    from paddlenlp.transformers import Qwen2Config
    from paddlenlp.transformers.qwen2.modeling import Qwen2RMSNorm

    norm = Qwen2RMSNorm(Qwen2Config(hidden_size=64, rms_norm_eps=1e-6))
    norm.weight.set_value(np.random.default_rng(0).uniform(0.5, 1.5, 64).astype("float32"))
    hidden = np.random.default_rng(1).normal(size=(4, 50, 64)).astype("float32")
    wide = hidden.astype("float64")
    exact = wide / np.sqrt((wide * wide).mean(-1, keepdims=True) + 1e-6) * norm.weight.numpy().astype("float64")
    stock_error = np.abs(norm(paddle.to_tensor(hidden)).numpy() - exact).max()
    speedups.apply(["rmsnorm_square"])
    patched_error = np.abs(norm(paddle.to_tensor(hidden)).numpy() - exact).max()
    assert patched_error <= stock_error and patched_error < 1e-6


@pytest.mark.parametrize("trainable_weight", [True, False])
@pytest.mark.parametrize("inside", [(), ("expand_broadcasts", "rowmean_matmul")])
def test_rmsnorm_backward_gives_the_exact_gradients(stock, trainable_weight, inside):
    """The closed-form gradient against its Jacobian in float64: dx (and dw when the norm's weight
    trains, as in a full fine-tune) within float32 rounding; a frozen weight gets no gradient. Also with the
    patches that act inside it."""
    import paddle
    from paddlenlp.transformers import Qwen2Config
    from paddlenlp.transformers.qwen2.modeling import Qwen2RMSNorm

    speedups.apply(["rmsnorm_square", "rmsnorm_backward", *inside])
    norm = Qwen2RMSNorm(Qwen2Config(hidden_size=64, rms_norm_eps=1e-6))
    weight = np.random.default_rng(0).uniform(0.5, 1.5, 64)
    norm.weight.set_value(weight.astype("float32"))
    norm.weight.stop_gradient = not trainable_weight
    hidden = np.random.default_rng(1).normal(size=(4, 50, 64))
    grad = np.random.default_rng(2).normal(size=(4, 50, 64))
    x = paddle.to_tensor(hidden.astype("float32"), stop_gradient=False)
    (norm(x) * paddle.to_tensor(grad.astype("float32"))).sum().backward()
    # y_j = x_j r w_j with r = (mean(x*x) + eps)^-1/2, so dy_j/dx_i = w_j (r [i == j] - r^3 x_i x_j / d)
    inverse = 1 / np.sqrt((hidden * hidden).mean(-1, keepdims=True) + 1e-6)
    expected_dx = inverse * grad * weight - inverse ** 3 * hidden / 64 * (grad * weight * hidden).sum(-1, keepdims=True)
    normed = hidden * inverse
    assert np.abs(x.grad.numpy() - expected_dx).max() <= 1e-5 * np.abs(expected_dx).max()
    if trainable_weight:  # and only the norms train, over a frozen input (trainable_modules, frozen embeddings)
        frozen = paddle.to_tensor(hidden.astype("float32"))
        norm.weight.clear_gradient()
        (norm(frozen) * paddle.to_tensor(grad.astype("float32"))).sum().backward()
        assert frozen.grad is None
        assert np.abs(norm.weight.grad.numpy() - (grad * hidden * inverse).sum((0, 1))).max() <= 1e-4
        expected_dw = (grad * normed).sum((0, 1))
        assert np.abs(norm.weight.grad.numpy() - expected_dw).max() <= 1e-5 * np.abs(expected_dw).max()
    else:
        assert norm.weight.grad is None


def test_rmsnorm_backward_acts_only_where_a_gradient_is_wanted(stock, monkeypatch):
    """Decoding (no_grad) and frozen inputs keep the plain forward: the PyLayer would only add its overhead."""
    import paddle
    from paddlenlp.transformers import Qwen2Config
    from paddlenlp.transformers.qwen2.modeling import Qwen2RMSNorm

    speedups.apply(["rmsnorm_square", "rmsnorm_backward"])
    layer, calls = speedups._rms_norm_layer(), []
    monkeypatch.setattr(speedups, "_rms_norm_layer", lambda: calls.append(1) or layer)
    norm = Qwen2RMSNorm(Qwen2Config(hidden_size=8))
    hidden = paddle.ones([2, 3, 8])
    with paddle.no_grad():
        norm(paddle.ones([2, 3, 8]))
    norm.weight.stop_gradient = True
    norm(hidden)  # nothing here wants a gradient
    assert calls == []
    hidden.stop_gradient = False
    norm(hidden)
    assert calls == [1]


def test_patch_changes_the_code_that_runs_and_remove_restores_it(stock):
    from paddlenlp.peft.lora.lora_layers import LoRALinear
    from paddlenlp.transformers.qwen2 import modeling as qwen2

    def code():
        return (qwen2.Qwen2RMSNorm.forward, LoRALinear.forward, qwen2.apply_rotary_pos_emb, qwen2.Qwen2MLP.forward,
                qwen2.Qwen2Attention.forward, qwen2.repeat_kv, qwen2.scaled_dot_product_attention)

    stock_code = code()
    everything = sorted(speedups.PATCHES)
    assert speedups.apply(everything) == everything
    assert speedups.apply(["rmsnorm_square"]) == everything  # idempotent
    assert all(new is not old for new, old in zip(code(), stock_code))
    speedups.remove()
    assert code() == stock_code


def test_unknown_patch_is_named():
    with pytest.raises(ConfigError, match="unknown patch.*rms_norm.*choose from rmsnorm_square"):
        speedups.apply(["rms_norm"])


@pytest.mark.slow
def test_merge_under_every_patch_is_exact(stock, default_model_dir, lora_adapter_dir, tmp_path):
    """The merged weights are those of stock PaddleNLP (the patches never touch parameters), and merge's own
    verification (patched adapter model vs merged model) still passes."""
    from safetensors.numpy import load_file

    plain = export_paddle.merge_adapter(str(default_model_dir), str(lora_adapter_dir), tmp_path / "stock")
    speedups.apply(sorted(speedups.PATCHES))
    patched = export_paddle.merge_adapter(str(default_model_dir), str(lora_adapter_dir), tmp_path / "patched")
    assert patched.max_abs_diff <= 1e-5 and plain.max_abs_diff <= 1e-5
    expected, merged = load_file(tmp_path / "stock" / "model.safetensors"), \
        load_file(tmp_path / "patched" / "model.safetensors")
    assert expected.keys() == merged.keys()
    assert all(np.array_equal(expected[name], merged[name]) for name in expected)


def test_load_model_applies_the_default_patches(default_model_dir):
    from paddlenlp.peft.lora.lora_layers import LoRALinear

    from address_completion.model.modeling import load_model

    load_model(str(default_model_dir))
    from paddlenlp.transformers.qwen2 import modeling as qwen2

    assert set(speedups.DEFAULT) <= set(speedups.apply([]))
    assert speedups.DEFAULT == ("lora_rank_scale", "rmsnorm_square", "rope_matmul", "silu_mul", "attention_grouped",
                                "transpose_dense", "rmsnorm_backward")
    assert LoRALinear.forward is speedups._lora_forward
    assert qwen2.Qwen2RMSNorm.forward is speedups._rmsnorm_forward
    assert qwen2.apply_rotary_pos_emb is speedups._apply_rotary_pos_emb


def test_layers_built_under_attention_grouped_compute_paddlenlps_attention_once_it_is_removed(
        stock, default_model_dir, lora_adapter_dir, qwen_tokenizer, monkeypatch):
    """The patch points each attention layer at the grouped function on its first call; after remove() those
    layers must run PaddleNLP's own attention again (the bench's --interleave switches patches between steps)."""
    batch = verify.probe_batch(qwen_tokenizer)
    model = adapter_model(default_model_dir, lora_adapter_dir)
    expected = verify.probe_logits(model, batch)
    from paddlenlp.transformers.qwen2 import modeling as qwen2

    speedups.apply(["attention_grouped"])
    verify.probe_logits(model, batch)
    # the grouped function did run (Intel's MKL may give the stock logits bit for bit, so equality cannot tell)
    layers = [layer for layer in model.sublayers() if isinstance(layer, qwen2.Qwen2Attention)]
    assert layers and all(layer.attn_func is speedups._grouped_attention for layer in layers)
    speedups.remove()
    stock = speedups._stock["qwen2.scaled_dot_product_attention"]
    calls = []
    monkeypatch.setitem(speedups._stock, "qwen2.scaled_dot_product_attention",
                        lambda *args, **kwargs: calls.append(1) or stock(*args, **kwargs))
    assert np.array_equal(verify.probe_logits(model, batch), expected)
    assert len(calls) == len(layers)  # each layer ran PaddleNLP's own attention again


def test_attention_grouped_leaves_a_wrapped_attention_function_its_tiled_keys(stock, default_model_dir,
                                                                             lora_adapter_dir, qwen_tokenizer):
    """PaddleNLP wraps a layer's attention function in functools.partial under some recompute settings; such a
    layer must still get k and v tiled to every query head, and give the stock logits."""
    import functools

    from paddlenlp.transformers.qwen2 import modeling as qwen2

    batch = verify.probe_batch(qwen_tokenizer)
    model = adapter_model(default_model_dir, lora_adapter_dir)
    expected = verify.probe_logits(model, batch)
    layers = [layer for layer in model.sublayers() if isinstance(layer, qwen2.Qwen2Attention)]
    assert layers and all(layer.num_key_value_groups > 1 for layer in layers)  # k and v really need tiling
    for layer in layers:
        layer.attn_func = functools.partial(qwen2.scaled_dot_product_attention, skip_recompute=True)
    speedups.apply(["attention_grouped"])
    assert np.array_equal(verify.probe_logits(model, batch), expected)
    assert qwen2.repeat_kv is speedups._keep_kv_heads  # restored after each wrapped call


def test_dense_transpose_gives_paddles_transpose_and_its_gradient_exactly(stock):
    """A permutation moves numbers without arithmetic: values and gradients are bit-identical to paddle.transpose,
    the result is contiguous (no strided view left for the next kernel), and the stride switch is put back."""
    import paddle

    data = np.random.default_rng(0).normal(size=(3, 5, 2, 4, 6)).astype("float32")
    upstream = np.random.default_rng(1).normal(size=(3, 2, 4, 5, 6)).astype("float32")
    results = []
    for transpose in (paddle.transpose, speedups._dense_transpose):
        x = paddle.to_tensor(data, stop_gradient=False)
        y = transpose(x, [0, 2, 3, 1, 4])
        (y * paddle.to_tensor(upstream)).sum().backward()
        results.append((y.numpy(), x.grad.numpy(), y.is_contiguous()))
    (stock_y, stock_grad, _), (dense_y, dense_grad, contiguous) = results
    assert np.array_equal(dense_y, stock_y) and np.array_equal(dense_grad, stock_grad) and contiguous
    assert paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"] is True
