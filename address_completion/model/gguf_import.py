"""Import a GGUF file (llama.cpp, Ollama) of the Llama or Qwen2 architecture as a Paddle model folder.

A ``.gguf`` path given as ``model_name_or_path`` / ``--model`` is converted once into the cache
(``<cache_root>/converted-models/<file stem>-gguf-<key>/``, the key changing with the file's path, size and
modification time); the user's file is only read. The folder is what every other stage loads:

- ``config.json`` + ``generation_config.json`` from the GGUF metadata (``<arch>.block_count``,
  ``embedding_length``, ``feed_forward_length``, ``attention.head_count(_kv)``, ``rope.freq_base``,
  ``attention.layer_norm_rms_epsilon``, ``context_length``; tied embeddings when there is no
  ``output.weight`` tensor);
- ``model.safetensors`` in PaddleNLP's layout (``llama.*`` / ``qwen2.*`` names, Linear weights
  ``[in, out]``), float32, dequantized with llama.cpp's own ``gguf.quants.dequantize``;
- the tokenizer (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``,
  ``added_tokens.json``) from ``tokenizer.ggml.*`` and ``tokenizer.chat_template``.

Rotary permutation: llama.cpp's ``convert_hf_to_gguf.py`` reorders the rows of Llama's ``q_proj`` and
``k_proj`` (``LlamaModel.permute``: rows viewed as ``[heads, 2, head_dim/2]``, the two middle axes
swapped) so that its rotary kernel can rotate adjacent pairs; Hugging Face's and PaddleNLP's Llama rotate
the two halves of each head. :func:`unpermute_rotary` applies the inverse. ``Qwen2Model`` in the same script
does not permute, so Qwen2 tensors are taken as they are (transformers' GGUF loader does the same).

Pre-tokenizer: the GGUF names it in ``tokenizer.ggml.pre``. ``qwen2`` is PaddleNLP's Qwen2Tokenizer as is;
the GPT-2 family (``gpt2``, ``smollm``, ``llama-bpe`` …) uses the regular expressions of llama.cpp's
``llama-vocab.cpp``, recorded in tokenizer_config.json (:data:`PRETOKENIZER_KEY`) and applied by
:func:`apply_pretokenizer` when the project loads the tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .. import files
from ..data import dataio
from ..errors import ConfigError, DataError
from ..runtime import cache_root, logger

GGUF_CACHE_VERSION = 1
GGUF_MAGIC = b"GGUF"
ARCHITECTURES = {"llama": ("LlamaForCausalLM", "llama"), "qwen2": ("Qwen2ForCausalLM", "qwen2")}
# Tensor types dequantized here (gguf.quants implements each); anything else is refused by name.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                   "Q6_K")
# llama.cpp tensor names (gguf.constants.TENSOR_NAMES) -> Hugging Face / PaddleNLP parameter names.
LAYER_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
MODEL_TENSORS = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight"}
OUTPUT_TENSOR = "output.weight"
# GGUF token types (llama.cpp's llama_token_type): 3 = control (special), 4 = user-defined (added, not special).
TOKEN_CONTROL, TOKEN_USER_DEFINED = 3, 4
PRETOKENIZER_KEY = "gguf_pretokenizer"
# llama.cpp's llama-vocab.cpp: each pre-tokenizer is a list of regexes applied one after another; the GPT-2
# family is folded here into one regex with the same splits (a digit ends a piece the way the end of the
# text does, hence the lookahead on [^\s\p{N}] instead of \S).
GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
DIGITS_FIRST_REGEX = r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
PRETOKENIZER_REGEX = {
    "qwen2": None,  # PaddleNLP's Qwen2Tokenizer regex is Qwen2's own
    "default": GPT2_REGEX, "gpt2": GPT2_REGEX, "gpt-2": GPT2_REGEX, "mpt": GPT2_REGEX, "olmo": GPT2_REGEX,
    "smollm": DIGITS_FIRST_REGEX, "starcoder": DIGITS_FIRST_REGEX, "refact": DIGITS_FIRST_REGEX,
    "codeshell": DIGITS_FIRST_REGEX,
}
CHATML_END = "<|im_end|>"


# ---------------------------------------------------------------- recognising and caching


def is_gguf_path(text: str | os.PathLike) -> bool:
    """True when ``text`` names a GGUF file: a ``.gguf`` suffix, or an existing file starting with ``GGUF``."""
    path = Path(str(text)).expanduser()
    if path.suffix.lower() == ".gguf":
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(4) == GGUF_MAGIC


def gguf_cache_key(path: Path) -> str:
    """20 hex digits that change with the file's resolved path, size, modification time and the importer version."""
    stat = path.stat()
    text = f"gguf-v{GGUF_CACHE_VERSION}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def gguf_converted_dir(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`convert_gguf` puts the Paddle folder of ``path``: ``converted-models/<stem>-gguf-<key>``."""
    path = Path(path).expanduser()
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "converted-models"
    return root / f"{path.stem}-gguf-{gguf_cache_key(path)}"


