"""The output folder of a run: its checkpoints (which exist, which are complete, which to resume from) and the
clean-up after a run that was killed or failed. No paddle: ``train`` checks the folder before any model loads."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OutputExistsError
from ..runtime import logger

CHECKPOINT_PREFIX = "checkpoint-"
# Files a finished run leaves in output_dir; finding one means the folder holds an earlier result.
RUN_OUTPUT_FILES = ("summary.json", "metrics.jsonl", "loss.png", "train_config.json", "lora_config.json",
                    "peft_model.safetensors.index.json", "model.safetensors.index.json", "lora_model_state.pdparams",
                    "model_state.pdparams", "model.safetensors")
# The learning-rate scheduler's state in a checkpoint: JSON here, a pickle (PaddleNLP's own name) in the old layout.
SCHEDULER_STATE_FILES = ("scheduler.json", "scheduler.pdparams")
SUMMARY_FILE = "summary.json"
LOSS_SUM_FILE = "address_completion_loss.json"  # in each checkpoint: the loss summed over every step so far
# What a run writes into output_dir besides checkpoints (removed by --force; other files stay).
RUN_OUTPUT_PATTERNS = (*RUN_OUTPUT_FILES, "lora_model_state*", "peft_model*", "model_state*", "model-*.safetensors",
                       "model.safetensors*", "training_args.bin", "*_predictions.jsonl")
# Files a write killed midway leaves: safetensors' temporary file (.tmpXXXXXX, then renamed) and dataio's own.
KILLED_WRITE = re.compile(r"\.tmp[A-Za-z0-9]{6}|\..+\.[0-9a-f]{12}\.tmp")
FINAL_WEIGHTS = ("peft_model*", "lora_model_state*", "model.safetensors*", "model-*.safetensors", "model_state*")


def checkpoints_in(output_dir: str | os.PathLike) -> list[Path]:
    """``checkpoint-N`` folders, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [path for path in folder.glob(CHECKPOINT_PREFIX + "*") if path.is_dir()
             and path.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))


def checkpoint_step(checkpoint: Path) -> int:
    """N of a ``checkpoint-N`` folder."""
    return int(checkpoint.name[len(CHECKPOINT_PREFIX):])


def checkpoint_is_complete(checkpoint: Path) -> bool:
    """Every file the Trainer writes for a checkpoint is there (a kill mid-save leaves some out).

    The scheduler state is written last (scheduler.json, or scheduler.pdparams in the pickled layout).
    """
    return (checkpoint / "trainer_state.json").is_file() and (checkpoint / "rng_state.pth").is_file() \
        and any((checkpoint / name).is_file() for name in SCHEDULER_STATE_FILES)


