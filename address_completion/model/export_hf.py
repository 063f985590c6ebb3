"""Paddle -> Hugging Face folder: parameter names, config.json, tokenizer files and generation config that
transformers and vLLM load as they are (``export --format hf``; GGUF files are written from this folder).
transformers and safetensors are imported inside the functions (the ``export`` extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..data.prompt import eos_token_id
from .. import files
from ..data import dataio
from ..errors import ConfigError, DataError
from .gguf_import import ARCHITECTURES, PRETOKENIZER_KEY, PRETOKENIZER_REGEX
from .modeling import TOKENIZER_FILES

HF_WEIGHTS = "model.safetensors"


def architecture(config: dict, path: Path) -> tuple[str, str, str]:
    """(HF class, Paddle prefix, GGUF arch) for a model config, from gguf_import's ARCHITECTURES (GGUF arch ->
    HF class, PaddleNLP model_type); ConfigError for architectures we cannot export."""
    model_type = config.get("model_type")
    for gguf_arch, (hf_class, paddle_type) in ARCHITECTURES.items():
        if paddle_type == model_type:
            return hf_class, f"{paddle_type}.", gguf_arch
    raise ConfigError(f"{path}: model_type {model_type!r} cannot be exported; supported: "
                      f"{', '.join(sorted(paddle_type for _, paddle_type in ARCHITECTURES.values()))}")


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
        files.atomic_write_text(vocab_file, json.dumps(dict(sorted(vocab.items(), key=lambda item: item[1])),
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
    for name in TOKENIZER_FILES:
        if (source_dir / name).is_file():
            shutil.copy2(source_dir / name, folder / name)
    fill_vocabulary_holes(folder)
    # transformers' own (fast, Rust `tokenizers`) tokenizer built from vocab.json + merges.txt writes tokenizer.json,
    # which vLLM and llama.cpp's converter prefer; its special_tokens_map.json replaces PaddleNLP's.
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
    set_pretokenizer(folder, source_dir)
    GenerationConfig(**generation_settings(source_dir, tokenizer)).save_pretrained(str(folder))


def set_pretokenizer(folder: Path, source_dir: Path) -> None:
    """Give tokenizer.json the GGUF pre-tokenizer an imported model was trained with (no-op for Qwen2's own).

    transformers builds tokenizer.json from tokenizer_class (Qwen2's regex and NFC normalisation); a model imported
    from a GGUF file with a GPT-2 family pre-tokenizer (SmolLM2: "smollm") splits text with that regex instead,
    as llama.cpp and the project's own tokenizer do (:data:`gguf_import.PRETOKENIZER_REGEX`).
    """
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