def check_gguf_file(path: str | os.PathLike, flag: str = "--model-name-or-path") -> Path:
    """The path, when it is an existing file that starts with the GGUF magic; ConfigError/DataError otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{flag}: GGUF file {str(path)!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"{flag}: {str(path)!r} is a folder, not a GGUF file")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise DataError(f"not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})", path)
    return path


def check_gguf_source(path: str | os.PathLike, flag: str = "--model-name-or-path") -> None:
    """Fail fast (before data or model loading) on a GGUF file the importer would refuse: missing, not GGUF,
    truncated header, another architecture, an unsupported tensor type. Reads only the header."""
    path = check_gguf_file(path, flag)
    if (gguf_converted_dir(path) / "config.json").is_file():
        return
    reader = open_gguf(path)
    gguf_architecture(reader, path)
    check_tensor_types(reader, path)


def convert_gguf(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 flag: str = "--model-name-or-path") -> Path:
    """The Paddle model folder of a GGUF file: made once (atomically) in the cache, reused while the file is unchanged.

    Raises ConfigError for a missing file or an unsupported architecture, DataError naming the file (and the
    tensor or key) for a truncated file, an unsupported tensor type or inconsistent metadata.
    """
    path = check_gguf_file(path, flag)
    target = gguf_converted_dir(path, cache_dir)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        logger.debug("using converted model %s for %s", target, path)
        return target
    reader = open_gguf(path)
    architecture = gguf_architecture(reader, path)
    check_tensor_types(reader, path)  # every refusal comes before any work
    gguf_config(reader, path)
    tokenizer_files(reader, path)
    logger.info("converting GGUF file %s (%s) to a Paddle model folder (once) -> %s", path, architecture, target)
    with files.atomic_folder(target) as staging:
        write_paddle_folder(reader, path, staging)
    return target


# ---------------------------------------------------------------- reading


def open_gguf(path: Path) -> Any:
    """A ``gguf.GGUFReader`` on ``path`` (memory-mapped, read-only); DataError when the file cannot be parsed."""
    try:
        import gguf
    except ModuleNotFoundError:
        raise ConfigError("reading a GGUF file needs the 'gguf' package (llama.cpp's Python library): "
                          "pip install gguf==0.19.0") from None
    try:
        return gguf.GGUFReader(str(path), "r")
    except Exception as error:  # truncated header/tensor data, bad version: the reader raises many kinds
        detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise DataError(f"unreadable GGUF file ({type(error).__name__}: {detail}); the file is truncated or "
                        "damaged: download or copy it again", path) from None


def field(reader: Any, key: str, path: Path, default: Any = ..., kind: type | None = None) -> Any:
    """The value of metadata ``key`` (scalar, string or list); DataError naming the key when missing or mistyped."""
    entry = reader.fields.get(key)
    if entry is None:
        if default is ...:
            raise DataError(f"GGUF metadata has no {key!r}", path)
        return default
    try:
        value = entry.contents()
    except Exception as error:
        raise DataError(f"GGUF metadata {key!r} is unreadable ({type(error).__name__})", path) from None
    if kind is not None and not isinstance(value, kind):
        raise DataError(f"GGUF metadata {key!r} should be {kind.__name__}, got {type(value).__name__}", path)
    return value


def gguf_architecture(reader: Any, path: Path) -> str:
    """``general.architecture`` when it is one this importer supports; ConfigError naming it otherwise."""
    architecture = field(reader, "general.architecture", path, kind=str)
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"{path}: GGUF architecture {architecture!r} is not supported; the importer reads "
                          f"{' and '.join(sorted(ARCHITECTURES))} models")
    return architecture


def gguf_config(reader: Any, path: Path) -> dict[str, Any]:
    """config.json for PaddleNLP's LlamaForCausalLM / Qwen2ForCausalLM from the GGUF metadata.

    Tied embeddings when the file has no ``output.weight``; vocab size = rows of ``token_embd.weight``.
    """
    arch = gguf_architecture(reader, path)
    architecture, model_type = ARCHITECTURES[arch]
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise DataError("GGUF file has no token_embd.weight tensor", path)
    hidden = int(field(reader, f"{arch}.embedding_length", path))
    heads = int(field(reader, f"{arch}.attention.head_count", path))
    kv_heads = int(field(reader, f"{arch}.attention.head_count_kv", path, heads))
    head_dim = hidden // heads if heads else 0
    if heads < 1 or hidden % heads or head_dim % 2:
        raise DataError(f"{arch}.embedding_length {hidden} is not an even multiple of {arch}.attention.head_count "
                        f"{heads}", path)
    if kv_heads < 1 or heads % kv_heads:
        raise DataError(f"{arch}.attention.head_count {heads} is not a multiple of {arch}.attention.head_count_kv "
                        f"{kv_heads}", path)
    rope_dim = int(field(reader, f"{arch}.rope.dimension_count", path, head_dim))
    key_length = int(field(reader, f"{arch}.attention.key_length", path, head_dim))
    if rope_dim != head_dim or key_length != head_dim:
        raise ConfigError(f"{path}: heads of {key_length} dims with {rope_dim} rotary dims are not supported "
                          f"(PaddleNLP's {architecture} needs both = embedding_length / head_count = {head_dim})")
    scaling = field(reader, f"{arch}.rope.scaling.type", path, "none")
    if scaling not in ("none", "") or "rope_freqs.weight" in tensors:
        raise ConfigError(f"{path}: rotary scaling ({scaling if scaling != 'none' else 'rope_freqs.weight'}) is not "
                          "supported by the importer")
    vocab_size = int(tensors["token_embd.weight"].shape[-1])  # GGUF shapes are [columns, rows]
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is not None and len(tokens.data) > vocab_size:
        raise DataError(f"the tokenizer has {len(tokens.data)} tokens but token_embd.weight only {vocab_size} rows",
                        path)
    layers = int(field(reader, f"{arch}.block_count", path))
    context = int(field(reader, f"{arch}.context_length", path, 4096))
    config = {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": int(field(reader, f"{arch}.feed_forward_length", path)),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": context,
        "seq_length": context,
        "rms_norm_eps": float(field(reader, f"{arch}.attention.layer_norm_rms_epsilon", path)),
        "rope_theta": float(field(reader, f"{arch}.rope.freq_base", path, 10000.0)),
        "tie_word_embeddings": OUTPUT_TENSOR not in tensors,
        "use_flash_attention": False,
        "use_cache": True,
        "dtype": "float32",
        **special_token_ids(reader, path),
    }
    if arch == "qwen2":
        config.update(use_sliding_window=False, sliding_window=context, max_window_layers=layers,
                      attention_dropout=0.0)
    return config


def special_token_ids(reader: Any, path: Path) -> dict[str, int]:
    """bos/eos/pad ids for config.json; eos is ``<|im_end|>`` when the chat template is ChatML (see :func:`eos_token`)."""
    ids = {}
    for name, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                      ("pad_token_id", "padding_token_id")):
        value = field(reader, f"tokenizer.ggml.{key}", path, None)
        if value is not None:
            ids[name] = int(value)
    tokens = field(reader, "tokenizer.ggml.tokens", path, None)
    if tokens is not None:
        eos = eos_token(reader, path, list(tokens))
        if eos is not None:
            ids["eos_token_id"] = list(tokens).index(eos)
    if "pad_token_id" not in ids and "eos_token_id" in ids:
        ids["pad_token_id"] = ids["eos_token_id"]
    return ids


def eos_token(reader: Any, path: Path, tokens: list[str]) -> str | None:
    """The token answers end with: ``<|im_end|>`` when the chat template is ChatML (so the project's prompt, training
    and stop id agree, whatever the GGUF calls its EOS), else ``tokenizer.ggml.eos_token_id``'s token."""
    template = field(reader, "tokenizer.chat_template", path, "") or ""
    if CHATML_END in template and CHATML_END in tokens:
        return CHATML_END
    eos = field(reader, "tokenizer.ggml.eos_token_id", path, None)
    return tokens[int(eos)] if eos is not None and 0 <= int(eos) < len(tokens) else None


