"""Prometheus' pod targets on the `real` profile, kept in sync with the API server.

The Debian build of Prometheus the local cluster runs has no ``kubernetes_sd_configs``
("field kubernetes_sd_configs not found in type config.ScrapeConfig": Debian leaves the
Kubernetes discovery out), so this process does its part: every ``--interval`` seconds it
lists pods as a read-only ServiceAccount (get/list/watch pods, nothing else) and rewrites a
``file_sd`` file Prometheus watches. A target is a running pod's IP on the node's bridge
(on this machine only) and the port of

- a container port named ``metrics`` (the operator's chart), or
- a container port named ``http`` of a pod labelled ``perennial.dev/model`` (model servers,
  which serve ``/metrics`` there),

labelled with the pod's ``namespace`` and ``pod`` (a model server's series carry their own
``model`` and ``version``).

    python -m localcluster.podtargets --server URL --ca CA --token-file F --output FILE
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

MODEL_LABEL = "perennial.dev/model"


def targets(pods: dict[str, Any]) -> list[dict[str, Any]]:
    """The file_sd groups of a PodList (sorted, so an unchanged cluster gives the same file)."""
    groups = []
    for pod in pods.get("items") or []:
        metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP") or metadata.get("deletionTimestamp"):
            continue
        labels = metadata.get("labels") or {}
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                name = port.get("name")
                if name == "metrics" or (name == "http" and labels.get(MODEL_LABEL)):
                    groups.append(
                        {
                            "targets": [f"{status['podIP']}:{port['containerPort']}"],
                            "labels": {"namespace": metadata["namespace"], "pod": metadata["name"]},
                        }
                    )
    return sorted(groups, key=lambda group: (group["labels"]["namespace"], group["labels"]["pod"], group["targets"]))


def _list_pods(server: str, context: ssl.SSLContext, token: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{server}/api/v1/pods", headers={"Authorization": f"Bearer {token}"})
    # The API server is on this machine: no proxy, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    with opener.open(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _write(path: Path, groups: list[dict[str, Any]]) -> None:
    content = json.dumps(groups, indent=1) + "\n"
    if path.exists() and path.read_text() == content:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.podtargets")
    parser.add_argument("--server", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    context = ssl.create_default_context(cafile=args.ca)
    token = Path(args.token_file).read_text().strip()
    failing, first = False, True
    while True:
        try:
            groups = targets(_list_pods(args.server, context, token))
            _write(args.output, groups)
            if failing or first:
                print(f"listed pods: {len(groups)} targets; again every {args.interval:g}s", flush=True)
            failing = first = False
        except Exception as error:  # keep the last targets, say why, try again
            if not failing:
                print(f"cannot list pods: {error}", flush=True)
            failing = True
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
