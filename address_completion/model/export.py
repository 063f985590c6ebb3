"""Export a model (with a LoRA adapter merged in, if given) as a Hugging Face folder or a GGUF file, verified.

--format hf writes OUT as a folder that transformers and vLLM load as it is: model.safetensors with Hugging
Face parameter names, config.json, the tokenizer (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json
with the chat template) and generation_config.json (stops on <|im_end|>). --format gguf writes OUT as one .gguf
file for llama.cpp / Ollama (f16, or q8_0 with --quantize q8_0) with the architecture metadata, tokenizer and
chat template. Before OUT appears, the export is reloaded in transformers and its logits on a probe batch of
real address prompts are compared with the Paddle model's, and its tokenizer must encode the prompts to the same
ids; a GGUF file is also re-imported with the project's own importer, and both loads are compared with the
Paddle model carrying the very weights the file stores as well (any conversion mistake shows there, whatever
the rounding does). Above a tolerance the export fails and OUT is not written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from ..data import dataio
from ..errors import AddressCompletionError, ConfigError, DataError
from ..runtime import logger

FORMATS = ("hf", "gguf")
QUANTIZATIONS = ("f16", "q8_0")
# Architectures we export: PaddleNLP model_type -> (Hugging Face class, Paddle parameter prefix, GGUF arch name).
ARCHITECTURES = {
    "qwen2": ("Qwen2ForCausalLM", "qwen2.", "qwen2"),
    "llama": ("LlamaForCausalLM", "llama.", "llama"),
}
# Largest accepted |logit difference| between the reloaded export and the Paddle model, relative to the largest
# |logit| of the Paddle model on the probe batch (scale-free: a trained model's logits are 25x a random one's).
# Measured (docs/export.md): hf 3.0e-7 (default model), 3.5e-6 (SmolLM2-135M, 30 layers); gguf f16 2.0e-4, 1.7e-3,
# 1.25e-2 (default model + the tests' deliberately large adapter); gguf q8_0 4.6e-3, 4.2e-2, 0.26. For GGUF this bounds
# what rounding does to the model; whether the file is right is FAITHFUL_TOLERANCE's job.
DEFAULT_TOLERANCE = {"hf": 1e-4, "f16": 5e-2, "q8_0": 5e-1}
# A GGUF export is also compared with the Paddle model given the very weights the file stores (rounded to f16, or
# quantized and dequantized as q8_0): only the reading runtime differs then, so any conversion mistake shows
# however much the rounding itself moves the logits. Measured: see docs/export.md.
FAITHFUL_TOLERANCE = 1e-4
EXTRA_HINT = "pip install -e '.[export]'"
GGUF_BLOCK = 32  # Q8_0 quantizes rows in blocks of 32 values; other rows stay f16 (as llama.cpp's converter does)
HF_WEIGHTS = "model.safetensors"
RECORD_FILE = "address_completion_export.json"


class ExportVerificationError(AddressCompletionError):
    """The reloaded export does not reproduce the Paddle model."""


@dataclass(frozen=True)
class ExportResult:
    output_path: Path
    format: str
    quantize: Optional[str]
    max_abs_diff: float  # largest |logit difference| on the probe batch (real positions)
    relative_diff: float  # max_abs_diff / largest |logit| of the Paddle model
    tolerance: float  # bound on relative_diff
    checks: dict = field(default_factory=dict)


# ---------------------------------------------------------------- packages


def require_export_packages() -> None:
    """ConfigError naming the missing packages of the ``export`` extra (torch, transformers, gguf)."""
    import importlib.util

    missing = [name for name in ("torch", "transformers", "gguf", "accelerate")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"export needs {', '.join(missing)} (not installed): {EXTRA_HINT} installs the export extra "
                          "(torch==2.13.0 CPU, transformers, accelerate, gguf)")


# ---------------------------------------------------------------- Paddle -> Hugging Face


def architecture(config: dict, path: Path) -> tuple[str, str, str]:
    """(HF class, Paddle prefix, GGUF arch) for a model config; ConfigError for architectures we cannot export."""
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ConfigError(f"{path}: model_type {model_type!r} cannot be exported; supported: "
                          f"{', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[model_type]


def hf_state_dict(paddle_state: dict[str, Any], config: dict, path: Path) -> dict[str, Any]:
    """Paddle parameters (name -> float32 numpy array) renamed and laid out as transformers expects.

    Paddle's Linear stores [in, out] where torch stores [out, in]: every 2-D weight is transposed except the
    embedding ([vocab, hidden] in both). The ``qwen2.``/``llama.`` prefix becomes ``model.``. With tied
    embeddings there is no lm_head (transformers ties it to the embedding itself).
    """
    import numpy as np

    _, prefix, _ = architecture(config, path)
    tied = bool(config.get("tie_word_embeddings"))
    state = {}
    for name, value in paddle_state.items():
        if name == "lm_head.weight" and tied:
            continue
        hf_name = "model." + name[len(prefix):] if name.startswith(prefix) else name
        if value.ndim == 2 and not name.endswith("embed_tokens.weight"):
            value = np.ascontiguousarray(value.T)  # safetensors writes the buffer as laid out, not the view
        state[hf_name] = value
    if not tied and "lm_head.weight" not in state:
        raise DataError("tie_word_embeddings is false but the model has no lm_head.weight", path / "config.json")
    return state


def hf_config(config: dict, path: Path) -> Any:
    """A transformers config (Qwen2Config / LlamaConfig) with the keys transformers knows, float32 weights."""
    import inspect

    import torch
    from transformers import AutoConfig, CONFIG_MAPPING

    hf_class, _, _ = architecture(config, path)
    config_class = CONFIG_MAPPING[config["model_type"]]
    known = set(inspect.signature(config_class.__init__).parameters) | {"bos_token_id", "eos_token_id",
                                                                           "pad_token_id"}
    settings = {key: value for key, value in config.items() if key in known and key != "model_type"}
    if config.get("rope_scaling_type"):  # PaddleNLP spells rope scaling as two flat keys
        settings["rope_scaling"] = {"rope_type": config["rope_scaling_type"],
                                    "factor": config.get("rope_scaling_factor", 1.0)}
    result = AutoConfig.for_model(config["model_type"], **settings)
    result.architectures = [hf_class]
    result.torch_dtype = torch.float32
    return result


def generation_settings(source_dir: Path, tokenizer: Any) -> dict:
    """The source's generation config with the Hugging Face keys only, stopping on the chat EOS first."""
    from transformers import GenerationConfig

    from ..data.prompt import eos_token_id

    source = source_dir / "generation_config.json"
    config = dataio.read_json_file(source, "generation config") if source.is_file() else {}
    if not isinstance(config, dict):
        raise DataError("expected a JSON object (the generation config)", source)
    defaults = GenerationConfig().to_dict()
    settings = {key: value for key, value in config.items() if key in defaults}
    declared = settings.get("eos_token_id")
    stops = declared if isinstance(declared, list) else ([] if declared is None else [declared])
    eos = eos_token_id(tokenizer)
    stops = [eos, *[stop for stop in stops if stop != eos]]
    settings["eos_token_id"] = stops[0] if len(stops) == 1 else stops
    if settings.get("pad_token_id") is None and tokenizer.pad_token_id is not None:
        settings["pad_token_id"] = int(tokenizer.pad_token_id)
    return settings


