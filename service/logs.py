"""The service's log: one line per event, JSON when read by a machine, plain tracebacks.

structlog's default renders exceptions with rich, local variables included: about a
megabyte and several seconds per failure, on the event loop, with whatever the
request held (keys, file names) written to disk. Here a traceback is plain text.
"""

from __future__ import annotations

import sys

import structlog


def configure_logging() -> None:
    """Set structlog up once for the process; later calls change nothing."""
    if structlog.is_configured():
        return
    console = sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *([] if console else [structlog.processors.format_exc_info]),
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