def resume_checkpoint(output_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from, or None to start fresh; never a silent resume.

    An output_dir holding checkpoints or a finished run needs ``resume`` (continue the latest complete
    checkpoint) or ``overwrite`` (``--force``: start again; the old checkpoints and results are deleted by the caller).
    """
    if resume and overwrite:
        raise ConfigError("--resume and --force exclude each other: resume continues the last checkpoint, "
                          "force starts again")
    folder = Path(output_dir)
    checkpoints = checkpoints_in(folder)
    if resume:
        complete = [path for path in checkpoints if checkpoint_is_complete(path)]
        if not complete:
            raise ConfigError(f"--resume: {folder} holds no complete checkpoint-N folder to resume from")
        if complete[-1] != checkpoints[-1]:
            logger.warning("warning: %s is incomplete (the run stopped while saving it); resuming from %s",
                           checkpoints[-1], complete[-1])
        return complete[-1]
    if overwrite:
        return None
    finished = [name for name in RUN_OUTPUT_FILES if (folder / name).exists()]
    if checkpoints:
        raise OutputExistsError(folder, f"it holds checkpoints of an earlier run ({checkpoints[-1].name}); pass "
                                        "--resume to continue from the last one, or --force to start again "
                                        "(deletes them)")
    if finished:
        raise OutputExistsError(folder, f"it holds the results of an earlier run ({', '.join(finished)}); pass "
                                        "--force to replace them, or choose another output_dir")
    return None


def clear_previous_run(output_dir: Path) -> None:
    """--force: remove an earlier run's checkpoints and results (other files stay)."""
    for checkpoint in checkpoints_in(output_dir):
        shutil.rmtree(checkpoint)
    for pattern in RUN_OUTPUT_PATTERNS:
        for path in output_dir.glob(pattern):
            if path.is_file():
                path.unlink()


def checkpoint_step_is_final(cfg: Any, checkpoint: Path) -> bool:
    """True when ``checkpoint`` is at (or past) the run's last step: max_steps, or, without it, the step count
    the checkpoint's trainer state recorded for the same run."""
    step = checkpoint_step(checkpoint) if checkpoint.name.startswith(CHECKPOINT_PREFIX) else None
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        step, recorded = int(state.get("global_step", step)), int(state.get("max_steps") or 0)
    except (OSError, ValueError, TypeError):
        recorded = 0
    target = cfg.training_args.max_steps if cfg.training_args.max_steps > 0 else recorded
    return step is not None and target > 0 and step >= target


def finished_summary(output_dir: Path, checkpoint: Path) -> dict[str, Any] | None:
    """The summary of a run that ended at ``checkpoint`` and wrote every result, else None."""
    try:
        summary = json.loads((output_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        done = int(summary["global_step"]) >= checkpoint_step(checkpoint)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return summary if done and final_weight_files(output_dir) else None


def resumed_loss_sum(checkpoint: Path, warnings: list[str]) -> float | None:
    """The loss summed over the steps before ``checkpoint``; None when the checkpoint does not record it, which is
    logged and added to ``warnings`` (the run's, which summary.json lists)."""
    try:
        record = json.loads((checkpoint / LOSS_SUM_FILE).read_text(encoding="utf-8"))
        return float(record["loss_sum"])
    except (OSError, ValueError, KeyError, TypeError):
        warning = (f"{checkpoint} does not record the loss of the steps before it; train_loss (the last progress "
                   "line, metrics.jsonl, summary.json) covers only the steps after the resume")
        logger.warning("%s", warning)
        warnings.append(warning)
        return None


def remove_killed_writes(output_dir: Path) -> list[Path]:
    """Remove the temporary files of writes a killed run left in ``output_dir`` and its checkpoints (call with
    the folder locked, so no live writer owns them); returns what was removed."""
    removed = []
    for folder in (output_dir, *checkpoints_in(output_dir)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if KILLED_WRITE.fullmatch(path.name) and path.is_file():
                path.unlink()
                removed.append(path)
                logger.info("removed %s, left by a killed write", path)
    return removed


def final_weight_files(output_dir: Path) -> list[Path]:
    """The run's result weights at the top of ``output_dir`` (the adapter or the full model)."""
    return [path for pattern in FINAL_WEIGHTS for path in output_dir.glob(pattern) if path.is_file()]


def remove_partial_outputs(output_dir: Path, checkpoints_before: set[Path], weights_before: set[Path]) -> None:
    """After a failed run (a full disk, Ctrl-C while saving): remove what it left half-written — checkpoints it
    started but did not complete, result weights it began to write, temporary files of killed writes. Complete
    checkpoints stay (a rerun resumes from them), so does everything that was there before."""
    for checkpoint in checkpoints_in(output_dir):
        if checkpoint not in checkpoints_before and not checkpoint_is_complete(checkpoint):
            shutil.rmtree(checkpoint, ignore_errors=True)
            logger.info("removed %s, which the run could not complete", checkpoint)
    for path in final_weight_files(output_dir) if output_dir.is_dir() else ():
        if path not in weights_before:
            path.unlink(missing_ok=True)
    if output_dir.is_dir():
        remove_killed_writes(output_dir)


def remove_new_files(folder: Path, before: set[Path]) -> None:
    """Remove the files (and then empty folders) below ``folder`` that are not in ``before``; ``folder`` itself
    goes too when it ends up empty and was not there before."""
    for path in sorted(folder.rglob("*"), key=lambda path: -len(path.parts)):
        if path in before:
            continue
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)
    if not before:
        with contextlib.suppress(OSError):
            folder.rmdir()