def fill_vocabulary_holes(folder: Path) -> None:
    """Put added tokens whose ids lie inside the BPE vocabulary into vocab.json.

    Qwen2.5 numbers its added tokens after the BPE vocabulary, but SmolLM2 (and other GGUF imports) keep special
    tokens at ids 0-16: left out of vocab.json, transformers would see holes there and renumber those tokens.
    """
    vocab_file, added_file = folder / "vocab.json", folder / "added_tokens.json"
    if not (vocab_file.is_file() and added_file.is_file()):
        return
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    added = json.loads(added_file.read_text(encoding="utf-8"))
    last = max(vocab.values(), default=-1)
    inside = {token: token_id for token, token_id in added.items() if token_id < last and token not in vocab}
    if inside:
        vocab.update(inside)
        dataio.atomic_write_text(vocab_file, json.dumps(dict(sorted(vocab.items(), key=lambda item: item[1])),
                                                        ensure_ascii=False))


def write_hf_folder(folder: Path, paddle_state: dict[str, Any], config: dict, source_dir: Path,
                    tokenizer: Any) -> None:
    """Weights, config, tokenizer and generation config of a transformers model folder."""
    from safetensors.numpy import save_file
    from transformers import AutoTokenizer, GenerationConfig

    state = hf_state_dict(paddle_state, config, source_dir)
    save_file({name: value.astype("float32", copy=False) for name, value in state.items()},
              str(folder / HF_WEIGHTS), metadata={"format": "pt"})  # "pt": what transformers and vLLM expect
    hf_config(config, source_dir).save_pretrained(str(folder))
    from ..training.merge import TOKENIZER_FILES

    for name in TOKENIZER_FILES:
        if (source_dir / name).is_file():
            shutil.copy2(source_dir / name, folder / name)
    fill_vocabulary_holes(folder)
    # transformers' own (fast, Rust `tokenizers`) tokenizer built from vocab.json + merges.txt writes tokenizer.json,
    # which vLLM and llama.cpp's converter prefer; its special_tokens_map.json replaces PaddleNLP's.
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
    set_pretokenizer(folder, source_dir)
    GenerationConfig(**generation_settings(source_dir, tokenizer)).save_pretrained(str(folder))


