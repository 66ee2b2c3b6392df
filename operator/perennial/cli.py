"""The ``perennial`` command: ``perennial run`` (the operator) and ``perennial version``."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import sys
import types
from datetime import UTC, datetime

from perennial import __version__
from perennial.settings import InvalidSettingsError, Settings, from_environment


def _version_text() -> str:
    parts = [f"perennial {__version__}"]
    for dependency in ("kopf", "kubernetes", "aiohttp", "pydantic", "prometheus-client"):
        parts.append(f"{dependency} {importlib.metadata.version(dependency)}")
    parts.append(f"python {sys.version.split()[0]}")
    return "\n".join(parts)


def _skip_the_eager_kubernetes_package() -> None:
    """Import ``kubernetes.*`` submodules without running ``kubernetes/__init__.py``.

    That file imports the whole synchronous client (API classes, dynamic client, websocket
    streams, informers: 12 MiB of memory in a process), although the operator uses only
    ``kubernetes.aio``'s config and REST layers and kopf only two model classes (to
    recognise them in ``kopf.adopt``). A package object that knows where its submodules
    live is all the import system needs. Only for ``perennial run`` (a fresh process):
    code that imports ``kubernetes`` itself first, as the tests do, gets the whole package.
    """
    if "kubernetes" in sys.modules:
        return
    spec = importlib.util.find_spec("kubernetes")
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType("kubernetes")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["kubernetes"] = package


def _run(config: Settings) -> int:
    # Imported here so `perennial version` stays fast and needs no cluster libraries.
    _skip_the_eager_kubernetes_package()
    import kopf

    import perennial.main  # noqa: F401 - registers the handlers
    from perennial.adapters import logs

    # Our own setup rather than kopf.configure(): the level is exactly PERENNIAL_LOG_LEVEL,
    # and in JSON every line (kopf's and ours) is one object, with the object it is about.
    logs.configure(config.log_level, config.log_format)
    try:
        kopf.run(
            # No kopf peering: replicas coordinate through Perennial's own Lease
            # (perennial.adapters.leader), which only the leader's writers honour.
            standalone=True,
            clusterwide=config.clusterwide,
            namespaces=list(config.namespaces),
        )
    except Exception:
        # Logged, not printed: a JSON log pipeline gets the traceback as one line too.
        logging.getLogger("perennial").critical("perennial stopped on an unexpected error", exc_info=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="perennial",
        description="Perennial: continuous training of ML models on Kubernetes.",
        epilog="Settings come from PERENNIAL_* environment variables (see docs/operations.md, Settings).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the operator against the cluster in KUBECONFIG or in-cluster")
    commands.add_parser("version", help="print the versions of Perennial and its libraries")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(_version_text())
        return 0
    try:
        config = from_environment()
    except InvalidSettingsError as error:
        if os.environ.get("PERENNIAL_LOG_FORMAT", "").strip().lower() == "json":
            # Even the refusal to start is one JSON line for a JSON log pipeline.
            line = {
                "timestamp": datetime.now(UTC).isoformat(),
                "severity": "fatal",
                "logger": "perennial",
                "message": f"invalid setting: {error}",
            }
            print(json.dumps(line), file=sys.stderr)
        else:
            print(f"perennial: invalid setting: {error}", file=sys.stderr)
        return 2
    return _run(config)


if __name__ == "__main__":
    sys.exit(main())
