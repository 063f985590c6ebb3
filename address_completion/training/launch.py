"""Data-parallel training on several devices through ``python -m paddle.distributed.launch``.

``train CONFIG --devices 0,1`` (or ``--nproc-per-node N``) checks the config and the output folder once,
then runs the launcher PaddleNLP's users know, with ``python -m address_completion train CONFIG …`` as the
script of each process. Each process trains on its shard of every batch order (``per_device_train_batch_size``
samples per process and step); PaddleNLP's Trainer averages the gradients, and only rank 0 writes the
adapter, checkpoints, ``metrics.jsonl`` and ``summary.json``. ``--dry-run`` prints the launcher command
instead of running it.

On a GPU build ``--devices`` names GPU ids. Paddle's CPU build has no devices to name: there
``--nproc-per-node N`` runs N processes that exchange gradients over gloo (useful to check a multi-process
run, not faster on one machine's cores).
"""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import AddressCompletionError, ConfigError
from ..runtime import logger, usable_cores

DEVICES = "--devices"
NPROC = "--nproc-per-node"  # train's flag; --nproc_per_node, the launcher's own spelling, is accepted too
LAUNCHER_NPROC = "--nproc_per_node"  # paddle.distributed.launch's option
ALIASES = {"--nproc_per_node": NPROC}
DRY_RUN = "--dry-run"
LAUNCH_LOG_DIR = "launch_logs"  # inside output_dir: one workerlog.N per process


@dataclass(frozen=True)
class LaunchRequest:
    """What the user asked of the launcher: device ids, or a process count (one of the two)."""

    devices: tuple[int, ...] | None = None
    nproc_per_node: int | None = None
    dry_run: bool = False

    @property
    def processes(self) -> int:
        """Number of training processes this request starts."""
        return len(self.devices) if self.devices else int(self.nproc_per_node or 1)

    def launcher_options(self) -> list[str]:
        if self.devices:
            return [DEVICES, ",".join(str(device) for device in self.devices)]
        return [LAUNCHER_NPROC, str(self.nproc_per_node)]


def parse_devices(text: str) -> tuple[int, ...]:
    """``"0,1"`` -> (0, 1). ConfigError for anything but distinct non-negative integers separated by commas."""
    value = text.strip()
    if not re.fullmatch(r"\d+(\s*,\s*\d+)*", value):
        raise ConfigError(f"{DEVICES} {text!r}: expected device ids separated by commas, such as 0,1")
    devices = tuple(int(part) for part in value.split(","))
    repeated = sorted({device for device in devices if devices.count(device) > 1})
    if repeated:
        raise ConfigError(f"{DEVICES} {text!r}: device {repeated[0]} is named twice; name each device once")
    return devices


def parse_nproc(text: str) -> int:
    """``"2"`` -> 2. ConfigError unless a positive integer (NPROC in scripts/train.sh arrives here)."""
    value = text.strip()
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{NPROC} {text!r} (NPROC in scripts/train.sh): expected a positive number of processes, "
                          "such as 2")
    return int(value)


def split_launch_options(tokens: Sequence[str], devices: str | None = None,
                         nproc_per_node: str | None = None) -> tuple[list[str], LaunchRequest | None]:
    """Pull ``--devices X``, ``--nproc-per-node N`` (or ``--nproc_per_node N``) and ``--dry-run`` out of the config
    overrides.

    ``devices`` / ``nproc_per_node`` are the values argparse already took (options written before the
    config). Returns the remaining tokens and the request, or None when no launcher option was given.
    Raises ConfigError for a missing or bad value, or for both options at once.
    """
    rest: list[str] = []
    found = {DEVICES: devices, NPROC: nproc_per_node}
    dry_run = False
    index = 0
    while index < len(tokens):
        token = tokens[index]
        name, has_value, value = token.partition("=")
        name = ALIASES.get(name, name)
        if token == DRY_RUN:
            dry_run = True
        elif name in found:
            if not has_value:
                following = tokens[index + 1] if index + 1 < len(tokens) else None
                if following is None or following.startswith("--"):
                    raise ConfigError(f"{name} needs a value, e.g. {name} {'0,1' if name == DEVICES else '2'}")
                value = following
                index += 1
            found[name] = value
        else:
            rest.append(token)
        index += 1
    if found[DEVICES] is None and found[NPROC] is None:
        if dry_run:
            raise ConfigError(f"{DRY_RUN} prints the paddle.distributed.launch command: give {DEVICES} or {NPROC} "
                              "with it")
        return rest, None
    if found[DEVICES] is not None and found[NPROC] is not None:
        raise ConfigError(f"give {DEVICES} (which devices) or {NPROC} (how many processes), not both")
    request = LaunchRequest(devices=parse_devices(found[DEVICES]) if found[DEVICES] is not None else None,
                            nproc_per_node=parse_nproc(found[NPROC]) if found[NPROC] is not None else None,
                            dry_run=dry_run)
    return rest, request