# ---------------------------------------------------------------- Hugging Face -> GGUF


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


def rounded_reference(model: str, paddle_state: dict[str, Any], quantize: str, tied: bool, batch: Any,
                      dtype: str) -> Any:
    """Probe logits of the Paddle model carrying the GGUF file's rounded weights (see FAITHFUL_TOLERANCE)."""
    import gc

    from ..training.merge import probe_logits
    from .modeling import load_model

    loaded = load_model(model, dtype=dtype, flag="--model")
    loaded.set_state_dict(rounded_state(paddle_state, quantize, tied))
    loaded.eval()
    logits = probe_logits(loaded, batch)
    del loaded
    gc.collect()
    return logits


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
    from .gguf_import import PRETOKENIZER_KEY

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


def set_pretokenizer(folder: Path, source_dir: Path) -> None:
    """Give tokenizer.json the GGUF pre-tokenizer an imported model was trained with (no-op for Qwen2's own).

    transformers builds tokenizer.json from tokenizer_class (Qwen2's regex and NFC normalisation); a model imported
    from a GGUF file with a GPT-2 family pre-tokenizer (SmolLM2: "smollm") splits text with that regex instead,
    as llama.cpp and the project's own tokenizer do (:data:`gguf_import.PRETOKENIZER_REGEX`).
    """
    from .gguf_import import PRETOKENIZER_KEY, PRETOKENIZER_REGEX

    tokenizer_config = source_dir / "tokenizer_config.json"
    if not tokenizer_config.is_file():
        return
    regex = PRETOKENIZER_REGEX.get(json.loads(tokenizer_config.read_text(encoding="utf-8")).get(PRETOKENIZER_KEY))
    if regex is None:
        return
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.save(str(folder / "tokenizer.json"))


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


# ---------------------------------------------------------------- verification


def torch_logits(model: Any, batch: tuple[list[list[int]], list[list[int]], list[list[int]]]) -> Any:
    """Logits (numpy float32) of a transformers model on the probe batch (ids, mask, position ids)."""
    import torch

    input_ids, attention_mask, position_ids = (torch.tensor(rows, dtype=torch.long) for rows in batch)
    with torch.no_grad():
        output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return output.logits.float().numpy()


