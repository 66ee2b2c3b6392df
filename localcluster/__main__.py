"""python -m localcluster {up,down,status,build,demo} — the local control plane without Docker."""

from __future__ import annotations

import argparse
import sys

from localcluster import build, demo
from localcluster.cluster import PROFILE_COMPONENTS, REPO_ROOT, LocalCluster
from localcluster.errors import ClusterError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "build what is missing, start the cluster, print the path of cluster.env"),
        ("build", "only build and cache the binaries"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--profile", choices=sorted(PROFILE_COMPONENTS), default="full")
    commands.add_parser("down", help="stop every recorded process and delete the cluster state")
    commands.add_parser("status", help="show the recorded processes")
    demo_command = commands.add_parser("demo", help="bring up the local cluster and show the loop working")
    demo_command.add_argument(
        "--scenario",
        choices=demo.SCENARIOS,
        default="loop",
        help="loop: train, serve, drift, retrain (the default); canary: a canary rollout that passes, then one aborted",
    )
    demo_command.add_argument(
        "--profile",
        choices=demo.PROFILES,
        default="full",
        help="full: pods simulated by kwok (the default); real: the loop with pods that really run on a real node",
    )
    commands.add_parser(
        "operator-kubeconfig",
        help="install the operator's ServiceAccount and RBAC from manifests/, print the path of its kubeconfig",
    )
    args = parser.parse_args(argv)

    if args.command == "demo":
        return demo.main(args.scenario, args.profile)
    try:
        if args.command == "up":
            env_file = LocalCluster().up(args.profile)
            print(env_file)
        elif args.command == "build":
            for name, path in sorted(build.ensure_binaries(args.profile).items()):
                if name in build.PROFILE_BINARIES[args.profile]:
                    print(f"{name:<24} {path}")
            if "containerd" in build.PROFILE_BINARIES[args.profile]:
                # The `real` node also runs the operator's image, built from the Dockerfile.
                image, archive = build.operator_image(REPO_ROOT)
                print(f"{image:<24} {archive}")
                for image, archive in build.churn_images(REPO_ROOT).values():
                    print(f"{image:<24} {archive}")
        elif args.command == "down":
            LocalCluster().down()
        elif args.command == "operator-kubeconfig":
            print(LocalCluster().operator_kubeconfig())
        else:
            print(LocalCluster().status())
    except ClusterError as error:
        print(f"localcluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
