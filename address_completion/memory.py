"""Memory tuning of a training process: glibc's mmap threshold and giving freed heap back to the OS.

:func:`set_mmap_threshold` (``$ADDRESS_COMPLETION_MMAP_THRESHOLD``, checked by :func:`requested_mmap_threshold`
before any output is touched) and :class:`HeapTrimmer` (``malloc_trim`` after a step that raised the peak RSS)
are used by ``train``, its launcher, the demo and the train benchmark; the measurements behind their defaults
are in docs/performance.md.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Mapping

from .errors import ConfigError
from .runtime import logger


MMAP_THRESHOLD_ENV = "ADDRESS_COMPLETION_MMAP_THRESHOLD"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc's malloc.h)
MAX_MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: mallopt refuses more
DEFAULT_MMAP_THRESHOLD = MAX_MMAP_THRESHOLD  # training's: where glibc's dynamic threshold ends up, from step 1
TRIM_GROWTH = 0.02  # HeapTrimmer: a step that raised the process's peak RSS by more than 2% is followed by a trim


def requested_mmap_threshold(environ: Mapping[str, str] | None = None) -> int:
    """The threshold ``$ADDRESS_COMPLETION_MMAP_THRESHOLD`` asks for, in bytes (in ``environ``, default this
    process's environment): unset means :data:`DEFAULT_MMAP_THRESHOLD` (32 MiB), 0 glibc's own dynamic
    threshold. Raises ConfigError naming the variable for anything but a byte count from 0 to 32 MiB. Training,
    its launcher and the demo check it before they touch any output (:func:`set_mmap_threshold` applies it)."""
    text = (os.environ if environ is None else environ).get(MMAP_THRESHOLD_ENV, "").strip()
    if not text:
        return DEFAULT_MMAP_THRESHOLD
    if not (text.isascii() and text.isdigit()):  # int() would also take "1_000", "+5" and non-ASCII digits
        raise ConfigError(_threshold_expected(repr(text)))
    digits = text.lstrip("0") or "0"
    if len(digits) > 20:  # out of range whatever it is; int() refuses strings past 4300 digits with a ValueError
        raise ConfigError(_threshold_expected(f"a {len(digits)}-digit number"))
    return _checked_threshold(int(digits))


def _threshold_expected(got: str) -> str:
    return (f"{MMAP_THRESHOLD_ENV}: expected a byte count from 0 (glibc's own policy) to {MAX_MMAP_THRESHOLD} "
            f"(glibc's limit, 32 MiB; the default), got {got}")


def _checked_threshold(threshold: int) -> int:
    if not 0 <= threshold <= MAX_MMAP_THRESHOLD:
        raise ConfigError(_threshold_expected(str(threshold)))
    return threshold


def set_mmap_threshold(threshold: int | None = None) -> int | None:
    """Fix glibc's mmap threshold for a training process: blocks of ``threshold`` bytes or more get a mapping of
    their own (returned to the OS on free, faulted in page by page on every use); smaller ones come from the
    heap, whose freed blocks stay resident for the next step. The heap's trim threshold is set to twice it, the
    pair glibc's dynamic policy keeps.

    ``threshold`` defaults to ``$ADDRESS_COMPLETION_MMAP_THRESHOLD`` (:func:`requested_mmap_threshold`), else
    32 MiB. Why 32 MiB: glibc's own threshold starts at 128 KiB and rises only as mapped blocks are freed, so
    the first 0.5B-shape LoRA step mapped most activations afresh (2.3 M minor page faults, 5 s of a 15 s step in
    the kernel) before it reached their size by step 3; set from the start, 1.15 M, at the same peak RSS (and
    58 K in step 2 with the first step's heap kept, :class:`HeapTrimmer`; docs/performance.md). A small value
    (1048576) keeps RSS at Paddle's live tensors instead, at a cost of 25-40% of the step's speed on the AMD
    machine measured there; 0 leaves glibc's own policy.

    Returns the threshold set, or None when nothing was changed: not glibc, 0 asked, or the user set glibc's
    own ``MALLOC_MMAP_THRESHOLD_`` (that choice wins). Raises ConfigError for a malformed variable.
    """
    import ctypes
    import platform

    threshold = requested_mmap_threshold() if threshold is None else _checked_threshold(threshold)
    if threshold == 0 or platform.libc_ver()[0] != "glibc":
        return None
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        if os.environ.get(MMAP_THRESHOLD_ENV, "").strip():
            logger.warning("%s ignored: glibc's own MALLOC_MMAP_THRESHOLD_ is set and wins", MMAP_THRESHOLD_ENV)
        return None
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int  # C ints: never truncated
    if not mallopt(_M_MMAP_THRESHOLD, threshold):
        logger.warning("glibc refused an mmap threshold of %d bytes (mallopt); its own stays", threshold)
        return None
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        mallopt(_M_TRIM_THRESHOLD, 2 * threshold)
    return threshold


def peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes.

    On Linux ``VmHWM`` of /proc/self/status (kB): the peak of this program's own memory. Not ``getrusage``'s
    ru_maxrss there, which a process started by a big one (a test runner, a launcher) inherits across fork and
    exec, so its own growth would stay hidden below the parent's size. Elsewhere ru_maxrss (macOS: bytes).
    """
    import resource

    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class HeapTrimmer:
    """Gives glibc's freed heap memory back to the OS after a step that raised the process's peak RSS.

    Why: Paddle allocates every CPU tensor with malloc. After a training step frees its activations, glibc
    keeps the freed heap resident, and with batch widths that vary the heap fragments, so each new shape can
    push the peak higher (5.9 -> 9.5 GB over three 0.5B-shape steps, README.md at 76d8d7b). ``malloc_trim(0)``
    after a step that raised the peak by more than ``growth`` (a fraction) releases the free pages, so the
    next steps rebuild a compact heap; steps that stay under the peak keep their memory and pay no page
    faults.

    ``widest_first``: the first step's batch is the widest of the run (length-grouped batches put it first,
    ``train.batch_order``), so its heap has room for every later step: that step only sets the mark. Giving its
    heap back made the second step fault all of it in again (0.95 M minor page faults against 58 K at the
    0.5B shape); when a later batch is wider, keeping it let that step's new blocks pile on top (peak 7.8 GB,
    against 6.5 GB trimmed, README.md at 76d8d7b), so without the flag the first step is trimmed like any other.

    Call :meth:`after_step` after each optimizer step. Off glibc it never trims.
    """

    def __init__(self, growth: float = TRIM_GROWTH, widest_first: bool = False):
        import ctypes
        import platform

        if not growth >= 0:
            raise ValueError(f"growth must be a fraction >= 0, got {growth}")
        self.growth = growth
        self.widest_first = widest_first
        self.peak = peak_rss_bytes()
        self.steps = self.trims = 0
        self._malloc_trim = ctypes.CDLL(None).malloc_trim if platform.libc_ver()[0] == "glibc" else None

    def after_step(self) -> bool:
        """Trim if the peak grew by more than ``growth`` since the last call (not after the first step with
        ``widest_first``); True when it trimmed."""
        peak = peak_rss_bytes()
        raised = peak > self.peak * (1 + self.growth) and not (self.widest_first and self.steps == 0)
        self.peak = max(self.peak, peak)
        self.steps += 1
        if not raised or self._malloc_trim is None:
            return False
        self._malloc_trim(0)
        self.trims += 1
        logger.debug("peak RSS rose to %.0f MB: freed heap memory given back to the OS", peak / 2**20)
        return True
