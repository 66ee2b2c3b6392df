"""The plugin's API requests: the user's kubeconfig, the operator's client, errors in words.

Credentials and transport are the operator's own (``Login``, ``KubeClient``); what differs
is whose they are: the user's kubeconfig (``--kubeconfig``, ``KUBECONFIG``,
``~/.kube/config``, ``--context``), read even inside a pod when there is one, as kubectl
does, and the in-cluster ServiceAccount only when there is none. Every failure becomes a
``PluginError`` naming what was attempted, with its exit code.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from perennial import __version__
from perennial.adapters.kube import DRIFT_POLICIES, MODEL_DEPLOYMENTS, ApiError, KubeClient, Resource
from perennial.adapters.login import Login, LoginError, in_cluster
from perennial.kubectl.errors import ExitCode, PluginError

# `kubectl get -o yaml --show-managed-fields` names this as the writer of what the plugin changed.
FIELD_MANAGER = "kubectl-perennial"
USER_AGENT = f"kubectl-perennial/{__version__}"
DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

T = TypeVar("T")


class ConflictError(PluginError):
    """The object changed between the read and a guarded write (409): read again and retry."""

    def __init__(self, message: str) -> None:
        super().__init__(ExitCode.API_ERROR, message)


@dataclass(frozen=True)
class Connection:
    login: Login
    namespace: str
    """The namespace the commands act in: -n, else the context's, else default."""
    source: str
    """Where the credentials come from, for messages: the kubeconfig path(s) or "in-cluster"."""


# ---------------------------------------------------------------- which cluster, as whom
def _kubeconfig_files(explicit: str | None) -> tuple[str, list[str]]:
    """The kubeconfig path list as given (flag, KUBECONFIG, default) and the files of it that exist."""
    given = explicit or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    files = [os.path.expanduser(p) for p in given.split(os.pathsep) if p]
    return given, [f for f in files if Path(f).is_file()]


def context_namespace(files: list[str], context: str | None) -> str | None:
    """The namespace of the context (``--context`` or the current one) in merged kubeconfig files.

    Merged as the official client merges them (``Login`` reads them the same way): the first
    definition of a context wins, the last ``current-context`` set wins.
    """
    contexts: dict[str, Mapping[str, Any]] = {}
    current = None
    for path in files:
        try:
            document = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise PluginError(ExitCode.API_ERROR, f"cannot read kubeconfig {path}: {error}") from error
        if not isinstance(document, Mapping):
            raise PluginError(ExitCode.API_ERROR, f"cannot read kubeconfig {path}: not a kubeconfig")
        for entry in document.get("contexts") or []:
            if isinstance(entry, Mapping) and entry.get("name") is not None:
                contexts.setdefault(str(entry["name"]), entry.get("context") or {})
        if document.get("current-context"):
            current = str(document["current-context"])
    name = context or current
    if not name:
        raise PluginError(ExitCode.API_ERROR, f"no current context in {os.pathsep.join(files)}: pass --context")
    if name not in contexts:
        raise PluginError(ExitCode.API_ERROR, f'context "{name}" is not in {os.pathsep.join(files)}')
    namespace = contexts[name].get("namespace")
    return str(namespace) if namespace else None


def _pod_namespace() -> str | None:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Connection:
    given, files = _kubeconfig_files(kubeconfig)
    if not files:
        if in_cluster() and not kubeconfig and not context:
            return Connection(Login(), namespace or _pod_namespace() or "default", "in-cluster")
        raise PluginError(
            ExitCode.API_ERROR,
            f"no kubeconfig at {given}: set KUBECONFIG or pass --kubeconfig",
        )
    found = context_namespace(files, context)
    login = Login(os.pathsep.join(files), context, in_cluster_first=False)
    return Connection(login, namespace or found or "default", os.pathsep.join(files))


# ---------------------------------------------------------------- errors
def _label(resource: Resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def api_failure(error: ApiError, verb: str, resource: Resource, namespace: str, name: str | None) -> PluginError:
    """What a refused request means for the user, with its exit code."""
    kind = resource.plural.removesuffix("s")
    what = f'{kind} "{name}"' if name else _label(resource)
    if error.status == 404:
        if name and "could not find the requested resource" not in error.message:
            return PluginError(ExitCode.NOT_FOUND, f'{kind} "{name}" not found in namespace "{namespace}"')
        return PluginError(
            ExitCode.NOT_FOUND,
            f"the API server does not serve {_label(resource)}: are Perennial's CRDs installed?",
        )
    if error.status == 401:
        return PluginError(
            ExitCode.FORBIDDEN,
            f"the API server refused your credentials (401 Unauthorized): check the kubeconfig's user"
            f" (an expired token?): {error.message}",
        )
    if error.status == 403:
        target = f' "{name}"' if name else ""
        # The server's message starts by repeating the object ("... is forbidden: "); keep who was refused what.
        detail = error.message.split("is forbidden: ", 1)[-1]
        return PluginError(
            ExitCode.FORBIDDEN,
            f'forbidden: you may not {verb} {_label(resource)}{target} in namespace "{namespace}": {detail}'
            f" (check with: kubectl auth can-i {verb} {_label(resource)} -n {namespace})",
        )
    if error.status == 409:
        return ConflictError(f"{what} changed while it was being updated: {error.message}")
    if error.status == 422:
        return PluginError(ExitCode.USAGE, f"the API server refused the change to {what}: {error.message}")
    return PluginError(
        ExitCode.API_ERROR, f"{verb} {what} failed: {error.status} {error.reason}: {error.message}".rstrip(": ")
    )


# ---------------------------------------------------------------- requests
class Session:
    """The requests the commands make, in one namespace, as the user."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.namespace = connection.namespace
        self.client = KubeClient(connection.login, max_in_flight=4, user_agent=USER_AGENT)

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, verb: str, resource: Resource, name: str | None, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except ApiError as error:
            raise api_failure(error, verb, resource, self.namespace, name) from error
        except LoginError as error:
            raise PluginError(ExitCode.API_ERROR, str(error)) from error
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            server = await self._server()
            detail = str(error) or type(error).__name__
            raise PluginError(ExitCode.API_ERROR, f"cannot reach the API server{server}: {detail}") from error

    async def _server(self) -> str:
        try:
            return f" at {(await self.connection.login.credentials()).server}"
        except Exception:
            return ""

    async def get_model(self, name: str) -> dict[str, Any]:
        return await self._call(
            "get", MODEL_DEPLOYMENTS, name, lambda: self.client.get(MODEL_DEPLOYMENTS, self.namespace, name)
        )

    async def list_policies(self) -> list[dict[str, Any]]:
        return await self._call(
            "list", DRIFT_POLICIES, None, lambda: self.client.list(DRIFT_POLICIES, self.namespace, "")
        )

    async def patch_model(self, name: str, patch: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """A JSON merge patch, written as ``kubectl-perennial`` (``dry_run``: checked by the server, not stored)."""
        params = {"fieldManager": FIELD_MANAGER}
        if dry_run:
            params["dryRun"] = "All"
        path = MODEL_DEPLOYMENTS.path(self.namespace, name)
        return await self._call(
            "patch",
            MODEL_DEPLOYMENTS,
            name,
            lambda: self.client.request(
                "PATCH", path, body=patch, params=params, content_type="application/merge-patch+json"
            ),
        )
