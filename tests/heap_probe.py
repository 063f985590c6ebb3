"""glibc heap probe for the allocator tests (test_runtime, test_train), imported by their subprocesses.

Each probe runs in a process of its own so the test process's malloc settings stay untouched.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
from pathlib import Path

ALLOCATOR_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "ADDRESS_COMPLETION_MMAP_THRESHOLD")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def activation_block_is_mapped(after_bigger_free: bool = True) -> int:
    """1 if a 4 MiB block (a 0.5B-shape step's activations) is mmapped, else 0: after a 16 MiB mapped block was
    freed (glibc's default then serves it from its heap, where freed memory stays resident), or, with
    ``after_bigger_free=False``, in a fresh process (glibc's default maps every block of 128 KiB or more)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if after_bigger_free:
        libc.free(libc.malloc(16 << 20))  # glibc's default raises its threshold to 16 MiB here
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    mapped = libc.mallinfo2().hblks - before
    libc.free(block)
    return mapped


def resident_mb() -> float:
    """This process's resident set size now, in MB (/proc/self/statm: pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_probe(script: str, *arguments: str, **env: str) -> str:
    """The last stdout line of ``script`` (which may ``import heap_probe``) run in a fresh interpreter, with the
    allocator variables cleared and then ``env`` set. Skips the test off glibc."""
    import pytest

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's allocator only")
    environment = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_VARIABLES}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                              environment.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True,
                            env={**environment, **env}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]
