"""The embedded default model: folder contents, determinism, reload, generation, CLI and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from address_completion import cli
from address_completion.model import default_model
from address_completion.data import prompt
from address_completion.model.default_model import ModelShape, build_default_model, initial_weights
from address_completion.errors import ConfigError, OutputExistsError
from address_completion.model.modeling import safetensors_format


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def logits(model, ids: list[int]):
    import paddle

    with paddle.no_grad():
        output = model(input_ids=paddle.to_tensor([ids], dtype="int64"))
    return (output[0] if isinstance(output, tuple) else output.logits).numpy()


def test_folder_has_paddle_model_layout(default_model_dir):
    names = {path.name for path in default_model_dir.iterdir()}
    assert names == {"config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
                     "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "address_completion.json"}
    config = read_json(default_model_dir / "config.json")
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["model_type"] == "qwen2"
    assert config["vocab_size"] == 151936 and config["tie_word_embeddings"] is True
    assert config["use_flash_attention"] is False and config["dtype"] == "float32"
    assert (config["eos_token_id"], config["pad_token_id"]) == (151645, 151643)
    assert {k: config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")} == {
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    generation = read_json(default_model_dir / "generation_config.json")
    assert generation["eos_token_id"] == [151645, 151643] and generation["pad_token_id"] == 151643
    assert generation["decode_strategy"] == "greedy_search" and generation["do_sample"] is False
    note = read_json(default_model_dir / "address_completion.json")
    assert note["seed"] == 0 and note["shape"] == {
        "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}
    assert "build-model --seed 0" in note["rebuild"]
    assert (note["weights"], note["weights_format"]) == ("model.safetensors", "safetensors")
    assert safetensors_format(default_model_dir / "model.safetensors") == "np"  # PaddleNLP's tag for its layout
    assert not [p for p in default_model_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_weights_are_the_seeded_initialisation(default_model_dir):
    import numpy as np
    from safetensors.numpy import load_file

    from address_completion.model.modeling import load_model

    # The file stores names sorted; the draws follow the model's parameter order.
    order = [name for name, _ in load_model(str(default_model_dir)).named_parameters()]
    stored = load_file(str(default_model_dir / "model.safetensors"))
    arrays = {name: stored[name] for name in order}
    expected = initial_weights({name: array.shape for name, array in arrays.items()
                                if name != "lm_head.weight"}, seed=0, num_layers=2)
    for name, values in expected.items():
        np.testing.assert_array_equal(arrays[name], values, err_msg=name)
    embedding = arrays["qwen2.embed_tokens.weight"]
    assert embedding.shape == (151936, 64) and abs(float(embedding.std()) - 0.02) < 1e-3
    assert np.all(arrays["qwen2.norm.weight"] == 1)


def test_seed_decides_the_weights():
    shapes = {"qwen2.embed_tokens.weight": (10, 4), "qwen2.layers.0.self_attn.o_proj.weight": (4, 4),
              "qwen2.layers.0.self_attn.q_proj.bias": (4,), "qwen2.layers.0.input_layernorm.weight": (4,)}
    import numpy as np

    same = initial_weights(shapes, seed=3, num_layers=2), initial_weights(shapes, seed=3, num_layers=2)
    other = initial_weights(shapes, seed=4, num_layers=2)
    for name in shapes:
        np.testing.assert_array_equal(same[0][name], same[1][name])
    assert not np.array_equal(same[0]["qwen2.embed_tokens.weight"], other["qwen2.embed_tokens.weight"])
    assert np.all(same[0]["qwen2.layers.0.self_attn.q_proj.bias"] == 0)
    assert np.all(same[0]["qwen2.layers.0.input_layernorm.weight"] == 1)


def test_reload_gives_identical_logits(default_model_dir, qwen_tokenizer):
    import numpy as np
    from paddlenlp.transformers import AutoModelForCausalLM

    ids = qwen_tokenizer(prompt.render_prompt(qwen_tokenizer, "碑林区扬子江南路467-6号"),
                         add_special_tokens=False)["input_ids"]
    loaded = AutoModelForCausalLM.from_pretrained(str(default_model_dir))
    loaded.eval()
    in_memory = default_model.create_model(ModelShape(), seed=0)
    first = logits(loaded, ids)
    assert first.shape == (1, len(ids), 151936) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, logits(in_memory, ids))


def test_generate_greedy_with_stop_ids(default_model_dir, qwen_tokenizer):
    import paddle
    from paddlenlp.transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(default_model_dir))
    model.eval()
    ids = qwen_tokenizer(prompt.render_prompt(qwen_tokenizer, "扶风县法门镇"), add_special_tokens=False)["input_ids"]
    input_ids = paddle.to_tensor([ids], dtype="int64")
    mask = paddle.ones_like(input_ids)
    positions = paddle.clip(paddle.cumsum(mask, axis=-1) - 1, min=0)
    outputs = []
    for _ in range(2):
        new_ids, _scores = model.generate(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                          max_new_tokens=4, decode_strategy="greedy_search",
                                          eos_token_id=[151645, 151643], pad_token_id=151643, use_cache=True)
        outputs.append(new_ids.numpy().tolist())
    assert outputs[0] == outputs[1]  # greedy is deterministic
    assert len(outputs[0][0]) == 4 and all(0 <= token < 151936 for token in outputs[0][0])  # no stop id met
    assert isinstance(prompt.decode_answer(qwen_tokenizer, outputs[0][0]), str)


# ---------------------------------------------------------------- output folder rules and CLI


def test_refuses_existing_folder_without_force(default_model_dir):
    with pytest.raises(OutputExistsError, match="--force"):
        build_default_model(default_model_dir)


def test_refuses_to_delete_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no config.json"):
        build_default_model(tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    target = tmp_path / "a-file"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="is a file"):
        build_default_model(target, force=True)


@pytest.mark.parametrize("shape, message", [
    (dict(hidden_size=64, num_attention_heads=3), "divisible by --num-attention-heads"),
    (dict(hidden_size=60, num_attention_heads=4), "must be even"),
    (dict(num_attention_heads=4, num_key_value_heads=3), "divisible by\n?.*--num-key-value-heads"),
    (dict(num_hidden_layers=0), "--num-hidden-layers must be a positive integer"),
])
def test_bad_shapes_name_the_flag(tmp_path, shape, message):
    with pytest.raises(ConfigError, match=message):
        build_default_model(tmp_path / "model", **shape)
    assert not (tmp_path / "model").exists()


def test_default_location_is_under_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_model.default_model_dir() == tmp_path / "outputs" / "default-model"


def test_cli_builds_then_refuses_then_replaces_with_force(tmp_path, capsys):
    output = tmp_path / "model"
    assert cli.main(["build-model", "--output", str(output), "--seed", "1"]) == 0
    assert str(output) in capsys.readouterr().out
    assert read_json(output / "address_completion.json")["seed"] == 1
    assert cli.main(["build-model", "--output", str(output), "--seed", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["build-model", "--output", str(output), "--seed", "2", "--force"]) == 0
    assert read_json(output / "address_completion.json")["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # old folder and staging removed


def test_modules_do_not_import_paddle():
    code = ("import argparse, sys; from address_completion.model import default_model, tokenizer;"
            "default_model.add_arguments(argparse.ArgumentParser());"
            "assert 'paddle' not in sys.modules and 'paddlenlp' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
