"""Process setup: the project's log handler."""

from __future__ import annotations

import io
import logging
import sys

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


# glibc's allocator: a subprocess each, so the test process's own malloc settings stay untouched.
_HEAP_PROBE = r"""
import ctypes, json, sys
from address_completion.runtime import release_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
applied = release_freed_memory() if sys.argv[1] == "apply" else None
libc.free(libc.malloc(16 << 20))  # a freed mapped block: glibc's default raises its threshold to 16 MiB
before = libc.mallinfo2().hblks
block = libc.malloc(4 << 20)  # the size of a 0.5B-shape step's activations
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"applied": applied, "mapped": mapped}))
"""


def _heap_probe(mode: str, **env: str) -> dict:
    import json
    import os
    import platform
    import subprocess

    import pytest

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's allocator only")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("MALLOC_MMAP_THRESHOLD_", "ADDRESS_COMPLETION_MMAP_THRESHOLD")}
    result = subprocess.run([sys.executable, "-c", _HEAP_PROBE, mode], capture_output=True, text=True,
                            env={**environment, **env}, check=True)
    return json.loads(result.stdout)


def test_freed_activation_sized_blocks_go_back_to_the_os_once_training_set_the_threshold():
    """Without the setting glibc serves a 4 MiB block from its heap once a bigger mapped block was freed (what
    kept ~1.5 GB resident after training step 1); with it the block is mapped, so free returns it."""
    assert _heap_probe("leave") == {"applied": None, "mapped": 0}
    assert _heap_probe("apply") == {"applied": 1 << 20, "mapped": 1}


def test_the_threshold_variable_can_switch_it_off_and_a_bad_value_is_named(monkeypatch):
    import pytest

    from address_completion.errors import ConfigError
    from address_completion.runtime import release_freed_memory

    assert _heap_probe("apply", ADDRESS_COMPLETION_MMAP_THRESHOLD="0") == {"applied": None, "mapped": 0}
    assert _heap_probe("apply", MALLOC_MMAP_THRESHOLD_="33554432") == {"applied": None, "mapped": 0}  # user's wins
    monkeypatch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", "1MB")
    with pytest.raises(ConfigError, match="ADDRESS_COMPLETION_MMAP_THRESHOLD: expected a byte count .* got '1MB'"):
        release_freed_memory()
