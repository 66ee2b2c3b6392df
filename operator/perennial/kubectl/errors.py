"""Exit codes scripts can rely on, and the one error type that carries them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 1
    """Bad arguments, or a request the object's state refuses (a version that cannot be
    promoted, no previous version to roll back to)."""
    NOT_FOUND = 2
    """The ModelDeployment does not exist in the namespace (or Perennial's CRDs are not installed)."""
    FORBIDDEN = 3
    """The API server refused the credentials (401) or the request (403: RBAC)."""
    API_ERROR = 4
    """Any other failure: the API server unreachable or answering an error, no usable kubeconfig."""


class PluginError(Exception):
    """A failure to report in one line, without a traceback, and exit with ``code``."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RefusedError(PluginError):
    """The object's state does not allow what was asked (exit code 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(ExitCode.USAGE, message)
