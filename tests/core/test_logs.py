from __future__ import annotations

import logging

import orjson

from ironhold.telemetry.logs import JsonFormatter


def test_json_lines_carry_extra_fields_and_tracebacks() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("ironhold.x", logging.INFO, __file__, 1, "request", None, None)
    record.request_id = "abc"
    line = orjson.loads(formatter.format(record))
    assert line["msg"] == "request" and line["request_id"] == "abc" and line["level"] == "info"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("ironhold.x", logging.ERROR, __file__, 1, "unhandled", None,
                                   sys.exc_info())
    line = orjson.loads(formatter.format(failed))
    assert line["error"] == "ValueError: boom"
    assert "Traceback" in line["traceback"] and "raise ValueError" in line["traceback"]