def check_devices(request: LaunchRequest, device: str, device_count: int) -> None:
    """ConfigError when ``--devices`` names devices this machine lacks, or ``--nproc-per-node`` asks for more
    processes than there are GPUs (``device`` "gpu") or usable CPU cores (``device`` "cpu")."""
    if not request.devices:
        limit, what = (device_count, "GPU(s)") if device == "gpu" else (usable_cores(), "usable CPU core(s)")
        if request.nproc_per_node and request.nproc_per_node > limit:
            raise ConfigError(f"{NPROC} {request.nproc_per_node}: more processes than the {limit} {what} here; each "
                              f"process needs one of its own (at most {NPROC} {limit})")
        return
    if device != "gpu":
        raise ConfigError(f"{DEVICES} {','.join(map(str, request.devices))}: Paddle sees no GPU here (CPU build, "
                          f"no CUDA device, or the config's device is cpu); on CPU use {NPROC} N to run N "
                          "processes over gloo")
    missing = [device_id for device_id in request.devices if device_id >= device_count]
    if missing:
        raise ConfigError(f"{DEVICES}: GPU {missing[0]} does not exist; Paddle sees {device_count} GPU(s) "
                          f"(ids 0-{device_count - 1})")


def shard(order: list[int], replicas: int, rank: int) -> list[int]:
    """``rank``'s share of ``order`` for ``replicas`` processes: every replicas-th index from ``rank`` on, after
    wrapping the order's start onto its end so that each process gets the same number of samples."""
    total = math.ceil(len(order) / replicas) * replicas
    padded = order + order[: total - len(order)]
    return padded[rank:total:replicas]


def launch_command(request: LaunchRequest, config: str, overrides: Sequence[str], flags: Sequence[str],
                   log_dir: str | os.PathLike, python: str | None = None) -> list[str]:
    """The argv that starts the training processes: the launcher, its options, then each process's command.

    ``flags`` are train's own flags (``--resume``, ``--force``, ``--debug``, ``--trust-pickle``), passed
    to every process. The launcher runs a script that does not end in ``.py`` as a program, so the
    interpreter itself is the "script" and ``-m address_completion train …`` its arguments.
    """
    python = python or sys.executable
    return [python, "-m", "paddle.distributed.launch", *request.launcher_options(), "--log_dir", str(log_dir),
            python, "-m", "address_completion", "train", str(config), *overrides, *flags]


def launch_environment(request: LaunchRequest, device: str, user_threads: str | None) -> dict[str, str]:
    """The processes' environment: on CPU the cores are split between them (each would otherwise take all)
    unless the user set ``OMP_NUM_THREADS`` (``user_threads``: its value before this process set it)."""
    environment = dict(os.environ)
    if device == "cpu" and user_threads is None:
        environment["OMP_NUM_THREADS"] = str(max(1, usable_cores() // request.processes))
    return environment


def run_launcher(command: Sequence[str], environment: dict[str, str], log_dir: Path) -> int:
    """Run the launcher (rank 0's output is shown; every process logs to ``log_dir/workerlog.N``).

    Returns 0; raises AddressCompletionError naming the logs when a process failed.
    """
    logger.info(">> %s", shlex.join(command))
    code = subprocess.call(list(command), env=environment)
    if code != 0:
        raise AddressCompletionError(f"distributed training failed (launcher exit code {code}); each process's "
                                     f"log is in {log_dir}/workerlog.N")
    return 0
