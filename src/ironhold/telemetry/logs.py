"""JSON log lines (one object a line), carrying the request id; never prompt or completion text.

A server process writes its lines through one ``LineSink``: lines are buffered and written with
one ``write`` per turn of the event loop (a busy gateway logs a line per request, and a write and
flush each cost a system call). The access line skips ``logging``'s machinery (a record, the
handler's lock, the formatter: ~25 µs of a ~350 µs request at saturation) and goes to the sink
directly, as the same JSON the formatter writes; without a sink (text format, or a library
user's own logging set-up) it is an ordinary log record.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    _second = -1
    _second_text = ""

    def timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def entry(self, created: float, level: str, logger: str, msg: str) -> dict[str, Any]:
        """A line's leading fields, in order; the record's own fields follow them."""
        return {"ts": self.timestamp(created), "level": level, "logger": logger, "msg": msg}

    def format(self, record: logging.LogRecord) -> str:
        entry = self.entry(record.created, record.levelname.lower(), record.name,
                           record.getMessage())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # For operators: the code path, not request content (locals are never printed).
            entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class LineSink:
    """Buffers whole lines and writes them to ``stream`` once per turn of the running event loop
    (at once where no loop runs, and at exit), in the order they came."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self._lines: list[str] = []
        self._scheduled = False
        #: Worker threads log too (the audit log's commits, scans off the loop).
        self._lock = threading.Lock()
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            if self._scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop in this thread: now
                loop = None
            else:
                self._scheduled = True
        if loop is None:
            self.flush()
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            self._scheduled = False
            if not self._lines:
                return
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: logging must not fail a request
            pass


class _SinkHandler(logging.Handler):
    def __init__(self, sink: LineSink):
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.format(record))
        except Exception:
            self.handleError(record)


_access = logging.getLogger("ironhold.access")
#: Set by ``configure_logging`` for JSON lines: where access lines go without a log record.
_json_sink: tuple[LineSink, JsonFormatter] | None = None


def access_line(fields: Mapping[str, Any]) -> None:
    """One finished request's access line (msg "request"), at level info."""
    if _json_sink is None or not _access.isEnabledFor(logging.INFO):
        _access.info("request", extra=fields)
        return
    sink, formatter = _json_sink
    entry = formatter.entry(time.time(), "info", _access.name, "request")
    entry.update(fields)
    sink.write(orjson.dumps(entry, default=str).decode())


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Set up Ironhold's loggers for a server process (called by the CLI, never on import)."""
    # The logging HOWTO's "Optimization" settings: no caller lookup (a stack walk per record),
    # no thread or process names. With one access line per request this is ~half its cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _json_sink
    sink = LineSink(sys.stderr)
    handler = _SinkHandler(sink)
    if fmt == "json":
        formatter = JsonFormatter()
        handler.setFormatter(formatter)
        _json_sink = (sink, formatter)
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        _json_sink = None
    root = logging.getLogger("ironhold")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
