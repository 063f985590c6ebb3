"""The merged model as a Paddle folder (`merge`'s default format): the adapter merged, verified and written.

The merge runs through the adapter model's own merge() + restore_original_model() (verify.merge_and_restore;
paddlenlp.mergekit writes wrong weights for bases in Hugging Face layout). The folder is saved in a staging
folder, reloaded, and its logits on a probe batch of real address prompts are compared with base + adapter
(verify.check_merged_logits); above the tolerance the merge fails and nothing is written. The folder also gets
the tokenizer files, chat template, generation config (EOS ids) and a merge record (RECORD_FILE). export.py
writes the other formats (Hugging Face folder, GGUF file); `merge` is the command-line front of both.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from .. import files
from ..data import dataio
from ..data.prompt import eos_token_id
from ..errors import ConfigError, DataError
from .modeling import GENERATION_CONFIG_FILE, TOKENIZER_FILES, load_model, load_tokenizer, resolve_model_dir
from .verify import (PROBE_ADDRESSES, adapter_reference, check_merged_logits, check_tolerance, default_tolerance,
                     merge_and_restore, probe_batch, probe_logits, read_lora_config)

RECORD_FILE = "address_completion.json"  # the merge record next to the weights


@dataclass(frozen=True)
class MergeResult:
    """What merge_adapter wrote and how closely the written model reproduced base + adapter."""

    output_path: Path
    max_abs_diff: float
    tolerance: float
    adapter_effect: float  # how far the adapter moves the base logits (0 would mean an empty merge)
    record: dict
    allowed: float = 0.0  # the tolerance scaled by the probe's largest |logit| (see allowed_difference)


# ---------------------------------------------------------------- adapter checks


def check_not_merged_already(base: str, base_dir: Path, lora_path: str | os.PathLike, force: bool) -> None:
    """ConfigError when the base model is itself a merge of this adapter (its address_completion.json says so):
    merging again would add the adapter twice. ``force`` merges anyway."""
    record_path = base_dir / RECORD_FILE
    if force or not record_path.is_file():
        return
    try:
        record = dataio.read_json_file(record_path, "merge record")
    except DataError:
        return  # not ours to judge: the weights decide
    merged = record.get("lora_path") if isinstance(record, dict) else None
    if isinstance(merged, str) and Path(merged).resolve() == Path(lora_path).resolve():
        raise ConfigError(f"--model-name-or-path {base} already has the adapter {lora_path} merged into it (its "
                          f"{RECORD_FILE} says so): merging it again would apply the adapter twice. Pass its base "
                          f"model {record.get('base_model', '')} instead, or --force to merge anyway".replace(
                              " model  instead", " model instead"))


def lora_settings(config: dict) -> dict:
    """The adapter settings worth recording next to the merged weights."""
    keys = ("r", "lora_alpha", "lora_dropout", "target_modules", "trainable_modules", "rslora", "lora_plus_scale",
            "use_mora", "loraga", "dtype", "base_model_name_or_path")
    return {key: config[key] for key in keys if key in config}


# ---------------------------------------------------------------- files around the weights


def copy_tokenizer_files(source_dir: Path, target_dir: Path, tokenizer: Any) -> list[str]:
    """Copy the base folder's tokenizer files; without any, let the tokenizer write its own."""
    copied = []
    for name in TOKENIZER_FILES:
        if (source_dir / name).is_file():
            shutil.copy2(source_dir / name, target_dir / name)
            copied.append(name)
    if "tokenizer_config.json" not in copied:
        tokenizer.save_pretrained(str(target_dir))
        copied = sorted(name for name in TOKENIZER_FILES if (target_dir / name).is_file())
    return copied


def write_generation_config(source_dir: Path, target_dir: Path, tokenizer: Any) -> dict:
    """The base's generation config, making sure it names the chat EOS (<|im_end|>) as a stop id."""
    source = source_dir / GENERATION_CONFIG_FILE
    if not source.is_file():
        source = target_dir / GENERATION_CONFIG_FILE  # the one save_pretrained derived from config.json
    config = dataio.read_json_file(source, "generation config") if source.is_file() else {}
    if not isinstance(config, dict):
        raise DataError("expected a JSON object (the generation config)", source)
    declared = config.get("eos_token_id")
    stop_ids = declared if isinstance(declared, list) else ([] if declared is None else [declared])
    eos = eos_token_id(tokenizer)
    if eos not in stop_ids:
        stop_ids = [eos, *stop_ids]
    config["eos_token_id"] = stop_ids[0] if len(stop_ids) == 1 else stop_ids
    if config.get("pad_token_id") is None and tokenizer.pad_token_id is not None:
        config["pad_token_id"] = int(tokenizer.pad_token_id)
    dataio.write_json(target_dir / GENERATION_CONFIG_FILE, config)
    return config


