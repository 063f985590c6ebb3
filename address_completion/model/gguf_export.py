"""Hugging Face folder -> GGUF file (f16, or q8_0) with llama.cpp's metadata for qwen2 / llama: tensors, the
tokenizer (BPE merges, token types, pre-tokenizer name) and chat template. What GGUF names mean is read from
gguf_import.py (one ARCHITECTURES table, the pre-tokenizer names), so import and export agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .export_hf import HF_WEIGHTS, architecture
from .gguf_import import PRETOKENIZER_KEY

QUANTIZATIONS = ("f16", "q8_0")
GGUF_BLOCK = 32  # Q8_0 quantizes rows in blocks of 32 values; other rows stay f16 (as llama.cpp's converter does)


def llama_rotary_permute(weight: Any, heads: int) -> Any:
    """Reorder the rows of a Q or K projection ([heads * head_dim, hidden]) from Hugging Face's rotary layout
    (first half / second half of each head rotate together) to llama.cpp's (adjacent pairs rotate together)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_tensor(name: str, value: Any, quantize: str) -> tuple[Any, Any]:
    """(data, GGML type) for one tensor: 1-D in f32; 2-D in f16, or q8_0 when rows split into 32-value blocks."""
    import gguf
    import numpy as np

    types = gguf.GGMLQuantizationType
    if value.ndim < 2:
        return value.astype(np.float32), types.F32
    if quantize == "q8_0" and value.shape[-1] % GGUF_BLOCK == 0:
        return gguf.quants.quantize(value.astype(np.float32), types.Q8_0), types.Q8_0
    return value.astype(np.float16), types.F16


def rounded_state(paddle_state: dict[str, Any], quantize: str, tied: bool) -> dict[str, Any]:
    """The Paddle parameters with each value replaced by what :func:`gguf_tensor` stores (read back as float32).

    Q8_0 blocks run along a row of the Hugging Face layout ([out, in]), i.e. a column of Paddle's [in, out]. A tied
    lm_head is the embedding itself ([vocab, hidden], not transposed) and gets the embedding's values.
    """
    import gguf
    import numpy as np

    rounded = {}
    for name, value in paddle_state.items():
        if tied and name == "lm_head.weight":
            continue
        transposed = value.ndim == 2 and not name.endswith("embed_tokens.weight")
        hf_value = value.T if transposed else value
        data, kind = gguf_tensor(name, hf_value, quantize)
        back = (gguf.quants.dequantize(data, kind) if kind == gguf.GGMLQuantizationType.Q8_0 else data)
        back = np.asarray(back, dtype=np.float32).reshape(hf_value.shape)
        rounded[name] = np.ascontiguousarray(back.T) if transposed else back
    if tied and "lm_head.weight" in paddle_state:
        rounded["lm_head.weight"] = next(value for name, value in rounded.items()
                                         if name.endswith("embed_tokens.weight"))
    return rounded


def token_table(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """GGUF token list and types for every row of the embedding: BPE tokens NORMAL, special added tokens CONTROL,
    other added tokens USER_DEFINED, rows past the tokenizer's vocabulary ``[PAD<id>]`` (USER_DEFINED)."""
    import gguf

    kinds = gguf.TokenType
    by_id = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    if max(by_id) >= vocab_size:
        raise ConfigError(f"the tokenizer has token id {max(by_id)} but the model's vocab_size is {vocab_size}")
    tokens, types = [], []
    for token_id in range(vocab_size):
        if token_id not in by_id:
            tokens.append(f"[PAD{token_id}]")
            types.append(kinds.USER_DEFINED)
        elif token_id in added:
            tokens.append(by_id[token_id])
            types.append(kinds.CONTROL if added[token_id].special else kinds.USER_DEFINED)
        else:
            tokens.append(by_id[token_id])
            types.append(kinds.NORMAL)
    return tokens, [int(kind) for kind in types]


def bpe_merges(hf_dir: Path) -> list[str]:
    """The BPE merges as "left right" strings, from tokenizer.json (either of its two spellings)."""
    merges = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    return [merge if isinstance(merge, str) else " ".join(merge) for merge in merges]


def tokenizer_pre(config: dict, source_dir: Path) -> str:
    """llama.cpp's name for the pre-tokenizer (the regex that splits text before BPE).

    A model imported from GGUF keeps its file's name (tokenizer_config.json, ``gguf_pretokenizer``); other Qwen2
    models use "qwen2". Anything else cannot be named with confidence and is refused.
    """
    tokenizer_config = source_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        pre = json.loads(tokenizer_config.read_text(encoding="utf-8")).get(PRETOKENIZER_KEY)
        if pre:
            return str(pre)
    if config.get("model_type") == "qwen2":
        return "qwen2"
    raise ConfigError(f"{source_dir}: cannot tell llama.cpp's pre-tokenizer for model_type "
                      f"{config.get('model_type')!r}; only Qwen2 models and models imported from GGUF can be exported "
                      "to GGUF")


def write_gguf(path: Path, hf_dir: Path, config: dict, source_dir: Path, quantize: str) -> None:
    """A GGUF file of the transformers folder ``hf_dir``, with llama.cpp's metadata for qwen2 / llama."""
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    _, _, arch_name = architecture(config, source_dir)
    arch = next(arch for arch, name in gguf.MODEL_ARCH_NAMES.items() if name == arch_name)
    layers = int(config["num_hidden_layers"])
    heads, kv_heads = int(config["num_attention_heads"]), int(config.get("num_key_value_heads") or
                                                              config["num_attention_heads"])
    names = gguf.get_tensor_name_map(arch, layers)
    writer = gguf.GGUFWriter(None, arch_name)
    writer.add_name(source_dir.resolve().name)
    writer.add_block_count(layers)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    if arch_name == "llama":
        writer.add_vocab_size(int(config["vocab_size"]))
        writer.add_rope_dimension_count(int(config.get("head_dim") or config["hidden_size"] // heads))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantize == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    tokens, types = token_table(tokenizer, int(config["vocab_size"]))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tokenizer_pre(config, source_dir))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(bpe_merges(hf_dir))
    bos = config.get("bos_token_id", tokenizer.bos_token_id)
    if bos is not None:
        writer.add_bos_token_id(int(bos))
    writer.add_eos_token_id(int(tokenizer.eos_token_id))
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(int(tokenizer.pad_token_id))
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)

    for name, value in load_file(str(hf_dir / HF_WEIGHTS)).items():
        if arch_name == "llama" and name.endswith("q_proj.weight"):
            value = llama_rotary_permute(value, heads)
        elif arch_name == "llama" and name.endswith("k_proj.weight"):
            value = llama_rotary_permute(value, kv_heads)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ConfigError(f"no GGUF name for tensor {name} of a {arch_name} model")
        data, kind = gguf_tensor(name, value, quantize)
        writer.add_tensor(gguf_name, data, raw_dtype=kind)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
