"""The one error type of the local cluster tooling, and log tails for its messages."""

from __future__ import annotations

from pathlib import Path


class ClusterError(RuntimeError):
    """A build or start step failed; the message names the step and shows its log tail."""


def tail(path: Path, lines: int = 30) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join("    " + line for line in content[-lines:])