def check_tokenizer(reloaded: Any, tokenizer: Any, prompts: list[str], what: str) -> None:
    """ExportVerificationError unless the exported tokenizer encodes every prompt to our ids and renders the chat
    template to the same text."""
    from ..data.prompt import has_chat_template

    for prompt in prompts:
        ours = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        theirs = list(reloaded(prompt, add_special_tokens=False)["input_ids"])
        if ours != theirs:
            raise ExportVerificationError(f"{what} encodes {prompt!r} as {theirs[:12]}... where the model's tokenizer "
                                          f"gives {ours[:12]}...; the export was not written")
    if has_chat_template(tokenizer):
        message = [{"role": "user", "content": "碑林区扬子江南路467-6号"}]
        ours = tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
        theirs = reloaded.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
        if ours != theirs:
            raise ExportVerificationError(f"{what}'s chat template renders {theirs!r}, the model's {ours!r}; the "
                                          "export was not written")


def compare_logits(reference: Any, logits: Any, mask: list[list[int]], tolerance: float, what: str) -> tuple[
        float, float]:
    """(max |difference|, relative difference) over real positions; ExportVerificationError above tolerance."""
    import numpy as np

    from ..training.merge import max_logit_difference

    if logits.shape[-1] < reference.shape[-1]:
        raise ExportVerificationError(f"{what} has {logits.shape[-1]} output logits, the model {reference.shape[-1]}")
    logits = logits[..., : reference.shape[-1]]
    max_diff = max_logit_difference(reference, logits, mask)
    scale = float(np.abs(reference[np.asarray(mask, dtype=bool)]).max())
    relative = max_diff / scale if scale > 0 else max_diff
    logger.info("%s: max |logit difference| %.3g (%.3g relative to the largest |logit| %.3g; tolerance %.3g)", what,
                max_diff, relative, scale, tolerance)
    if not relative <= tolerance:  # also catches NaN
        raise ExportVerificationError(f"{what}: the logits differ by {max_diff:.3g} "
                                      f"({relative:.3g} of the largest |logit| {scale:.3g}; tolerance {tolerance:g}) "
                                      "on the probe batch; the export was not written (a quantized export may pass "
                                      "--tolerance to accept more)")
    return max_diff, relative


def load_transformers_model(folder: Path, gguf_file: Optional[str] = None) -> Any:
    """transformers' AutoModelForCausalLM from an export, float32; ExportVerificationError when a weight is missing
    or left unused (transformers only warns)."""
    import torch
    from transformers import AutoModelForCausalLM

    options = {"gguf_file": gguf_file} if gguf_file else {}
    model, info = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32,
                                                       output_loading_info=True, **options)
    problems = {key: value for key, value in info.items() if value and key in ("missing_keys", "unexpected_keys",
                                                                                "mismatched_keys")}
    if problems:
        raise ExportVerificationError(f"transformers loaded the export with {problems}; the export was not written")
    return model.eval()


def compare_all(references: list[tuple[Any, float, str]], logits: Any, mask: list[list[int]], what: str) -> list[
        tuple[float, float]]:
    """compare_logits against each (reference logits, tolerance, what the reference is)."""
    return [compare_logits(reference, logits, mask, tolerance, f"{what} vs {label}")
            for reference, tolerance, label in references]


def verify_with_importer(gguf_path: Path, references: list[tuple[Any, float, str]], batch: Any, prompts: list[str],
                         tokenizer: Any) -> list[tuple[float, float]]:
    """Import the GGUF file with the project's own importer (into a folder beside it) and check it like transformers'
    load: same token ids for the prompts, logits within the tolerance."""
    import gc

    from .gguf_import import convert_gguf
    from ..training.merge import probe_logits
    from .modeling import load_model, load_tokenizer

    folder = convert_gguf(gguf_path, cache_dir=gguf_path.parent / "imported", flag="--output")
    what = f"the project's GGUF import of {gguf_path.name}"
    check_tokenizer(load_tokenizer(str(folder)), tokenizer, prompts, f"{what} (tokenizer)")
    model = load_model(str(folder), written_here=True)
    model.eval()
    try:
        return compare_all(references, probe_logits(model, batch), batch[1], what)
    finally:
        del model
        gc.collect()


