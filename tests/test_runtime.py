"""Process setup: the project's log handler."""

from __future__ import annotations

import io
import logging
import os
import re
import sys

import pytest

from address_completion.runtime import configure_logging, logger


def test_log_lines_follow_stderr_after_the_stream_they_started_on_is_closed(capsys, monkeypatch):
    """cli.main configures logging under whatever stderr is current (pytest's capsys stream in tests); once that
    stream is closed, later records must go to the current stderr, not fail with "I/O operation on closed file"."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging()
    logger.warning("first line")
    assert first.getvalue() == "first line\n"
    first.close()
    monkeypatch.undo()  # back to capsys's stderr
    errors: list[BaseException] = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda self, record: errors.append(sys.exc_info()[1]))
    logger.warning("second line")
    assert errors == []
    assert capsys.readouterr().err == "second line\n"


def test_debug_adds_the_level_name():
    configure_logging(debug=True)
    assert logger.level == logging.DEBUG and not logger.propagate
    assert logger.handlers[0].format(logging.makeLogRecord({"msg": "x", "levelname": "INFO"})) == "INFO x"


_HEAP_PROBE = r"""
import json, sys
from address_completion.memory import set_mmap_threshold
from heap_probe import activation_block_is_mapped

applied = set_mmap_threshold() if sys.argv[1] == "apply" else None
print(json.dumps({"applied": applied, "mapped": activation_block_is_mapped(after_bigger_free=sys.argv[2] == "after")}))
"""


def _heap_probe(mode: str, fresh: bool = False, **env: str) -> dict:
    """``fresh``: probe before any bigger block was mapped and freed (a process's first step)."""
    import json

    from heap_probe import run_probe

    return json.loads(run_probe(_HEAP_PROBE, mode, "fresh" if fresh else "after", **env))


def test_training_keeps_activation_sized_blocks_in_the_heap_from_the_start_and_maps_them_when_asked():
    """glibc's own threshold maps a 4 MiB block until a bigger mapped block was freed; a training process sets
    32 MiB from the start (every step's activations reused from the heap, not faulted in afresh), and
    ADDRESS_COMPLETION_MMAP_THRESHOLD=1048576 maps them (RSS = Paddle's live tensors, at a cost in speed)."""
    assert _heap_probe("leave") == {"applied": None, "mapped": 0}
    assert _heap_probe("leave", fresh=True) == {"applied": None, "mapped": 1}  # glibc's start: 128 KiB
    assert _heap_probe("apply", fresh=True) == {"applied": 32 << 20, "mapped": 0}
    assert _heap_probe("apply") == {"applied": 32 << 20, "mapped": 0}
    assert _heap_probe("apply", ADDRESS_COMPLETION_MMAP_THRESHOLD="1048576") == {"applied": 1 << 20, "mapped": 1}


def test_the_threshold_variable_can_be_zero_and_a_bad_value_is_named(monkeypatch):
    import pytest

    from address_completion.errors import ConfigError
    from address_completion.memory import requested_mmap_threshold, set_mmap_threshold

    assert _heap_probe("apply", ADDRESS_COMPLETION_MMAP_THRESHOLD="0", fresh=True) == {"applied": None, "mapped": 1}
    assert _heap_probe("apply", MALLOC_MMAP_THRESHOLD_="1048576", fresh=True) == {"applied": None, "mapped": 1}
    assert _heap_probe("apply", MALLOC_MMAP_THRESHOLD_="33554432",
                       ADDRESS_COMPLETION_MMAP_THRESHOLD="1048576") == {"applied": None, "mapped": 0}  # user's wins
    for loose in ("1_000", "+5", "-1", "\u0663", "1e6"):  # what int() or float() would have taken
        monkeypatch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", loose)
        with pytest.raises(ConfigError, match=re.escape(f"got {loose!r}") + "$"):
            set_mmap_threshold()
    monkeypatch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", "1MB")
    with pytest.raises(ConfigError, match=r"ADDRESS_COMPLETION_MMAP_THRESHOLD: expected a byte count from 0 \(glibc's own policy\) to 33554432 \(glibc's limit, 32 MiB; the default\), got '1MB'$"):
        set_mmap_threshold()
    # beyond glibc's 32 MiB limit (and beyond a C int, which ctypes would have cut to 1 byte): named, not applied
    for too_big in ("33554433", "4294967297", "99999999999999999999"):
        monkeypatch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", too_big)
        with pytest.raises(ConfigError, match=rf"expected a byte count from 0 \(glibc's own policy\) to 33554432 .*got {too_big}$"):
            set_mmap_threshold()
    monkeypatch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", "9" * 5000)  # past int()'s 4300-digit limit
    with pytest.raises(ConfigError, match=r"got a 5000-digit number$"):
        set_mmap_threshold()
    monkeypatch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", "0" * 5000 + "1048576")
    assert requested_mmap_threshold() == 1 << 20
    assert _heap_probe("apply", ADDRESS_COMPLETION_MMAP_THRESHOLD=str(32 << 20)) == {"applied": 32 << 20, "mapped": 0}


_TRIM_PROBE = r"""
import ctypes, json, sys
from address_completion.memory import HeapTrimmer
from heap_probe import resident_mb

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: 1 MiB blocks come from the heap, as after a training step
trimmer = HeapTrimmer(widest_first=sys.argv[1] == "widest")
first = [libc.malloc(1 << 20) for _ in range(300)]
for block in first:
    ctypes.memset(block, 1, 1 << 20)  # the first step's working set, resident
for block in first[:-1:2]:
    libc.free(block)
first_step = trimmer.after_step()  # the peak rose; widest_first: the next steps fit in this heap, kept
quiet = trimmer.after_step()  # nothing allocated since: no growth, no trim
blocks = [libc.malloc(1 << 20) for _ in range(400)]
for block in blocks:
    ctypes.memset(block, 1, 1 << 20)  # resident
for block in blocks[:-1:2]:
    libc.free(block)  # every other block: 200 MB of holes glibc keeps resident (no free block at the top)
before = resident_mb()
trimmed = trimmer.after_step()  # the peak rose by ~250 MB beyond the first step's
after = resident_mb()
again = trimmer.after_step()  # no new peak: the heap is left alone
print(json.dumps({"first_step": first_step, "quiet": quiet, "trimmed": trimmed, "released_mb": before - after,
                  "again": again, "trims": trimmer.trims}))
"""


@pytest.mark.parametrize("widest_first", [False, True])
def test_heap_trimmer_gives_freed_memory_back_only_after_a_step_that_raised_the_peak(widest_first):
    """With ``widest_first`` not after the first step, whose heap the next steps fit in (giving it back made the
    second step fault it all in again). Run from a parent bigger than the probe's growth, as in the full suite:
    getrusage's peak is inherited across fork and exec, so the trimmer must read the process's own peak (VmHWM)
    to see the growth."""
    import json

    from heap_probe import run_probe

    ballast = b"\x01" * (700 << 20)  # resident in this (parent) process while the probe runs
    result = json.loads(run_probe(_TRIM_PROBE, "widest" if widest_first else "plain"))
    del ballast
    assert (result["first_step"], result["quiet"], result["trimmed"], result["again"], result["trims"]) == \
        (not widest_first, False, True, False, 1 if widest_first else 2)
    assert result["released_mb"] > 150, result  # ~200 MB of holes went back to the OS


def test_heap_trimmer_refuses_a_negative_growth():
    import pytest

    from address_completion.memory import HeapTrimmer

    with pytest.raises(ValueError, match="growth must be a fraction >= 0, got -0.1"):
        HeapTrimmer(growth=-0.1)


_AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\n"
_INTEL = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx avx2 avx512f\n"
_OLD_AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx\n"


def test_mkl_gets_its_avx2_kernels_on_amd_only_and_a_users_choice_wins(tmp_path, monkeypatch):
    from address_completion.runtime import MKL_CPU_TYPE_ENV, choose_mkl_code_path, cpu_vendor_and_flags

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.delenv(MKL_CPU_TYPE_ENV, raising=False)
    for text, expected in ((_INTEL, None), (_OLD_AMD, None), ("", None), (_AMD, "5")):
        cpuinfo.write_text(text)
        assert choose_mkl_code_path(cpuinfo) == expected, text
        assert os.environ.get(MKL_CPU_TYPE_ENV) == expected
    assert cpu_vendor_and_flags(cpuinfo) == ("AuthenticAMD", frozenset({"fpu", "sse2", "avx", "avx2", "fma"}))
    assert cpu_vendor_and_flags(tmp_path / "missing") == ("", frozenset())
    monkeypatch.setenv(MKL_CPU_TYPE_ENV, "")  # empty: the user keeps MKL's own choice
    assert choose_mkl_code_path(cpuinfo) is None and os.environ[MKL_CPU_TYPE_ENV] == ""


def test_a_value_mkl_ignores_is_named_not_kept_silently(tmp_path, monkeypatch, capsys):
    """MKL silently ignores MKL_DEBUG_CPU_TYPE=avx2 and runs its generic kernels on AMD (~2x slower sgemm): the
    user's value is still left alone, but said to be ignored; a number is taken quietly."""
    from address_completion.runtime import MKL_CPU_TYPE_ENV, _warn_mkl_ignores, choose_mkl_code_path, configure_logging

    configure_logging()
    _warn_mkl_ignores.cache_clear()  # said once per process: start this test from "not said yet"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(_AMD)
    monkeypatch.setenv(MKL_CPU_TYPE_ENV, "avx2")
    assert choose_mkl_code_path(cpuinfo) is None and os.environ[MKL_CPU_TYPE_ENV] == "avx2"
    assert "MKL_DEBUG_CPU_TYPE='avx2' is not one of MKL's code-path numbers (5 = AVX2); MKL ignores it" in \
        capsys.readouterr().err
    assert choose_mkl_code_path(cpuinfo) is None and capsys.readouterr().err == ""  # said once (entry points
    # prepare the environment more than once)
    monkeypatch.setenv(MKL_CPU_TYPE_ENV, "6")
    assert choose_mkl_code_path(cpuinfo) is None and capsys.readouterr().err == ""


_MKL_PROBE = r"""
import ctypes, os, sys
from address_completion.runtime import prepare_environment, import_paddle
if sys.argv[1] == "prepare":
    prepare_environment(offline=True)
paddle = import_paddle()
library = os.path.join(os.path.dirname(paddle.__file__), "libs", "libmklml_intel.so")
print(ctypes.CDLL(library).mkl_serv_cpu_detect() if os.path.exists(library) else "no mklml")
"""


def test_on_an_amd_cpu_paddles_mkl_runs_its_avx2_kernels_after_prepare_environment():
    """mkl_serv_cpu_detect() is MKL's own answer to 'which kernels': 0 = generic SSE2, 5 = AVX2. Without the
    setting an AMD CPU gets 0 (sgemm 2.2x slower; docs/performance.md); every entry point's setup gives 5."""
    import subprocess

    import pytest

    from address_completion.runtime import cpu_vendor_and_flags

    vendor, flags = cpu_vendor_and_flags()
    if vendor != "AuthenticAMD" or "avx2" not in flags:
        pytest.skip(f"needs an AMD CPU with AVX2 (this one: {vendor or 'unknown'})")

    def detected(mode: str, **env: str) -> str:
        clean = {key: value for key, value in os.environ.items() if key != "MKL_DEBUG_CPU_TYPE"}
        result = subprocess.run([sys.executable, "-c", _MKL_PROBE, mode], capture_output=True, text=True,
                                env={**clean, **env}, check=True)
        return result.stdout.strip().splitlines()[-1]

    if detected("prepare") == "no mklml":
        pytest.skip("this Paddle build has no bundled MKLML")
    assert detected("prepare") == "5"
    assert detected("bare") == "0"  # paddle imported without the setup: MKL's generic kernels
    assert detected("prepare", MKL_DEBUG_CPU_TYPE="") == "0"  # the user's (empty) choice is kept