# ---------------------------------------------------------------- the merge


def merge_adapter(base: str, lora_path: str, output_path: str | os.PathLike, *, safe_serialization: bool = True,
                  dtype: str = "float32", tolerance: float | None = None, force: bool = False) -> MergeResult:
    """Merge ``lora_path`` into ``base``, verify, and write ``output_path`` atomically (see module docstring)."""
    with files.output_lock(output_path, "--output-path"):  # one run per output, for the whole run
        return _merge_adapter(base, lora_path, output_path, safe_serialization=safe_serialization, dtype=dtype,
                              tolerance=tolerance, force=force)


def _merge_adapter(base: str, lora_path: str, output_path: str | os.PathLike, *, safe_serialization: bool,
                   dtype: str, tolerance: float | None, force: bool) -> MergeResult:
    files.check_apart({"--output-path": output_path}, {"--model-name-or-path": base, "--lora-path": lora_path})
    output = files.check_model_folder(output_path, force, flag="--output-path")
    tolerance = check_tolerance(default_tolerance(dtype) if tolerance is None else tolerance)
    adapter_config = read_lora_config(lora_path)
    base_dir = resolve_model_dir(base)
    check_not_merged_already(base, base_dir, lora_path, force)
    with files.atomic_folder(output, overwrite=force) as staging:
        tokenizer = load_tokenizer(base)
        batch = probe_batch(tokenizer)
        reference, adapter_effect, merged_logits = _merge_into(staging, base, lora_path, batch, dtype,
                                                               safe_serialization)
        check = check_merged_logits(lora_path, reference, adapter_effect, merged_logits, batch[1], tolerance,
                                    f"{output} was not written")
        max_diff, scale, allowed = check.max_abs_diff, check.max_abs_logit, check.allowed
        copied = copy_tokenizer_files(base_dir, staging, tokenizer)
        generation_config = write_generation_config(base_dir, staging, tokenizer)
        record = {
            "kind": "merged_lora",
            "base_model": str(base),
            "base_model_dir": str(base_dir.resolve()),
            "lora_path": str(Path(lora_path).resolve()),
            "lora": lora_settings(adapter_config),
            "dtype": dtype,
            "safe_serialization": safe_serialization,
            "weights_format": "safetensors" if safe_serialization else "pickle",
            "verification": {"probe_addresses": list(PROBE_ADDRESSES), "max_abs_logit_diff": max_diff,
                             "tolerance": tolerance, "max_abs_logit": scale, "allowed_diff": allowed,
                             "adapter_max_abs_logit_effect": adapter_effect},
            "tokenizer_files": copied,
            "eos_token_id": generation_config.get("eos_token_id"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "address_completion_version": __version__,
        }
        dataio.write_json(staging / RECORD_FILE, record)
    return MergeResult(output_path=output, max_abs_diff=max_diff, tolerance=tolerance, adapter_effect=adapter_effect,
                       allowed=allowed, record=record)


def _merge_into(staging: Path, base: str, lora_path: str, batch: Any, dtype: str,
                safe_serialization: bool) -> tuple[Any, float, Any]:
    """Merge and save into ``staging``; returns (base + adapter logits, the adapter's effect, the reloaded merged
    model's logits) on the probe batch."""
    lora_model = load_model(base, dtype=dtype, lora_path=lora_path)
    lora_model.eval()
    reference, adapter_effect = adapter_reference(lora_model, batch)
    merged = merge_and_restore(lora_model)
    merged.save_pretrained(str(staging), safe_serialization=safe_serialization)
    del merged, lora_model
    gc.collect()
    reloaded = load_model(str(staging), dtype=dtype, written_here=True)  # no pickle warning for our own file
    reloaded.eval()
    merged_logits = probe_logits(reloaded, batch)
    del reloaded
    gc.collect()
    return reference, adapter_effect, merged_logits
