"""The operator starts against the real API server, in-process and as `perennial run`."""

from __future__ import annotations

from tests.support.operator import RunningOperator


def _assert_serves_metrics(operator: RunningOperator) -> None:
    text = operator.metrics_text()
    assert "perennial_build_info{python_version=" in text
    assert "process_resident_memory_bytes" in text


def test_in_process_operator_serves_health_and_metrics(operator_in_process: RunningOperator) -> None:
    _assert_serves_metrics(operator_in_process)


def test_console_script_operator_serves_health_and_metrics(operator_subprocess: RunningOperator) -> None:
    _assert_serves_metrics(operator_subprocess)
    assert operator_subprocess.log_path is not None
    assert "perennial started" in operator_subprocess.log_path.read_text()
