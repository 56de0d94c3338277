"""Filters of the portal's log configuration (portal/settings.py LOGGING)."""

import logging


class ClientErrorWithoutTraceback(logging.Filter):
    """Django logs a 403 (and a 400) with the exception's traceback; a refused request is an
    everyday answer, not a bug, so it stays one WARNING line. 5xx keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
