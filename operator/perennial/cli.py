"""The ``perennial`` command: ``perennial run`` (the operator) and ``perennial version``."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys

from perennial import __version__
from perennial.settings import InvalidSettingsError, Settings, from_environment


def _version_text() -> str:
    parts = [f"perennial {__version__}"]
    for dependency in ("kopf", "kubernetes", "pydantic", "prometheus-client"):
        parts.append(f"{dependency} {importlib.metadata.version(dependency)}")
    parts.append(f"python {sys.version.split()[0]}")
    return "\n".join(parts)


def _run(config: Settings) -> int:
    # Imported here so `perennial version` stays fast and needs no cluster libraries.
    import kopf

    import perennial.main  # noqa: F401 - registers the handlers

    kopf.configure(
        debug=config.log_level == "DEBUG",
        verbose=config.log_level in ("DEBUG", "INFO"),
        quiet=config.log_level == "ERROR",
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
    )
    kopf.run(
        # One replica by design (Deployment strategy Recreate): no peering objects needed.
        standalone=True,
        clusterwide=config.clusterwide,
        namespaces=list(config.namespaces),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="perennial",
        description="Perennial: continuous training of ML models on Kubernetes.",
        epilog="Settings come from PERENNIAL_* environment variables (see the README).",
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
        print(f"perennial: invalid setting: {error}", file=sys.stderr)
        return 2
    return _run(config)


if __name__ == "__main__":
    sys.exit(main())
