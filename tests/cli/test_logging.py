"""The CLI's log handler writes to the current sys.stderr, not the one it was created with."""

from __future__ import annotations

import io
import logging
import sys

from onnxlens.cli import _configure_logging


def test_log_lines_follow_sys_stderr(monkeypatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    _configure_logging(False)
    logging.getLogger("onnxlens").warning("one")
    first.close()  # as pytest's capture does between tests
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("onnxlens").warning("two")
    assert second.getvalue() == "two\n"
