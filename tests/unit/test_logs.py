"""Log formats: one JSON object per line, carrying the object a record is about."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from perennial.adapters import logs
from perennial.cli import main

BODY = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "churn-v7", "namespace": "ml", "uid": "1234"},
    "spec": {"model": "churn"},
}


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Leave the root logger as the test found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in ("asyncio", "kopf.objects")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, previous in quieted.items():
        logging.getLogger(name).setLevel(previous)
    logging.captureWarnings(False)


def _record(message: str = "finished: %s", *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("perennial.controllers.trainingjob", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_has_timestamp_severity_logger_and_message() -> None:
    line = json.loads(logs.JsonFormatter().format(_record("finished: %s", "Succeeded")))
    assert line["message"] == "finished: Succeeded"
    assert line["severity"] == "info"
    assert line["logger"] == "perennial.controllers.trainingjob"
    assert line["timestamp"].endswith("+00:00")
    assert "object" not in line


def test_json_line_carries_the_object_passed_with_extra() -> None:
    record = _record(**logs.about(BODY))
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["object"] == {"kind": "TrainingJob", "namespace": "ml", "name": "churn-v7"}


def test_json_line_carries_the_object_of_kopfs_per_object_loggers() -> None:
    ref = {"apiVersion": "perennial.dev/v1alpha1", "kind": "DriftPolicy", "name": "d", "uid": "u", "namespace": "ml"}
    line = json.loads(logs.JsonFormatter().format(_record(k8s_ref=ref, k8s_skip=True, settings=object())))
    assert line["object"] == {"kind": "DriftPolicy", "namespace": "ml", "name": "d"}


def test_about_object_builds_the_reference_from_kind_namespace_and_name() -> None:
    assert logs.about_object("ModelDeployment", "ml", "churn") == {
        "object": {"kind": "ModelDeployment", "namespace": "ml", "name": "churn"}
    }


def test_a_traceback_stays_on_the_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("perennial", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["severity"] == "error"
    assert "RuntimeError: boom" in line["exc_info"]


def test_text_format_prefixes_the_object() -> None:
    text = logs.TextFormatter().format(_record("finished: %s", "Failed", **logs.about(BODY)))
    assert text.endswith("[ml/churn-v7] finished: Failed")
    assert "[INFO    ]" in text
    plain = logs.TextFormatter().format(_record("started"))
    assert plain.endswith("] started")


@pytest.mark.usefixtures("root_logging")
def test_configure_sends_every_logger_through_one_json_handler_at_the_exact_level() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    logs.configure("INFO", "json", stream)  # configuring twice installs one handler
    logging.getLogger("kopf.objects").warning("Handler failed.", extra={"k8s_ref": {"kind": "X", "name": "n"}})
    logging.getLogger("perennial.adapters.workqueue").debug("not at INFO")
    logging.getLogger("aiohttp.access").warning("a warning")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["Handler failed.", "a warning"]
    assert lines[0]["object"] == {"kind": "X", "name": "n"}


@pytest.mark.usefixtures("root_logging")
def test_kopfs_per_event_handler_chatter_shows_only_when_debugging() -> None:
    for level, expected in (("INFO", []), ("DEBUG", ["Handler 'job_event' succeeded."])):
        stream = io.StringIO()
        logs.configure(level, "json", stream)
        logging.getLogger("kopf.objects").info("Handler 'job_event' succeeded.")
        assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == expected


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        logs.make_formatter("xml")


def test_invalid_settings_in_json_mode_are_reported_as_one_json_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERENNIAL_LOG_FORMAT", "json")
    monkeypatch.setenv("PERENNIAL_METRICS_PORT", "not-a-port")
    assert main(["run"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    error = json.loads(line)
    assert error["severity"] == "fatal"
    assert "PERENNIAL_METRICS_PORT" in error["message"]
