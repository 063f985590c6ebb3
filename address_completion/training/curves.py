"""Training curves and logging integrations: ``loss.png`` in every run's output folder (as LLaMA-Factory's
``plot_loss`` writes ``training_loss.png``), and the check that every ``report_to`` integration's package is
installed before a model loads (PaddleNLP would fail deep inside the trainer with a long traceback).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Sequence

from .. import files
from ..errors import ConfigError

LOSS_PLOT = "loss.png"
# report_to value -> the module PaddleNLP's callback for it imports (and the PyPI package of that module).
REPORT_PACKAGES = {"visualdl": ("visualdl", "visualdl"), "tensorboard": ("tensorboardX", "tensorboardX"),
                   "wandb": ("wandb", "wandb"), "autonlp": ("ray.air", "ray[air]")}


def check_report_to(report_to: Sequence[str], origin: str) -> None:
    """ConfigError, one line, for a ``report_to`` integration PaddleNLP does not know or whose package is missing."""
    for name in report_to:
        if name not in REPORT_PACKAGES:
            raise ConfigError(f"{origin}: report_to {name!r} is not an integration PaddleNLP has; use "
                              f"{', '.join(REPORT_PACKAGES)}, all or none")
        module, package = REPORT_PACKAGES[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent of a dotted module (ray of ray.air) is missing
            found = False
        if not found:
            raise ConfigError(f"{origin}: report_to {name} needs the Python package {package}, which is not "
                              f"installed: pip install {package}, or set report_to to none")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plot_loss(records: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Write the run's curves to ``path`` (PNG, atomically): train ``loss`` and ``eval_loss`` over ``step``, plus
    ``eval_accuracy`` (exact match of real decoding on dev, right axis) when the run evaluated.

    ``records`` are metrics.jsonl's records (one per log / evaluation). Returns the path, or None when there is
    no step with a loss to draw (nothing is written then).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(record["step"], record[key]) for record in records
                  if _finite(record.get(key)) and _finite(record.get("step"))]
        return [step for step, _ in points], [value for _, value in points]

    train, evaluated, accuracy = series("loss"), series("eval_loss"), series("eval_accuracy")
    if not train[0] and not evaluated[0]:
        return None
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        if train[0]:
            axis.plot(*train, label="train loss", color="tab:blue", marker="." if len(train[0]) < 30 else None)
        if evaluated[0]:
            axis.plot(*evaluated, label="eval loss", color="tab:orange", marker="o")
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
        handles, labels = axis.get_legend_handles_labels()
        if accuracy[0]:
            right = axis.twinx()
            right.plot(*accuracy, label="eval exact match", color="tab:green", marker="s", linestyle="--")
            right.set_ylabel("exact match")
            right.set_ylim(-0.02, 1.02)
            more_handles, more_labels = right.get_legend_handles_labels()
            handles, labels = handles + more_handles, labels + more_labels
        axis.legend(handles, labels, loc="upper right")
        axis.set_title("training curves (metrics.jsonl)")
        figure.tight_layout()
        with files.atomic_write(path, "wb") as handle:
            figure.savefig(handle, format="png")
    finally:
        plt.close(figure)
    return Path(path)