def verify_export(folder: Path, references: list[tuple[Any, float, str]], batch: Any, prompts: list[str],
                  tokenizer: Any, gguf_file: Optional[str] = None) -> list[tuple[float, float]]:
    """Reload the export (folder, or the GGUF file in it) with transformers; check tokenizer and logits."""
    import gc

    from transformers import AutoTokenizer

    what = f"transformers' load of {gguf_file or 'the Hugging Face folder'}"
    options = {"gguf_file": gguf_file} if gguf_file else {}
    check_tokenizer(AutoTokenizer.from_pretrained(str(folder), **options), tokenizer, prompts, f"{what} (tokenizer)")
    model = load_transformers_model(folder, gguf_file)
    try:
        return compare_all(references, torch_logits(model, batch), batch[1], what)
    finally:
        del model
        gc.collect()


# ---------------------------------------------------------------- the Paddle side


def paddle_reference(model: str, lora_path: Optional[str], batch: Any, dtype: str,
                     merge_tolerance: Optional[float] = None) -> tuple[dict[str, Any], Any]:
    """(float32 numpy state dict of the model to export, its reference logits on the probe batch).

    With an adapter, the reference is base + adapter; the adapter is merged (merge.merge_and_restore) and the
    merged weights must reproduce the reference within ``merge_tolerance`` (default: merge's), as ``merge`` checks.
    """
    import gc

    from ..training.merge import (adapter_reference, check_merged_logits, default_tolerance, merge_and_restore,
                                  probe_logits)
    from .modeling import load_model

    loaded = load_model(model, dtype=dtype, lora_path=lora_path, flag="--model")
    loaded.eval()
    if not lora_path:
        reference = probe_logits(loaded, batch)
    else:
        reference, effect = adapter_reference(loaded, batch)
        loaded = merge_and_restore(loaded)
        loaded.eval()
        check_merged_logits(lora_path, reference, effect, probe_logits(loaded, batch), batch[1],
                            default_tolerance(dtype) if merge_tolerance is None else merge_tolerance,
                            "nothing was exported")
    state = {name: tensor.astype("float32").numpy() for name, tensor in loaded.state_dict().items()}
    del loaded
    gc.collect()
    return state, reference


# ---------------------------------------------------------------- the export


