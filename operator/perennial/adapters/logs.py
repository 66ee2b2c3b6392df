"""Log output of ``perennial run``: text lines, or one JSON object per line for log pipelines.

``PERENNIAL_LOG_FORMAT=json`` turns every record — the operator's own, kopf's, aiohttp's,
Python warnings — into one line of JSON on stderr::

    {"timestamp": "2026-11-20T15:37:41.123456+00:00", "severity": "info",
     "logger": "perennial.controllers.trainingjob", "message": "...",
     "object": {"kind": "TrainingJob", "namespace": "ml", "name": "churn-v7"}}

``object`` is there when the record is about one object: kopf's per-object loggers carry
it already (``k8s_ref``); the operator's own modules pass it with ``extra``::

    logger.info("TrainingJob %s/%s finished: %s", namespace, name, phase, extra=logs.about(body))
    logger.exception("reconcile failed", extra=logs.about_object("ModelDeployment", namespace, name))

The text format is kopf's (``[time] logger [LEVEL] message``), with ``[namespace/name]``
in front of the message of a record about an object. The keys ``timestamp``, ``severity``,
``message`` and ``object`` are the ones kopf's own JSON format uses, so a pipeline sees
one schema whoever logged the line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

OBJECT_KEY = "object"
TEXT_FORMAT = "[%(asctime)s] %(name)-20.20s [%(levelname)-8.8s] %(message)s"
FORMATS = ("text", "json")


def object_ref(obj: Mapping[str, Any]) -> dict[str, str]:
    """``{kind, namespace, name}`` of a Kubernetes object's body, or of a reference that has those keys."""
    metadata = obj.get("metadata")
    source: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else obj
    ref = {"kind": obj.get("kind"), "namespace": source.get("namespace"), "name": source.get("name")}
    return {key: str(value) for key, value in ref.items() if value}


def about(body: Mapping[str, Any]) -> dict[str, Any]:
    """``extra=`` for a log call about the object whose body (or reference) this is."""
    return {OBJECT_KEY: object_ref(body)}


def about_object(kind: str, namespace: str | None, name: str) -> dict[str, Any]:
    """``extra=`` for a log call about an object known by kind, namespace and name."""
    return {OBJECT_KEY: object_ref({"kind": kind, "namespace": namespace, "name": name})}


def record_object(record: logging.LogRecord) -> dict[str, str] | None:
    """The object a record is about: ``extra={"object": ...}``, else kopf's ``k8s_ref``."""
    for attribute in (OBJECT_KEY, "k8s_ref"):
        value = getattr(record, attribute, None)
        if isinstance(value, Mapping):
            ref = object_ref(value)
            if ref:
                return ref
    return None


def _severity(levelno: int) -> str:
    # kopf's words, so kopf's and Perennial's lines agree.
    if levelno <= logging.DEBUG:
        return "debug"
    if levelno <= logging.INFO:
        return "info"
    if levelno <= logging.WARNING:
        return "warn"
    if levelno <= logging.ERROR:
        return "error"
    return "fatal"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks are a string field)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "severity": _severity(record.levelno),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = record_object(record)
        if ref is not None:
            line[OBJECT_KEY] = ref
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """kopf's text format, the message prefixed with ``[namespace/name]`` for a record about an object."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        ref = record_object(record)
        if ref is None:
            return super().formatMessage(record)
        where = "/".join(part for part in (ref.get("namespace"), ref.get("name")) if part)
        original = record.message
        record.message = f"[{where}] {original}"
        try:
            return super().formatMessage(record)
        finally:
            record.message = original


class _PerennialHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure() installed, so configuring again replaces it."""


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}: use one of {', '.join(FORMATS)}")


def configure(level: str, log_format: str, stream: Any = None) -> None:
    """Send every record at ``level`` or above to ``stream`` (stderr) in ``log_format``.

    One handler on the root logger, so kopf's, aiohttp's and the operator's own loggers
    all come out in one format; Python warnings are routed through logging too.
    """
    handler = _PerennialHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _PerennialHandler)]
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    # asyncio's debug chatter only when debugging; its warnings and errors always.
    logging.getLogger("asyncio").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # kopf says "Handler 'x' succeeded" at INFO for every watch event: with all handlers
    # being watch -> cache -> queue, that is one line per event of every watched object
    # (tens of thousands at N=1000) and says nothing the reconciles' own lines do not.
    # Its warnings and errors (a handler that raised) always come through.
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
