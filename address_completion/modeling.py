"""Finding and loading a model: a Paddle folder, a Hugging Face folder, or a hub name.

- A local **Paddle-format** folder (``model_state.pdparams`` or safetensors saved by Paddle) is used as is.
- A local **Hugging Face-format** folder (``config.json`` + ``model.safetensors``, as downloaded from
  Hugging Face or ModelScope) is converted once into a cache folder keyed by the source path and the
  files' sizes and modification times. The user's folder is never written to: PaddleNLP's own
  ``convert_from_torch=True`` would drop a ``model_state.pdparams`` next to the user's files.
- A **hub name** (``Qwen/Qwen2.5-0.5B-Instruct``) is downloaded through PaddleNLP when online; offline, or
  when the hub cannot be reached within a few seconds, the error says how to pass a local folder.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import socket
import struct
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, DataError
from .runtime import OFFLINE_VARIABLES, cache_root, looks_like_local_path, logger, quiet_paddlenlp_logs

CONVERTED_CACHE_VERSION = 1
PADDLE_WEIGHT_FORMATS = ("np", "paddle")
HUB_HOST = ("bj.bcebos.com", 443)  # PaddleNLP's default download endpoint
HUB_PROBE_SECONDS = 3.0
# Files copied next to converted weights; weights themselves are re-saved by Paddle.
COPIED_FILES = ("config.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.json")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "tokenizer.json", "chat_template.json", "generation_config.json")


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
    from . import dataio

    with dataio.atomic_folder(target) as staging:  # also removes what a killed conversion left behind
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
    from . import dataio

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
    model.save_pretrained(str(folder))
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


def offline_error(name: str, flag: str = "--model_name_or_path") -> ConfigError:
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
    for extra in TOKENIZER_FILES:
        try:
            resolve_file_path(name, [extra])
        except Exception:  # optional files: a repo without one simply lacks it
            logger.debug("hub model %s has no %s", name, extra)
    return Path(config_file).parent


# ---------------------------------------------------------------- public API


def missing_folder_message(text: str) -> str:
    hint = ""
    if Path(text).name == "default-model":
        hint = " (build the embedded default model first: bash scripts/build_model.sh)"
    return f"model folder {text!r} does not exist{hint}"


def resolve_model_dir(name_or_path: str, *, cache_dir: str | None = None, flag: str = "--model_name_or_path") -> Path:
    """A local folder PaddleNLP can load without writing anywhere (see module docstring). ``flag`` is the option
    that named the model, for the hint of an error."""
    text = str(name_or_path)
    folder = Path(text).expanduser()
    if folder.exists() or looks_like_local_path(text):
        if not folder.is_dir():
            raise ConfigError(missing_folder_message(text) if not folder.exists()
                              else f"model path {text!r} is a file; pass the folder that holds config.json")
        if is_paddle_model_dir(folder):
            return folder
        if is_hf_model_dir(folder):
            return convert_hf_folder(folder, cache_dir)
        found = ", ".join(sorted(path.name for path in folder.iterdir())[:8]) or "nothing"
        raise ConfigError(f"{text!r} is not a model folder: expected config.json with model_state.pdparams or "
                          f"*.safetensors (Paddle or Hugging Face format); found {found}")
    cached = hub_cache_dir(text)
    if is_paddle_model_dir(cached):
        return cached
    if is_hf_model_dir(cached):
        return convert_hf_folder(cached, cache_dir)
    if offline_requested() or not hub_reachable():
        raise offline_error(text, flag)
    return download_hub_model(text)


def check_model_source(name_or_path: str, flag: str = "--model_name_or_path") -> None:
    """Fail fast (before data or model loading) when the model cannot be found; nothing is downloaded."""
    text = str(name_or_path)
    folder = Path(text).expanduser()
    if folder.exists() or looks_like_local_path(text):
        if not folder.is_dir():
            raise ConfigError(missing_folder_message(text))
        if not (is_paddle_model_dir(folder) or is_hf_model_dir(folder)):
            resolve_model_dir(text, flag=flag)  # raises the descriptive error
        return
    if is_paddle_model_dir(hub_cache_dir(text)) or is_hf_model_dir(hub_cache_dir(text)):
        return
    if offline_requested() or not hub_reachable():
        raise offline_error(text, flag)


def load_tokenizer(name_or_path: str, flag: str = "--model_name_or_path") -> Any:
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
    return tokenizer


def load_model(name_or_path: str, *, dtype: str = "float32", lora_path: str | None = None,
               config_overrides: Mapping[str, Any] | None = None, flag: str = "--model_name_or_path") -> Any:
    """A causal LM in ``dtype``; wrapped in PaddleNLP's LoRAModel when ``lora_path`` is given."""
    from paddlenlp.transformers import AutoConfig, AutoModelForCausalLM

    quiet_paddlenlp_logs()
    folder = str(resolve_model_dir(name_or_path, flag=flag))
    try:
        config = AutoConfig.from_pretrained(folder, dtype=dtype)
    except Exception as error:  # broken JSON, wrong types: PaddleNLP raises whatever its parser raised
        raise DataError(f"unreadable model config ({type(error).__name__}: {first_line(error)})",
                        Path(folder) / "config.json") from error
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=dtype)
    except Exception as error:  # a truncated or damaged weight file fails deep in Paddle's deserializer
        raise unreadable_weights(Path(folder), error) from error
    if lora_path:
        model = load_lora_adapter(model, lora_path, base=str(name_or_path))
    return model