def check_request(model: str, lora_path: Optional[str], output: str | os.PathLike, fmt: str,
                  quantize: Optional[str], force: bool, flag: str = "--output") -> tuple[Path, str | None]:
    """Validate the options and the output path before any work; returns (output path, quantization)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if fmt == "hf" and quantize is not None:
        raise ConfigError("--quantize applies to --format gguf only (a Hugging Face export keeps float32 weights)")
    dataio.check_apart({flag: output}, {"--model": model, "--lora_path": lora_path})
    if fmt == "hf":
        if Path(output).suffix.lower() == ".gguf":
            raise ConfigError(f"{flag} {output}: --format hf writes a folder, not a .gguf file; use --format gguf "
                              "for one GGUF file, or name the folder without .gguf")
        return dataio.check_model_folder(output, force, flag=flag), None
    path = Path(output)
    if not (path.name.lower().endswith(".gguf") and len(path.name) > len(".gguf")):
        example = "model.gguf" if path.name.strip(".").lower() in ("", "gguf") else f"{path.name}.gguf"
        raise ConfigError(f"{flag} {output}: a GGUF export is one file; name it *.gguf (e.g. {example})")
    return dataio.check_output_file(path, force, flag=flag, example="model.gguf"), quantize or "f16"


def export_model(model: str, output: str | os.PathLike, fmt: str, *, lora_path: Optional[str] = None,
                 quantize: Optional[str] = None, tolerance: Optional[float] = None, force: bool = False,
                 dtype: str = "float32", merge_tolerance: Optional[float] = None,
                 flag: str = "--output") -> ExportResult:
    """Export ``model`` (+ ``lora_path`` merged) to ``output`` in ``fmt`` ("hf" folder or "gguf" file), verified.

    ``tolerance`` bounds the largest |logit difference| relative to the largest |logit| (default
    :data:`DEFAULT_TOLERANCE`); ``merge_tolerance`` bounds the absolute logit difference between the merged weights
    and base + adapter (default: merge's). Raises ConfigError for bad options or an unusable output path (checked before
    any work), OutputExistsError without ``force``, ExportVerificationError / MergeVerificationError when the
    export does not reproduce the model (nothing is written then).
    """
    with dataio.output_lock(output, flag):  # one run per output, for the whole run
        return _export_model(model, output, fmt, lora_path=lora_path, quantize=quantize, tolerance=tolerance,
                             force=force, dtype=dtype, merge_tolerance=merge_tolerance, flag=flag)


def _export_model(model: str, output: str | os.PathLike, fmt: str, *, lora_path: Optional[str],
                  quantize: Optional[str], tolerance: Optional[float], force: bool, dtype: str,
                  merge_tolerance: Optional[float], flag: str) -> ExportResult:
    output, quantize = check_request(model, lora_path, output, fmt, quantize, force, flag)
    from ..training.merge import check_tolerance

    tolerance = check_tolerance(DEFAULT_TOLERANCE[quantize or "hf"] if tolerance is None else tolerance)
    if lora_path:
        from ..training.merge import read_lora_config

        read_lora_config(lora_path)
    require_export_packages()
    from ..training.merge import probe_batch
    from .modeling import load_tokenizer, resolve_model_dir

    source_dir = resolve_model_dir(model, flag="--model")
    config = dataio.read_json_file(source_dir / "config.json", "model config")
    if not isinstance(config, dict):
        raise DataError("expected a JSON object (the model config)", source_dir / "config.json")
    architecture(config, source_dir)
    tokenizer = load_tokenizer(model, flag="--model")
    batch = probe_batch(tokenizer)
    prompts = probe_prompts(tokenizer)
    state, reference = paddle_reference(model, lora_path, batch, dtype, merge_tolerance)
    if fmt == "hf":
        with dataio.atomic_folder(output, overwrite=force) as staging:
            write_hf_folder(staging, state, config, source_dir, tokenizer)
            [(max_diff, relative)] = verify_export(staging, [(reference, tolerance, "the Paddle model")], batch,
                                                   prompts, tokenizer)
            result = ExportResult(output, fmt, None, max_diff, relative, tolerance)
            dataio.write_json(staging / RECORD_FILE, export_record(result, model, lora_path))
        return result
    tied = bool(config.get("tie_word_embeddings"))
    references = [(rounded_reference(model, state, quantize, tied, batch, dtype), FAITHFUL_TOLERANCE,
                   f"the Paddle model with the file's {quantize} weights"), (reference, tolerance, "the Paddle model")]
    return _export_gguf(output, state, config, source_dir, tokenizer, references, batch, prompts, quantize, model,
                        lora_path, force=force)


def _export_gguf(output: Path, state: dict, config: dict, source_dir: Path, tokenizer: Any,
                 references: list[tuple[Any, float, str]], batch: Any, prompts: list[str], quantize: str, model: str,
                 lora_path: Optional[str], *, force: bool = True) -> ExportResult:
    """Write the GGUF file in a staging folder next to ``output`` (via a Hugging Face folder), verify, then move it
    into place in one rename."""
    with dataio.staged_file(output, overwrite=force) as staged:
        hf_dir = staged.parent / "hf"
        hf_dir.mkdir()
        write_hf_folder(hf_dir, state, config, source_dir, tokenizer)
        write_gguf(staged, hf_dir, config, source_dir, quantize)
        faithful, (max_diff, relative) = verify_export(staged.parent, references, batch, prompts, tokenizer,
                                                       gguf_file=staged.name)
        ours = verify_with_importer(staged, references, batch, prompts, tokenizer)
        result = ExportResult(output, "gguf", quantize, max_diff, relative, references[1][1], {
            "faithful": {"relative_logit_diff": faithful[1], "tolerance": FAITHFUL_TOLERANCE},
            "our_importer": {"max_abs_logit_diff": ours[1][0], "relative_logit_diff": ours[1][1],
                             "faithful_relative_logit_diff": ours[0][1]},
            "bytes": staged.stat().st_size})
    logger.info("export record: %s", json.dumps(export_record(result, model, lora_path), ensure_ascii=False))
    return result


def probe_prompts(tokenizer: Any) -> list[str]:
    """The probe batch's prompts as text, plus a ChatML conversation written out (tokenizer round trip)."""
    from ..training.merge import PROBE_ADDRESSES
    from ..data.prompt import render_prompt

    return [render_prompt(tokenizer, address) for address in PROBE_ADDRESSES] + [
        "<|im_start|>system\n地址补全<|im_end|>\n<|im_start|>user\n碑林区扬子江南路467-6号<|im_end|>\n"
        "<|im_start|>assistant\n陕西省西安市碑林区扬子江南路467-6号<|im_end|>\n"]


