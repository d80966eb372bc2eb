"""The application log: JSON lines (structlog over the standard library's logging), and
the last line of defence against a national id in it.

Every record, the portal's own and every library's, goes through `RedactNationalIds` on
its way to a handler (settings.LOGGING puts it on each handler): any run of eleven digits
(lib/redact.py) in the message, its arguments, the exception's traceback or a structlog
event's values is replaced. The code should never log one in the first place; this is for
the line someone forgets (a library's error message that quotes a URL, say).

Inside a request every line carries its request id (RequestIdMiddleware binds it with
structlog's contextvars); the request's own line (accounts/request_log.py) adds the user,
the organisation, the route, the status and the time taken.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog

from pjd_portal.lib.redact import redact_national_ids


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_national_ids(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item) for item in value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_national_ids(str(value))


class RedactNationalIds(logging.Filter):
    """Take any eleven-digit run out of a record before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):  # a structlog event, wrapped for the formatter
            event = dict(record.msg)
            exc_info = event.pop("exc_info", None)
            if exc_info:
                event["exception"] = _traceback_text(exc_info)
            record.msg = _redacted(event)
        else:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                message = f"{record.msg} {record.args!r}"
            record.msg = redact_national_ids(message)
            record.args = None
        if record.exc_info:
            # The traceback is rendered here, redacted, into the message: a formatter
            # would otherwise render it after this filter has run.
            text = redact_national_ids("".join(traceback.format_exception(*record.exc_info)))
            if isinstance(record.msg, dict):
                record.msg["exception"] = text
            else:
                record.msg = f"{record.msg}\n{text.rstrip()}"
            record.exc_info = None
            record.exc_text = None
        if record.stack_info:
            record.stack_info = redact_national_ids(record.stack_info)
        return True


class RouteNotPath(logging.Filter):
    """Django's own lines about an answer ("Not Found: /pasient/<handle>/grunnlag/") name the
    route instead of the path: a path holds handles and document ids, which the log needs
    no more than the request line (accounts/request_log.py) does. On the django.request
    logger, which writes them (django.utils.log.log_response passes the request along)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        path = getattr(request, "path", None)
        if path and isinstance(record.args, tuple):
            match = getattr(request, "resolver_match", None)
            route = (
                f"route {match.view_name}" if match is not None and match.view_name else "an unknown route"
            )
            escaped = path.encode("unicode_escape").decode("ascii")
            record.args = tuple(route if arg in (path, escaped) else arg for arg in record.args)
        return True


def _traceback_text(exc_info: Any) -> str:
    if exc_info is True:
        return ""
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    return redact_national_ids("".join(traceback.format_exception(*exc_info)))


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The same, as structlog's last step before rendering (whatever a processor added)."""

    return {key: _redacted(value) for key, value in event.items()}


# Every record's common fields, for the standard library's records and structlog's alike.
SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(fmt: str) -> structlog.stdlib.ProcessorFormatter:
    """`json` (production: one JSON object a line) or `plain` (development: key=value)."""

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    )


def configure_structlog() -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