ADAPTER_WEIGHT_FILES = ("lora_model_state.pdparams", "peft_model.safetensors")  # PaddleNLP's two adapter files


def read_adapter_tensors(lora_path: str | os.PathLike, flag: str = "--lora_path") -> tuple[Path, dict[str, Any]]:
    """The adapter's weight file and its tensors as numpy arrays (name -> array); ConfigError when the folder is
    not an adapter, DataError naming the file when it cannot be read."""
    folder = Path(lora_path)
    if not (folder / "lora_config.json").is_file():
        raise ConfigError(f"{flag} {str(lora_path)!r} holds no lora_config.json; pass a LoRA adapter folder "
                          "(the output_dir of `address-completion train`)")
    found = [folder / name for name in ADAPTER_WEIGHT_FILES if (folder / name).is_file()]
    if not found:
        raise ConfigError(f"{flag} {str(lora_path)!r} holds lora_config.json but no adapter weights (expected one "
                          f"of {', '.join(ADAPTER_WEIGHT_FILES)})")
    path = found[0]
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
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


def unreadable_weights(folder: Path, error: BaseException) -> DataError:
    """The DataError for weights PaddleNLP could not load: names the empty file, or the file(s) and the cause."""
    files = weight_files(folder)
    for path in files:
        if path.stat().st_size == 0:
            return DataError("empty file (0 bytes): copy the model folder again or rebuild it", path)
    where = files[0] if len(files) == 1 else folder
    return DataError(f"cannot load the model weights ({type(error).__name__}: {first_line(error)}); the file is "
                     "probably truncated or damaged: copy the model folder again or rebuild it", where)


def broken_json_file(folder: Path) -> Path | None:
    """The first tokenizer or config JSON file in ``folder`` that does not parse, if any."""
    for name in ("config.json", *TOKENIZER_FILES):
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


def load_lora_adapter(model: Any, lora_path: str | os.PathLike, *, base: str, flag: str = "--lora_path") -> Any:
    """``model`` wrapped in PaddleNLP's LoRAModel with the adapter at ``lora_path``, then checked: every adapter
    tensor found its layer with the same shape and was loaded (PaddleNLP skips a tensor that does not fit and
    goes on, which would leave the base model unchanged). ConfigError names the first mismatch."""
    import numpy as np
    from paddlenlp.peft import LoRAModel

    path, tensors = read_adapter_tensors(lora_path, flag)
    lora_model = LoRAModel.from_pretrained(model=model, lora_path=str(lora_path))
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
