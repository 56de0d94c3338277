"""Log records as JSON lines (LOG_FORMAT=json, production's default).

One object per line: `time` (UTC, RFC 3339), `level`, `logger`, `message`, `request_id`
(portal.observability.requestid), and `exception` when the record has a traceback. Only these
fields: a record's other `extra` attributes (a request object, a task's arguments) are never
written, so a JSON line says no more than the plain one does.
"""

import datetime as dt
import json
import logging


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_django_logging(**kwargs) -> None:
    """Celery's `setup_logging` signal: a worker and beat log through the portal's LOGGING (JSON
    lines with the request id, or plain), not Celery's own format; LOG_LEVEL sets the level."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
