"""Merge a LoRA adapter into its base model, verify the merged model's logits, and write a model folder.

Takes the flags of PaddleNLP's llm/tools/merge_lora_params.py. The merge runs through the adapter
model's own merge() + restore_original_model() (paddlenlp.mergekit writes wrong weights for bases in
Hugging Face layout). OUT is reloaded and its logits on a probe batch of real address prompts are
compared with base + adapter; above the tolerance (scaled by the largest |logit| when that exceeds 1: float32
rounding grows with the logits, about 1e-4 relative on SmolLM2-135M's real weights) the merge fails and OUT is
not written. OUT also
gets the tokenizer files, chat template, generation config (EOS ids) and a merge record
(address_completion.json). --format hf or gguf writes the merged model as `export` does instead (a Hugging Face
folder, or a .gguf file), after the same merge check and the export's own reload check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from .. import files
from ..data import dataio
from ..errors import ConfigError, DataError
from ..runtime import setup_runtime
from ..data.prompt import eos_token_id
from ..flags import parse_bool
from ..model.export import add_format_arguments, check_request, export_model
from ..model.modeling import GENERATION_CONFIG_FILE, TOKENIZER_FILES, load_model, load_tokenizer, resolve_model_dir
from ..model.verify import (PROBE_ADDRESSES, adapter_reference, check_merged_logits, check_tolerance, default_tolerance,
                            merge_and_restore, probe_batch, probe_logits, read_lora_config)

RECORD_FILE = "address_completion.json"
LORA_CONFIG_FILE = "lora_config.json"


@dataclass(frozen=True)
class MergeResult:
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
        raise ConfigError(f"--model_name_or_path {base} already has the adapter {lora_path} merged into it (its "
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
    with files.output_lock(output_path, "--output_path"):  # one run per output, for the whole run
        return _merge_adapter(base, lora_path, output_path, safe_serialization=safe_serialization, dtype=dtype,
                              tolerance=tolerance, force=force)


def _merge_adapter(base: str, lora_path: str, output_path: str | os.PathLike, *, safe_serialization: bool,
                   dtype: str, tolerance: float | None, force: bool) -> MergeResult:
    files.check_apart({"--output_path": output_path}, {"--model_name_or_path": base, "--lora_path": lora_path})
    output = files.check_model_folder(output_path, force, flag="--output_path")
    tolerance = check_tolerance(default_tolerance(dtype) if tolerance is None else tolerance)
    adapter_config = read_lora_config(lora_path)
    base_dir = resolve_model_dir(base)
    check_not_merged_already(base, base_dir, lora_path, force)
    with files.atomic_folder(output, overwrite=force) as staging:
        tokenizer = load_tokenizer(base)
        batch = probe_batch(tokenizer)
        reference, adapter_effect, merged_logits = _merge_into(staging, base, lora_path, batch, dtype,
                                                               safe_serialization, load_model)
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


def _merge_into(staging: Path, base: str, lora_path: str, batch, dtype: str, safe_serialization: bool,
                load_model) -> tuple[Any, float, Any]:
    """Merge and save into ``staging``; returns (base + adapter logits, the adapter's effect, the reloaded merged
    model's logits) on the probe batch."""
    import gc

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


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-name-or-path", "--model_name_or_path", required=True, help="base model: a local folder, a .gguf file or a hub name")
    parser.add_argument("--lora-path", "--lora_path", required=True, help="LoRA adapter folder (lora_config.json + weights)")
    parser.add_argument("--output-path", "--output_path", required=True, help="folder for the merged model (must be new or empty)")
    parser.add_argument("--safe-serialization", "--safe_serialization", type=parse_bool, default=True,
                        help="save the weights as safetensors (true) or model_state.pdparams (false)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="where to run the merge")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (half falls back to "
                                                           "float32 on CPU)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest accepted logit difference, times the largest |logit| when that exceeds 1; default 1e-4 for "
                             "float32, 5e-2 for half precision")
    parser.add_argument("--low-gpu-mem", "--low_gpu_mem", type=parse_bool, default=False,
                        help="accepted for merge_lora_params.py compatibility; has no effect")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --output_path")
    add_format_arguments(parser, formats=("paddle", "hf", "gguf"), default="paddle")


def run(args: argparse.Namespace) -> int:
    check_format_options(args)
    if args.format != "paddle":
        return run_export(args)
    runtime = setup_runtime(device=args.device, dtype=args.dtype, model=args.model_name_or_path)
    result = merge_adapter(args.model_name_or_path, args.lora_path, args.output_path,
                           safe_serialization=args.safe_serialization, dtype=runtime.dtype,
                           tolerance=args.tolerance, force=args.force)
    print(f"merged {args.lora_path} into {args.model_name_or_path} -> {result.output_path} "
          f"(max |logit diff| {result.max_abs_diff:.3g} <= {result.allowed:.3g})")
    return 0


def check_format_options(args: argparse.Namespace) -> None:
    """ConfigError for an option the chosen --format would silently ignore (the user would get something else
    than asked for)."""
    if args.quantize is not None and args.format != "gguf":
        raise ConfigError(f"--quantize applies to --format gguf only; --format {args.format} writes "
                          + ("float32 safetensors" if args.format == "hf" else "the merged model in --dtype"))
    if args.format == "paddle":
        return
    if not args.safe_serialization:
        raise ConfigError(f"--safe_serialization false applies to --format paddle only; --format {args.format} "
                          "always writes " + ("safetensors" if args.format == "hf" else "a .gguf file"))
    if str(args.dtype).lower() not in ("float32", "fp32"):
        raise ConfigError(f"--dtype {args.dtype} applies to --format paddle only; --format {args.format} merges in "
                          "float32" + (" (choose the GGUF weight type with --quantize)" if args.format == "gguf" else ""))


def run_export(args: argparse.Namespace) -> int:
    """merge --format hf|gguf: the merged model written by export (merge check, then the export's reload check)."""
    check_request(args.model_name_or_path, args.lora_path, args.output_path, args.format, args.quantize, args.force,
                  flag="--output_path")
    read_lora_config(args.lora_path)
    setup_runtime(device="cpu", dtype="float32", model=args.model_name_or_path)
    result = export_model(args.model_name_or_path, args.output_path, args.format, lora_path=args.lora_path,
                          quantize=args.quantize, force=args.force, merge_tolerance=args.tolerance,
                          flag="--output_path")
    print(f"merged {args.lora_path} into {args.model_name_or_path} -> {result.output_path} ({args.format}"
          f"{' ' + result.quantize if result.quantize else ''}; reloaded in transformers: max |logit diff| "
          f"{result.max_abs_diff:.3g}, {result.relative_diff:.3g} relative <= {result.tolerance:g})")
    return 0
