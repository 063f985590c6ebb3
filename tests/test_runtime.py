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
