"""Progress of long work: a tqdm bar on a terminal, a log line with rate and ETA every so often otherwise.

In a log (CI, nohup, a pipeline) a tqdm bar is disabled and nothing would say how far the work is; there
:class:`LogProgress` logs ``"<what>: 1,200/5,000 addr (24%), 31.5 addr/s, ETA 2m01s"`` at most once every
``$ADDRESS_COMPLETION_PROGRESS_SECONDS`` seconds (default 30), and one closing line with the total time when
it logged at least once (short work stays silent).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Optional

from .errors import ConfigError
from .runtime import logger

INTERVAL_ENV = "ADDRESS_COMPLETION_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def log_interval() -> float:
    """Seconds between progress lines in a log: ``$ADDRESS_COMPLETION_PROGRESS_SECONDS`` (> 0), default 30."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ConfigError(f"{INTERVAL_ENV}={text!r}: expected a number of seconds > 0")
    return value


def duration(seconds: float) -> str:
    """``125.3`` -> ``"2m05s"``; ``3725`` -> ``"1h02m05s"``; under a minute ``"42s"``."""
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(what: str, done: int, total: Optional[int], unit: str, elapsed: float) -> str:
    """One progress line: count, share, rate and ETA (when the total is known and the rate positive)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"{what}: {done:,}" + (f"/{total:,}" if total else "") + f" {unit}"]
    if total:
        parts[0] += f" ({100 * done / total:.0f}%)"
    parts.append(f"{rate:.3g} {unit}/s")
    if total and rate > 0:
        parts.append(f"ETA {duration((total - done) / rate)}")
    return ", ".join(parts)


class LogProgress:
    """tqdm's ``update`` / ``close`` / context manager, as log lines at a bounded interval."""

    def __init__(self, total: Optional[int], desc: str, unit: str, *, interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic, emit: Callable[[str], None] | None = None):
        self.total, self.desc, self.unit = total, desc, unit
        self.interval = log_interval() if interval is None else interval
        self._clock = clock
        self._emit = emit or (lambda line: logger.info("%s", line))
        self.started = self._last = clock()
        self.n = 0
        self.lines = 0

    def update(self, count: int = 1) -> None:
        self.n += count
        now = self._clock()
        if now - self._last >= self.interval and (not self.total or self.n < self.total):
            self._last = now
            self.lines += 1
            self._emit(progress_line(self.desc, self.n, self.total, self.unit, now - self.started))

    def close(self) -> None:
        if self.lines:  # long work said how far it was: say that it ended too
            elapsed = self._clock() - self.started
            self._emit(f"{self.desc}: {self.n:,} {self.unit} done in {duration(elapsed)}"
                       + (f" ({self.n / elapsed:.3g} {self.unit}/s)" if elapsed > 0 else ""))
            self.lines = 0

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Silent:
    n = 0

    def update(self, count: int = 1) -> None:
        self.n += count

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress(total: Optional[int], desc: str, unit: str, *, enabled: bool = True, leave: bool = True) -> Any:
    """A progress tracker for ``total`` items: a tqdm bar when stderr is a terminal, :class:`LogProgress` when it
    is not, nothing when ``enabled`` is false. Use as a context manager and call ``update(n)``."""
    if not enabled:
        return _Silent()
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=leave)
    return LogProgress(total, desc, unit)
