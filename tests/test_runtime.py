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


_HEAP_PROBE = r"""
import json, sys
from address_completion.runtime import release_freed_memory
from heap_probe import activation_block_is_mapped

applied = release_freed_memory() if sys.argv[1] == "apply" else None
print(json.dumps({"applied": applied, "mapped": activation_block_is_mapped()}))
"""


def _heap_probe(mode: str, **env: str) -> dict:
    import json

    from heap_probe import run_probe

    return json.loads(run_probe(_HEAP_PROBE, mode, **env))


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
