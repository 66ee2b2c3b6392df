"""Run the churn example (examples/churn) as plain processes: its trainer, model server and traffic generator."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

CHURN = Path(__file__).resolve().parents[2] / "examples" / "churn"
# Small and quick: enough rows for stable metrics, few boosting rounds.
SMALL = {"rows": "1200", "max_iter": "30"}
# Straight to the local process, never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without any PERENNIAL_* or TRAFFIC_* of its own, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PERENNIAL_", "TRAFFIC_"))}
    return {**base, "PYTHONDONTWRITEBYTECODE": "1", **extra}


@dataclass(frozen=True)
class TrainerRun:
    returncode: int
    stderr: str
    termination_message: str | None

    @property
    def metrics(self) -> dict[str, float]:
        assert self.returncode == 0, self.stderr
        assert self.termination_message is not None
        metrics: dict[str, float] = json.loads(self.termination_message)["metrics"]
        return metrics


def train(tmp: Path, env: Mapping[str, str], *, name: str = "run") -> TrainerRun:
    """``python -m trainer`` with ``env`` (PERENNIAL_*), the termination log at ``tmp/<name>.termination-log``."""
    log = tmp / f"{name}.termination-log"
    done = subprocess.run(
        [sys.executable, "-m", "trainer"],
        cwd=CHURN,
        env=_env({"TERMINATION_MESSAGE_PATH": str(log), **env}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return TrainerRun(done.returncode, done.stderr, log.read_text() if log.exists() else None)


def training_env(
    output: Path, window: tuple[str, str], *, version: str = "1", hyperparameters: Mapping[str, str] = SMALL
) -> dict[str, str]:
    return {
        "PERENNIAL_MODEL": "churn",
        "PERENNIAL_VERSION": version,
        "PERENNIAL_MODEL_URI": output.as_uri(),
        "PERENNIAL_DATASET_URI": "synthetic://churn",
        "PERENNIAL_DATASET_VERSION": window[1][:10],
        "PERENNIAL_DATA_WINDOW_START": window[0],
        "PERENNIAL_DATA_WINDOW_END": window[1],
        "PERENNIAL_HYPERPARAMETERS": json.dumps(dict(hyperparameters)),
        "PERENNIAL_TRIGGER": "{}",
    }


# ---------------------------------------------------------------- HTTP
def http(method: str, url: str, body: Any = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def metrics_text(self) -> str:
        status, text = http("GET", self.url + "/metrics")
        assert status == 200, text
        return text

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """/metrics as {sample name: [(labels, value)]}."""
        text = self.metrics_text()
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples


@contextmanager
def model_server(tmp: Path, env: Mapping[str, str]) -> Iterator[ServerProcess]:
    """``python -m server`` on a free port of 127.0.0.1; stopped (SIGTERM) on exit."""
    log = tmp / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "server"],
            cwd=CHURN,
            env=_env({"HOST": "127.0.0.1", "PORT": "0", **env}),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on (http://\S+)", log.read_text())):
            assert process.poll() is None, f"the server exited ({process.returncode}):\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the server did not listen within 30s:\n{log.read_text()}"
            time.sleep(0.05)
        yield ServerProcess(process, found.group(1), log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(server: ServerProcess, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status, body = http("GET", server.url + "/ready")
        if status == 200:
            return body
        assert time.monotonic() < deadline, f"not ready after {timeout}s: {status} {body}\n{server.log.read_text()}"
        time.sleep(0.05)


def traffic(url: str, *args: str) -> tuple[dict[str, Any], float]:
    """``python -m traffic --url url args``: its summary line and how long it ran."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "traffic", "--url", url, *args],
        cwd=CHURN,
        env=_env({}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary, elapsed