# ---------------------------------------------------------------- tensors


def unpermute_rotary(weights: Any, heads: int) -> Any:
    """Inverse of llama.cpp's ``LlamaModel.permute`` (convert_hf_to_gguf.py) on a Q or K weight or bias.

    ``weights``: ``[heads * head_dim, ...]`` rows as stored in the GGUF (for K, ``heads`` is the KV head count).
    llama.cpp did ``w.reshape(heads, 2, head_dim // 2, ...).swapaxes(1, 2).reshape(w.shape)``; this reshapes to
    ``(heads, head_dim // 2, 2, ...)`` and swaps back, returning Hugging Face's row order (same shape).
    """
    shape = weights.shape
    half = shape[0] // heads // 2
    return weights.reshape(heads, half, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def check_tensor_types(reader: Any, path: Path) -> None:
    """DataError naming the first tensor whose type is not in :data:`SUPPORTED_TYPES`."""
    for tensor in reader.tensors:
        check_tensor_type(tensor, path)


def check_tensor_type(tensor: Any, path: Path) -> None:
    kind = tensor.tensor_type.name
    if kind not in SUPPORTED_TYPES:
        raise DataError(f"tensor {tensor.name} has type {kind}, which the importer does not read (supported: "
                        f"{', '.join(SUPPORTED_TYPES)}); convert the model with llama.cpp to one of them", path)


def dequantized(tensor: Any, path: Path) -> Any:
    """``tensor`` as a float32 NumPy array in PyTorch's ``[out, in]`` order; DataError naming an unsupported type."""
    import numpy as np
    from gguf import quants

    check_tensor_type(tensor, path)
    kind = tensor.tensor_type.name
    shape = tuple(int(size) for size in reversed(tensor.shape))  # GGUF lists the fastest-varying axis first
    try:
        values = quants.dequantize(tensor.data, tensor.tensor_type)
        return np.asarray(values, dtype=np.float32).reshape(shape)
    except (ValueError, TypeError) as error:  # data shorter than the header says: a truncated file
        raise DataError(f"tensor {tensor.name} ({kind}, shape {list(shape)}) cannot be read ({error}); the file is "
                        "truncated or damaged", path) from None


def paddle_tensors(reader: Any, path: Path, config: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(PaddleNLP parameter name, float32 array) for every tensor of the model, in PaddleNLP's layout.

    Linear weights are transposed to Paddle's ``[in, out]``; the embedding stays ``[vocab, hidden]``; Llama's Q/K
    rows are un-permuted (:func:`unpermute_rotary`). DataError names an unknown, missing or misshapen tensor.
    """
    import numpy as np

    arch = field(reader, "general.architecture", path)
    prefix = ARCHITECTURES[arch][1]
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    expected = expected_shapes(config)
    seen = set()
    for name, tensor in tensors.items():
        target = paddle_name(name, prefix, config["num_hidden_layers"])
        if target is None or target not in expected:  # e.g. Llama attention biases, which PaddleNLP's Llama lacks
            raise DataError(f"unexpected tensor {name} for a {arch} model (not part of PaddleNLP's "
                            f"{ARCHITECTURES[arch][0]})", path)
        values = dequantized(tensor, path)
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            heads = config["num_attention_heads"] if ".attn_q." in name else config["num_key_value_heads"]
            values = unpermute_rotary(values, heads)
        if values.ndim == 2 and target != f"{prefix}.embed_tokens.weight":
            values = np.ascontiguousarray(values.T)
        if list(values.shape) != expected[target]:
            raise DataError(f"tensor {name} has shape {list(values.shape)} after conversion, expected "
                            f"{expected[target]} from the metadata", path)
        seen.add(target)
        yield target, values
    missing = sorted(name for name in expected if name not in seen)
    if missing:
        raise DataError(f"GGUF file lacks tensors the model needs: {', '.join(missing[:4])}", path)


def paddle_name(gguf_name: str, prefix: str, layers: int) -> str | None:
    """``blk.3.attn_q.weight`` -> ``llama.layers.3.self_attn.q_proj.weight``; None for a name with no counterpart."""
    if gguf_name in MODEL_TENSORS:
        return f"{prefix}.{MODEL_TENSORS[gguf_name]}"
    if gguf_name == OUTPUT_TENSOR:
        return "lm_head.weight"
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and int(parts[1]) < layers:
        local = LAYER_TENSORS.get(parts[2])
        return f"{prefix}.layers.{parts[1]}.{local}" if local else None
    return None


def expected_shapes(config: dict[str, Any]) -> dict[str, list[int]]:
    """PaddleNLP's parameter shapes for ``config`` (biases only where Qwen2 has them)."""
    prefix = ARCHITECTURES["qwen2" if config["model_type"] == "qwen2" else "llama"][1]
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * hidden // config["num_attention_heads"]
    shapes = {f"{prefix}.embed_tokens.weight": [vocab, hidden], f"{prefix}.norm.weight": [hidden]}
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [hidden, vocab]
    for index in range(config["num_hidden_layers"]):
        layer = f"{prefix}.layers.{index}."
        shapes.update({
            layer + "input_layernorm.weight": [hidden], layer + "post_attention_layernorm.weight": [hidden],
            layer + "self_attn.q_proj.weight": [hidden, hidden], layer + "self_attn.k_proj.weight": [hidden, kv],
            layer + "self_attn.v_proj.weight": [hidden, kv], layer + "self_attn.o_proj.weight": [hidden, hidden],
            layer + "mlp.gate_proj.weight": [hidden, inter], layer + "mlp.up_proj.weight": [hidden, inter],
            layer + "mlp.down_proj.weight": [inter, hidden],
        })
        if prefix == "qwen2":
            shapes.update({layer + "self_attn.q_proj.bias": [hidden], layer + "self_attn.k_proj.bias": [kv],
                           layer + "self_attn.v_proj.bias": [kv]})
    return shapes


# ---------------------------------------------------------------- tokenizer


def tokenizer_files(reader: Any, path: Path) -> dict[str, Any]:
    """vocab.json, merges.txt (text), tokenizer_config.json, special_tokens_map.json and added_tokens.json contents.

    Only byte-level BPE (``tokenizer.ggml.model`` = ``gpt2``) is supported: that is what Qwen2 and Llama 3 /
    SmolLM2 GGUF files carry. Control tokens (type 3) become special added tokens, user-defined ones (type 4)
    added tokens that are never split; every entry is spelled out (lstrip/rstrip false), which PaddleNLP's slow
    tokenizer needs to keep the "\\n" after ``<|im_end|>``.
    """
    model = field(reader, "tokenizer.ggml.model", path, kind=str)
    if model != "gpt2":
        raise ConfigError(f"{path}: tokenizer.ggml.model is {model!r}; the importer reads byte-level BPE tokenizers "
                          "('gpt2', as Qwen2 and Llama 3 style models use)")
    pre = field(reader, "tokenizer.ggml.pre", path, "default")
    if pre not in PRETOKENIZER_REGEX:
        raise ConfigError(f"{path}: pre-tokenizer tokenizer.ggml.pre = {pre!r} is not supported (supported: "
                          f"{', '.join(sorted(PRETOKENIZER_REGEX))})")
    tokens = [str(token) for token in field(reader, "tokenizer.ggml.tokens", path)]
    types = [int(kind) for kind in field(reader, "tokenizer.ggml.token_type", path, [1] * len(tokens))]
    merges = [str(merge) for merge in field(reader, "tokenizer.ggml.merges", path)]
    if len(types) != len(tokens):
        raise DataError(f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens", path)
    for number, merge in enumerate(merges):
        if len(merge.split(" ")) != 2:
            raise DataError(f"tokenizer.ggml.merges[{number}] = {merge!r} is not two tokens separated by a space",
                            path)

    def entry(token: str, special: bool) -> dict[str, Any]:
        return {"content": token, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": special}

    added = {index: entry(token, kind == TOKEN_CONTROL) for index, (token, kind) in enumerate(zip(tokens, types))
             if kind in (TOKEN_CONTROL, TOKEN_USER_DEFINED)}
    vocab = {token: index for index, token in enumerate(tokens) if index not in added}

    def token_of(key: str) -> str | None:
        value = field(reader, f"tokenizer.ggml.{key}", path, None)
        return tokens[int(value)] if value is not None and 0 <= int(value) < len(tokens) else None

    eos = eos_token(reader, path, tokens)
    pad = token_of("padding_token_id") or eos
    bos = token_of("bos_token_id")
    unk = token_of("unknown_token_id") or pad
    specials = {"bos_token": bos, "eos_token": eos, "pad_token": pad, "unk_token": unk}
    config: dict[str, Any] = {
        "tokenizer_class": "Qwen2Tokenizer",  # PaddleNLP's byte-level BPE with added-token handling
        "added_tokens_decoder": {str(index): value for index, value in added.items()},
        "additional_special_tokens": [value["content"] for value in added.values() if value["special"]],
        **{key: value for key, value in specials.items() if value is not None},
        "model_max_length": int(field(reader, f"{field(reader, 'general.architecture', path)}.context_length",
                                      path, 4096)),
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        PRETOKENIZER_KEY: pre,
    }
    template = field(reader, "tokenizer.chat_template", path, None)
    if template:
        config["chat_template"] = str(template)
    special_map = {key: entry(value, True) for key, value in specials.items() if value is not None}
    special_map["additional_special_tokens"] = [value for value in added.values() if value["special"]]
    return {
        "vocab.json": vocab,
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer_config.json": config,
        "special_tokens_map.json": special_map,
        "added_tokens.json": {value["content"]: index for index, value in added.items()},
    }


def apply_pretokenizer(tokenizer: Any, folder: str | os.PathLike) -> Any:
    """Give a tokenizer loaded from an imported GGUF folder the GGUF's own pre-tokenizer (no-op for other folders).

    PaddleNLP's Qwen2Tokenizer always splits with Qwen2's regex and NFC-normalises; a GPT-2 family pre-tokenizer
    (:data:`PRETOKENIZER_REGEX`) replaces the regex and drops the normalisation, as llama.cpp does.
    """
    config_file = Path(folder) / "tokenizer_config.json"
    if not config_file.is_file():
        return tokenizer
    try:
        pre = json.loads(config_file.read_text(encoding="utf-8")).get(PRETOKENIZER_KEY)
    except ValueError:
        return tokenizer
    regex = PRETOKENIZER_REGEX.get(pre) if pre else None
    if regex is None:
        return tokenizer
    import regex as re_module  # PaddleNLP's tokenizers use the `regex` package (\p{L} classes)

    tokenizer.pat = re_module.compile(regex)
    tokenizer.prepare_for_tokenization = lambda text, **kwargs: (text, kwargs)
    return tokenizer


# ---------------------------------------------------------------- writing


def generation_config(config: dict[str, Any], reader: Any, path: Path) -> dict[str, Any]:
    """Greedy decoding that stops on the answer's EOS and on the GGUF's own EOS / end-of-turn ids."""
    stops = [config["eos_token_id"]] if "eos_token_id" in config else []
    for key in ("eos_token_id", "eot_token_id"):
        value = field(reader, f"tokenizer.ggml.{key}", path, None)
        if value is not None and int(value) not in stops:
            stops.append(int(value))
    result = {"decode_strategy": "greedy_search", "do_sample": False, "num_beams": 1, "repetition_penalty": 1.0,
              "use_cache": True}
    if stops:
        result["eos_token_id"] = stops if len(stops) > 1 else stops[0]
    for key in ("bos_token_id", "pad_token_id"):
        if key in config:
            result[key] = config[key]
    return result


def write_paddle_folder(reader: Any, path: Path, folder: Path) -> None:
    """Write config, generation config, tokenizer files and ``model.safetensors`` (format ``np``) into ``folder``."""
    from safetensors.numpy import save_file

    config = gguf_config(reader, path)
    for name, content in tokenizer_files(reader, path).items():
        if isinstance(content, str):
            files.atomic_write_text(folder / name, content)
        else:
            dataio.write_json(folder / name, content)
    dataio.write_json(folder / "config.json", config)
    dataio.write_json(folder / "generation_config.json", generation_config(config, reader, path))
    tensors = dict(paddle_tensors(reader, path, config))
    if config["tie_word_embeddings"]:
        # Paddle's own save_pretrained writes the tied head too; without it PaddleNLP warns that lm_head.weight
        # was "newly initialized" (it was not: it is the embedding parameter).
        tensors["lm_head.weight"] = tensors[f"{ARCHITECTURES[config['model_type']][1]}.embed_tokens.weight"]
    # PaddleNLP's own tag for its layout: modeling.is_paddle_model_dir and from_pretrained both read it.
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "np"})
    dataio.write_json(folder / "address_completion.json", {
        "imported_from": str(path.resolve()), "size": path.stat().st_size,
        "architecture": config["architectures"][0], "importer_version": GGUF_CACHE_VERSION,
        "tensor_types": sorted({tensor.tensor_type.name for tensor in reader.tensors}),
    })
