"""Logging: human-readable lines by default, JSON lines with ``--log-format json``. A filter redacts every
registered secret from every record, as a last line of defence (secrets are never logged on purpose)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

LOGGER = "mim"
_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact ``value`` wherever it would appear in a log record."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """Replaces every registered secret in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and any ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["error"] = redact(self.formatException(record.exc_info).splitlines()[-1])
        return redact(json.dumps(data, default=str))


class TextFormatter(logging.Formatter):
    """``2026-03-02T10:00:00Z info message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{when} {record.levelname.lower():<7} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return redact(line)


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> logging.Logger:
    """Configure the ``mim`` logger (stderr)."""
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
