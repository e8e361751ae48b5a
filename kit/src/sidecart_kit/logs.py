"""One JSON log line per event, from structlog and the standard library alike, each carrying the service, the level,
the request id and the trace context of the request it belongs to."""

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from sidecart_kit.requests import current_request_id, current_trace_ids

# Libraries that log every call at INFO: the access log line already says what happened (and state-key URLs can
# hold e-mail addresses).
_CHATTY = ("httpx", "httpcore", "asgi_correlation_id")


def get_logger(name: str) -> Any:
    """The logger every module uses: `log = get_logger(__name__)`."""
    return structlog.get_logger(name)


class _Service:
    """The name every line carries. Read when a line is written, not when a logger is first used: structlog caches
    each logger's processors on first use, so a name captured then would outlive a later configure_logging."""

    name = "unknown"


def _add_request_context(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    event.setdefault("service", _Service.name)
    request_id = current_request_id()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    trace_id, span_id = current_trace_ids()
    if trace_id is not None:
        event.setdefault("trace_id", trace_id)
        event.setdefault("span_id", span_id)
    return event


def configure_logging(level: str, service: str) -> None:
    """structlog and the standard library (uvicorn, the SDKs) both write one JSON object per line to stdout."""
    _Service.name = service
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # The kit's access log writes one line per request, with its id; uvicorn's own would say it twice.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