def export_record(result: ExportResult, model: str, lora_path: Optional[str]) -> dict:
    """What was exported from what, and how it was verified."""
    import time

    from ..training.merge import PROBE_ADDRESSES

    return {
        "kind": "export",
        "format": result.format,
        "quantize": result.quantize,
        "model": str(model),
        "lora_path": str(Path(lora_path).resolve()) if lora_path else None,
        "verification": {"reloaded_with": "transformers", "probe_addresses": list(PROBE_ADDRESSES),
                         "max_abs_logit_diff": result.max_abs_diff, "relative_logit_diff": result.relative_diff,
                         "tolerance": result.tolerance, **result.checks},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "address_completion_version": __version__,
    }


# ---------------------------------------------------------------- CLI


def add_format_arguments(parser: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS,
                         default: Optional[str] = None) -> None:
    """--format and --quantize (shared with ``merge``, whose default format is its own Paddle folder)."""
    parser.add_argument("--format", choices=formats, default=default, required=default is None,
                        help=("paddle: PaddleNLP model folder; " if "paddle" in formats else "")
                        + "hf: Hugging Face transformers folder; gguf: one .gguf file for llama.cpp / Ollama")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                        help="GGUF weight type (default f16); q8_0 is about half the size of f16, with a looser check")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (Paddle or Hugging Face), .gguf file or hub name")
    parser.add_argument("--lora_path", default=None, help="LoRA adapter folder to merge into --model first")
    add_format_arguments(parser)
    parser.add_argument("--output", required=True, help="folder (hf) or .gguf file (gguf) to write")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest accepted logit difference from the Paddle model, relative to the largest "
                             "|logit|; default " + ", ".join(f"{key} {value:g}" for key, value in
                                                             DEFAULT_TOLERANCE.items())
                             + f" (GGUF files must also match the Paddle model with the file's own rounded weights "
                               f"within {FAITHFUL_TOLERANCE:g})")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")


def run(args: argparse.Namespace) -> int:
    from ..runtime import setup_runtime

    check_request(args.model, args.lora_path, args.output, args.format, args.quantize, args.force)
    setup_runtime(device="cpu", dtype="float32", model=args.model)
    result = export_model(args.model, args.output, args.format, lora_path=args.lora_path, quantize=args.quantize,
                          tolerance=args.tolerance, force=args.force)
    what = args.format + (f" {result.quantize}" if result.quantize else "")
    print(f"exported {args.model}{' + ' + args.lora_path if args.lora_path else ''} as {what} -> "
          f"{result.output_path} (reloaded in transformers: max |logit diff| {result.max_abs_diff:.3g}, "
          f"{result.relative_diff:.3g} relative <= {result.tolerance:g})")
    return 0
