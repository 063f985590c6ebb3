"""The summary of a run (summary.json and the lines printed at the end) and the log-record formatting the
metrics callback shares with it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ..runtime import distributed_rank
from .config import TrainConfig
from .lora import trainable_parameters

# Log keys that are bookkeeping, not metrics.
UNLOGGED_KEYS = ("progress_or_epoch", "global_step")


def make_summary(cfg: TrainConfig, trainer: Any, data: Any, train_metrics: dict[str, Any],
                 final_eval: dict[str, Any], test_metrics: dict[str, Any], started: float,
                 resumed_from: Path | None) -> dict[str, Any]:
    runtime_seconds = float(train_metrics.get("train_runtime", 0.0)) or 1e-9
    processes = distributed_rank()[1]
    speeds = train_speeds(cfg.training_args, trainer.steps_since_resume(), runtime_seconds)
    tokens_trained = _sum_over_processes(trainer.tokens_trained) if processes > 1 else trainer.tokens_trained
    trainable, total = trainable_parameters(trainer.model)
    state = trainer.state
    summary = {
        "output_dir": str(cfg.output_dir),
        "model": cfg.model_args.model_name_or_path,
        "method": "lora" if cfg.model_args.lora else "full",
        "device": cfg.device,
        "processes": processes,
        "dtype": cfg.dtype,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "global_step": int(state.global_step),
        "epoch": round(float(state.epoch or 0.0), 4),
        "resumed_from": str(resumed_from) if resumed_from else None,
        "wall_time_seconds": round(time.time() - started, 2),
        "train_runtime_seconds": round(float(train_metrics.get("train_runtime", 0.0)), 2),
        "train_samples_per_second": round(speeds["train_samples_per_second"], 3) if train_metrics else 0.0,
        "train_tokens_per_second": round(tokens_trained / runtime_seconds, 1) if train_metrics else 0.0,
        "train_tokens": int(tokens_trained),
        "train_loss": _train_loss(trainer, train_metrics),
        "best_checkpoint": state.best_model_checkpoint,
        "best_metric": plain(state.best_metric) if state.best_metric is not None else None,
        "metric_for_best_model": cfg.training_args.metric_for_best_model,
        "eval": final_eval,
        "test": {key: plain(value) for key, value in test_metrics.items() if key not in UNLOGGED_KEYS},
        "truncation": {name: split.truncation() for name, split in
                       (("train", data.train), ("dev", data.dev), ("test", data.test)) if split is not None},
        "warnings": cfg.warnings,
    }
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    lines = [f"trained {summary['method']} on {summary['model']} ({summary['device']}, {summary['dtype']}): "
             f"{summary['global_step']} steps, {summary['epoch']} epochs in {summary['wall_time_seconds']:.1f} s",
             f"  {summary['train_samples_per_second']} samples/s, {summary['train_tokens_per_second']} tokens/s, "
             f"train loss {summary['train_loss']}"]
    if summary["eval"]:
        shown = {key: summary["eval"][key] for key in ("eval_loss", "eval_accuracy") if key in summary["eval"]}
        lines.append(f"  eval: {shown}")
    if summary["best_checkpoint"]:
        lines.append(f"  best checkpoint: {summary['best_checkpoint']} ({summary['metric_for_best_model']} = "
                     f"{summary['best_metric']})")
    for name, counts in summary["truncation"].items():
        if counts["source_truncated"] or counts["sample_truncated"]:
            lines.append(f"  truncated in {name}: {counts['source_truncated']} sources, "
                         f"{counts['sample_truncated']} samples")
    lines.append(f"  outputs in {summary['output_dir']} (summary.json, metrics.jsonl, loss.png, train_config.json)")
    print("\n".join(lines), file=sys.stdout, flush=True)


def _train_loss(trainer: Any, train_metrics: dict[str, Any]) -> float | None:
    """The trainer's mean loss over every step of the run (:meth:`AddressTrainer.mean_train_loss`, the number its
    closing log shows too); PaddleNLP's own when no step was trained."""
    if not train_metrics:
        return None
    mean = trainer.mean_train_loss()
    return mean if mean is not None else plain(train_metrics["train_loss"])


def train_speeds(args: Any, steps: int, runtime_seconds: float) -> dict[str, float]:
    """Steps and samples (every process's) per second of ``steps`` trained in ``runtime_seconds``, unrounded.
    ``steps`` are those since a resume: the runtime is this run's (PaddleNLP's closing log divides every step of
    the run by it, twice the speed after resuming halfway). summary.json and the closing log both use it."""
    runtime_seconds = runtime_seconds or 1e-9
    samples = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * distributed_rank()[1]
    return {"train_steps_per_second": steps / runtime_seconds, "train_samples_per_second": samples / runtime_seconds}


def _sum_over_processes(count: int) -> int:
    """``count`` added up over every process of a multi-process run (a collective: all ranks call it)."""
    import paddle
    import paddle.distributed as dist

    total = paddle.to_tensor([int(count)], dtype="int64")
    dist.all_reduce(total)
    return int(total.item())


def plain(value: Any) -> Any:
    """A log value as JSON holds it: a float rounded to 8 digits, strings and booleans as they are."""
    try:
        return round(float(value), 8) if not isinstance(value, (str, bool)) else value
    except (TypeError, ValueError):
        return str(value)


def format_record(record: dict[str, Any], max_steps: int) -> str:
    shown = [f"step {record['step']}/{max_steps}", f"epoch {record['epoch']:.2f}"]
    for key, value in record.items():
        if key == "learning_rate" or key.endswith(("loss", "_accuracy")):
            shown.append(f"{key} {value:.4g}")
    return "  ".join(shown)
