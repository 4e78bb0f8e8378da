"""The service's log: one line per event, JSON when read by a machine, plain tracebacks.

structlog's default renders exceptions with rich, local variables included: about a
megabyte and several seconds per failure, on the event loop, with whatever the
request held (keys, file names) written to disk. Here a traceback is plain text.

Every line carries what structlog's context holds (a request's `request_id`), and, in
`locker serve`, the standard library's loggers (uvicorn's, minio's, urllib3's) are
written the same way, so a log shipper reads one format.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def _renderer(console: bool) -> structlog.typing.Processor:
    if console:
        return structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    return structlog.processors.JSONRenderer()


def _shared(console: bool) -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *([] if console else [structlog.processors.format_exc_info]),
    ]


def configure_logging() -> None:
    """Set structlog up once for the process; later calls change nothing."""
    if structlog.is_configured():
        return
    console = sys.stderr.isatty()
    structlog.configure(
        processors=[*_shared(console), _renderer(console)],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def route_standard_logging(stream: TextIO | None = None, *, console: bool | None = None) -> None:
    """Write the standard library's log records as structlog writes its own (JSON
    unless on a terminal), to `stream` (standard error by default): for a server process,
    whose libraries log through `logging`. Replaces the root logger's handlers."""
    console = sys.stderr.isatty() if console is None else console
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared(console)],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _renderer(console),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
