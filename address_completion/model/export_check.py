"""The export's verification: the written folder or .gguf file reloaded in transformers (and a GGUF file in
the project's own importer), its tokenizer and probe logits compared with the Paddle model's. torch and
transformers are imported inside the functions (the ``export`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..data.prompt import has_chat_template
from ..errors import AddressCompletionError
from ..runtime import logger
from .gguf_export import rounded_state
from .gguf_import import convert_gguf
from .modeling import load_model, load_tokenizer
from .verify import max_logit_difference, probe_logits


class ExportVerificationError(AddressCompletionError):
    """The reloaded export does not reproduce the Paddle model."""


def rounded_reference(model: str, paddle_state: dict[str, Any], quantize: str, tied: bool, batch: Any,
                      dtype: str) -> Any:
    """Probe logits of the Paddle model carrying the GGUF file's rounded weights (see FAITHFUL_TOLERANCE)."""
    import gc

    loaded = load_model(model, dtype=dtype, flag="--model")
    loaded.set_state_dict(rounded_state(paddle_state, quantize, tied))
    loaded.eval()
    logits = probe_logits(loaded, batch)
    del loaded
    gc.collect()
    return logits


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


def transformers_gguf_path(folder: Path, gguf_file: str) -> str:
    """The absolute path of ``gguf_file`` inside ``folder``, as transformers' ``gguf_file`` argument: transformers
    takes a bare name that exists relative to the current folder as that file, so `export --output model.gguf
    --force` would have verified the old model.gguf instead of the staged one."""
    return str((Path(folder) / gguf_file).resolve())


def load_transformers_model(folder: Path, gguf_file: Optional[str] = None) -> Any:
    """transformers' AutoModelForCausalLM from an export, float32; ExportVerificationError when a weight is missing
    or left unused (transformers only warns)."""
    import torch
    from transformers import AutoModelForCausalLM

    options = {"gguf_file": transformers_gguf_path(folder, gguf_file)} if gguf_file else {}
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
    options = {"gguf_file": transformers_gguf_path(folder, gguf_file)} if gguf_file else {}
    check_tokenizer(AutoTokenizer.from_pretrained(str(folder), **options), tokenizer, prompts, f"{what} (tokenizer)")
    model = load_transformers_model(folder, gguf_file)
    try:
        return compare_all(references, torch_logits(model, batch), batch[1], what)
    finally:
        del model
        gc.collect()
