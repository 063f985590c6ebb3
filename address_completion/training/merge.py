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

This module is the command-line front only: the export side merges and writes every format (the Paddle folder
in model/export_paddle.py, Hugging Face and GGUF in model/export.py), with the checks of model/verify.py.
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..flags import user_path
from ..flags import parse_bool
from ..model.export import add_format_arguments, check_request, export_model
from ..model.export_paddle import merge_adapter
from ..model.verify import read_lora_config
from ..runtime import setup_runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """merge_lora_params.py's flags (--kebab-case first, its underscore spellings accepted), --format, --quantize."""
    parser.add_argument("--model-name-or-path", "--model_name_or_path", required=True, type=user_path, help="base model: a local folder, a .gguf file or a hub name")
    parser.add_argument("--lora-path", "--lora_path", required=True, type=user_path, help="LoRA adapter folder (lora_config.json + weights)")
    parser.add_argument("--output-path", "--output_path", required=True, type=user_path, help="folder for the merged model (must be new or empty)")
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
    parser.add_argument("--force", action="store_true", help="replace a non-empty --output-path")
    add_format_arguments(parser, formats=("paddle", "hf", "gguf"), default="paddle")


def run(args: argparse.Namespace) -> int:
    """Merge and write in the chosen --format (the export side's functions), then print one summary line."""
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
        raise ConfigError(f"--safe-serialization false applies to --format paddle only; --format {args.format} "
                          "always writes " + ("safetensors" if args.format == "hf" else "a .gguf file"))
    if str(args.dtype).lower() not in ("float32", "fp32"):
        raise ConfigError(f"--dtype {args.dtype} applies to --format paddle only; --format {args.format} merges in "
                          "float32" + (" (choose the GGUF weight type with --quantize)" if args.format == "gguf" else ""))


def run_export(args: argparse.Namespace) -> int:
    """merge --format hf|gguf: the merged model written by export (merge check, then the export's reload check)."""
    check_request(args.model_name_or_path, args.lora_path, args.output_path, args.format, args.quantize, args.force,
                  flag="--output-path", model_flag="--model-name-or-path")
    read_lora_config(args.lora_path)
    setup_runtime(device="cpu", dtype="float32", model=args.model_name_or_path)
    result = export_model(args.model_name_or_path, args.output_path, args.format, lora_path=args.lora_path,
                          quantize=args.quantize, force=args.force, merge_tolerance=args.tolerance,
                          flag="--output-path", model_flag="--model-name-or-path")
    print(f"merged {args.lora_path} into {args.model_name_or_path} -> {result.output_path} ({args.format}"
          f"{' ' + result.quantize if result.quantize else ''}; reloaded in transformers: max |logit diff| "
          f"{result.max_abs_diff:.3g}, {result.relative_diff:.3g} relative <= {result.tolerance:g})")
    return 0
