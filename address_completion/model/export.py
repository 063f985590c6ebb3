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

The export side writes every format of a merged model: this module Hugging Face and GGUF, export_paddle.py
the Paddle folder (`merge`'s default format); `merge` (training/merge.py) is only their front for PaddleNLP's
merge_lora_params flags. Both merge through model/verify.py's checks.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from .. import files, flags
from ..data import dataio
from ..errors import ConfigError, DataError
from ..data.prompt import render_prompt
from ..runtime import logger, setup_runtime
from .export_check import rounded_reference, verify_export, verify_with_importer
from .export_hf import architecture, write_hf_folder
from .gguf_export import QUANTIZATIONS, write_gguf
from .modeling import load_model, load_tokenizer, resolve_model_dir
from .verify import (PROBE_ADDRESSES, adapter_reference, check_merged_logits, check_tolerance, default_tolerance,
                     merge_and_restore, probe_batch, probe_logits, read_lora_config)

FORMATS = ("hf", "gguf")
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
RECORD_FILE = "address_completion_export.json"


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


# ---------------------------------------------------------------- the Paddle side


def paddle_reference(model: str, lora_path: Optional[str], batch: Any, dtype: str,
                     merge_tolerance: Optional[float] = None, model_flag: str = "--model") -> tuple[dict[str, Any], Any]:
    """(float32 numpy state dict of the model to export, its reference logits on the probe batch).

    With an adapter, the reference is base + adapter; the adapter is merged (merge.merge_and_restore) and the
    merged weights must reproduce the reference within ``merge_tolerance`` (default: merge's), as ``merge`` checks.
    """
    import gc

    loaded = load_model(model, dtype=dtype, lora_path=lora_path, flag=model_flag)
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
                  quantize: Optional[str], force: bool, flag: str = "--output",
                  model_flag: str = "--model") -> tuple[Path, str | None]:
    """Validate the options and the output path before any work; returns (output path, quantization). ``flag`` and
    ``model_flag`` are the options that named the output and the model (merge's differ from export's)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if fmt == "hf" and quantize is not None:
        raise ConfigError("--quantize applies to --format gguf only (a Hugging Face export keeps float32 weights)")
    files.check_apart({flag: output}, {model_flag: model, "--lora-path": lora_path})
    if fmt == "hf":
        if Path(output).suffix.lower() == ".gguf":
            raise ConfigError(f"{flag} {output}: --format hf writes a folder, not a .gguf file; use --format gguf "
                              "for one GGUF file, or name the folder without .gguf")
        return files.check_model_folder(output, force, flag=flag), None
    path = Path(output)
    if not (path.name.lower().endswith(".gguf") and len(path.name) > len(".gguf")):
        example = "model.gguf" if path.name.strip(".").lower() in ("", "gguf") else f"{path.name}.gguf"
        raise ConfigError(f"{flag} {output}: a GGUF export is one file; name it *.gguf (e.g. {example})")
    return files.check_output_file(path, force, flag=flag, example="model.gguf"), quantize or "f16"


def export_model(model: str, output: str | os.PathLike, fmt: str, *, lora_path: Optional[str] = None,
                 quantize: Optional[str] = None, tolerance: Optional[float] = None, force: bool = False,
                 dtype: str = "float32", merge_tolerance: Optional[float] = None,
                 flag: str = "--output", model_flag: str = "--model") -> ExportResult:
    """Export ``model`` (+ ``lora_path`` merged) to ``output`` in ``fmt`` ("hf" folder or "gguf" file), verified.

    ``tolerance`` bounds the largest |logit difference| relative to the largest |logit| (default
    :data:`DEFAULT_TOLERANCE`); ``merge_tolerance`` bounds the absolute logit difference between the merged weights
    and base + adapter (default: merge's). Raises ConfigError for bad options or an unusable output path (checked before
    any work), OutputExistsError without ``force``, ExportVerificationError / MergeVerificationError when the
    export does not reproduce the model (nothing is written then).
    """
    with files.output_lock(output, flag):  # one run per output, for the whole run
        return _export_model(model, output, fmt, lora_path=lora_path, quantize=quantize, tolerance=tolerance,
                             force=force, dtype=dtype, merge_tolerance=merge_tolerance, flag=flag,
                             model_flag=model_flag)


def _export_model(model: str, output: str | os.PathLike, fmt: str, *, lora_path: Optional[str],
                  quantize: Optional[str], tolerance: Optional[float], force: bool, dtype: str,
                  merge_tolerance: Optional[float], flag: str, model_flag: str) -> ExportResult:
    output, quantize = check_request(model, lora_path, output, fmt, quantize, force, flag, model_flag)

    tolerance = check_tolerance(DEFAULT_TOLERANCE[quantize or "hf"] if tolerance is None else tolerance)
    if lora_path:

        read_lora_config(lora_path)
    require_export_packages()
    source_dir = resolve_model_dir(model, flag=model_flag)
    config = dataio.read_json_file(source_dir / "config.json", "model config")
    if not isinstance(config, dict):
        raise DataError("expected a JSON object (the model config)", source_dir / "config.json")
    architecture(config, source_dir)
    tokenizer = load_tokenizer(model, flag=model_flag)
    batch = probe_batch(tokenizer)
    prompts = probe_prompts(tokenizer)
    state, reference = paddle_reference(model, lora_path, batch, dtype, merge_tolerance, model_flag)
    if fmt == "hf":
        with files.atomic_folder(output, overwrite=force) as staging:
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
    with files.staged_file(output, overwrite=force) as staged:
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
    return [render_prompt(tokenizer, address) for address in PROBE_ADDRESSES] + [
        "<|im_start|>system\n地址补全<|im_end|>\n<|im_start|>user\n碑林区扬子江南路467-6号<|im_end|>\n"
        "<|im_start|>assistant\n陕西省西安市碑林区扬子江南路467-6号<|im_end|>\n"]


def export_record(result: ExportResult, model: str, lora_path: Optional[str]) -> dict:
    """What was exported from what, and how it was verified."""
    import time


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
    parser.add_argument("--model", required=True, type=flags.user_path, help="model folder (Paddle or Hugging Face), .gguf file or hub name")
    parser.add_argument("--lora-path", "--lora_path", default=None, type=flags.user_path, help="LoRA adapter folder to merge into --model first")
    add_format_arguments(parser)
    parser.add_argument("--output", required=True, type=flags.user_path, help="folder (hf) or .gguf file (gguf) to write")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest accepted logit difference from the Paddle model, relative to the largest "
                             "|logit|; default " + ", ".join(f"{key} {value:g}" for key, value in
                                                             DEFAULT_TOLERANCE.items())
                             + f" (GGUF files must also match the Paddle model with the file's own rounded weights "
                               f"within {FAITHFUL_TOLERANCE:g})")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")


def run(args: argparse.Namespace) -> int:
    check_request(args.model, args.lora_path, args.output, args.format, args.quantize, args.force)
    setup_runtime(device="cpu", dtype="float32", model=args.model)
    result = export_model(args.model, args.output, args.format, lora_path=args.lora_path, quantize=args.quantize,
                          tolerance=args.tolerance, force=args.force)
    what = args.format + (f" {result.quantize}" if result.quantize else "")
    print(f"exported {args.model}{' + ' + args.lora_path if args.lora_path else ''} as {what} -> "
          f"{result.output_path} (reloaded in transformers: max |logit diff| {result.max_abs_diff:.3g}, "
          f"{result.relative_diff:.3g} relative <= {result.tolerance:g})")
    return 0
