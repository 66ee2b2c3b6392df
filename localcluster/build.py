"""Build (once) and cache the binaries of the local control plane.

These machines have no Docker engine and reach only package registries, so the
control plane is compiled from the Go module proxy:

- ``k8s.io/kubernetes`` cannot be ``go install``-ed because it requires its staging
  modules at the fake version ``v0.0.0``; a small wrapper module replaces each of them
  with the published ``v0.N.M`` (kubernetes issue #79384). etcd is built inside the
  same wrapper: Kubernetes pins the etcd server module it was tested with, so both
  share one module graph and one compile cache.
- kwok and helm have no replace directives, so plain ``go install pkg@version`` works.
- Prometheus and promtool come from Debian's package, unpacked into the cache with
  ``dpkg-deb -x`` (no service is installed or started on the machine).

Binaries live in ``$PERENNIAL_CACHE`` (default ``~/.cache/perennial``) under a
directory per version, so a second run builds nothing and a version bump rebuilds
only what moved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from localcluster import versions
from localcluster.errors import ClusterError, tail

PROGRESS_INTERVAL_SECONDS = 30

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def cache_root() -> Path:
    return Path(os.environ.get("PERENNIAL_CACHE", Path.home() / ".cache" / "perennial"))


def bin_dir(component: str, version: str) -> Path:
    return cache_root() / "bin" / f"{component}-{version}"


def binary_paths() -> dict[str, Path]:
    """Where every binary of the local cluster lives once built."""
    k8s = bin_dir("kubernetes", versions.KUBERNETES)
    paths = {name: k8s / name for name in KUBERNETES_COMMANDS}
    paths["etcd"] = bin_dir("etcd", versions.ETCD) / "etcd"
    paths["kwok"] = bin_dir("kwok", versions.KWOK) / "kwok"
    paths["helm"] = bin_dir("helm", versions.HELM) / "helm"
    paths["prometheus"] = bin_dir("prometheus", "debian") / "prometheus"
    paths["promtool"] = bin_dir("prometheus", "debian") / "promtool"
    return paths


PROFILE_BINARIES = {
    "api": ("etcd", "kube-apiserver", "kubectl"),
    "full": (
        "etcd",
        "kube-apiserver",
        "kubectl",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "helm",
        "prometheus",
        "promtool",
    ),
}


def _log_dir() -> Path:
    path = cache_root() / "build-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", f"{versions.GO_TOOLCHAIN}+auto")
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _run(step: str, args: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run one build step, its output in a log file; on failure name the step and show the tail."""
    log_path = _log_dir() / f"{step}.log"
    started = time.monotonic()
    print(f"  building {step} ...", file=sys.stderr, flush=True)
    with log_path.open("w") as log:
        log.write(f"$ (cd {cwd} && {' '.join(args)})\n")
        log.flush()
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        # Compiling Kubernetes takes minutes on two cores: show that it is alive.
        while True:
            try:
                returncode = process.wait(timeout=PROGRESS_INTERVAL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - started
                print(f"    still building {step} ({elapsed:.0f}s so far)", file=sys.stderr, flush=True)
    if returncode != 0:
        raise ClusterError(f"building {step} failed (exit {returncode}); log: {log_path}\n{tail(log_path)}")
    print(f"  built {step} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)


def gateway_api_crds() -> Path:
    """The Gateway API's standard-channel CRDs, from its Go module (the module proxy caches it)."""
    module = f"sigs.k8s.io/gateway-api@{versions.GATEWAY_API}"
    result = subprocess.run(
        ["go", "mod", "download", "-json", module],
        capture_output=True,
        text=True,
        env={**_go_env(), "GOFLAGS": "-mod=mod"},
        cwd=cache_root(),
    )
    if result.returncode != 0:
        raise ClusterError(f"go mod download {module} failed:\n{result.stderr}")
    directory = Path(json.loads(result.stdout)["Dir"]) / "config" / "crd" / "standard"
    if not directory.is_dir():
        raise ClusterError(f"{module} has no {directory}: has the module's layout changed?")
    return directory


def staging_modules_from_go_mod(go_mod: str) -> list[str]:
    """The k8s.io/* modules a k8s.io/kubernetes go.mod requires at the fake version v0.0.0."""
    modules = set()
    for line in go_mod.splitlines():
        fields = line.split()
        if fields[:1] == ["require"]:
            fields = fields[1:]
        if len(fields) >= 2 and fields[0].startswith("k8s.io/") and fields[1] == "v0.0.0":
            modules.add(fields[0])
    return sorted(modules)


def _staging_modules(kubernetes_version: str) -> list[str]:
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{kubernetes_version}"],
        capture_output=True,
        text=True,
        env={**_go_env(), "GOFLAGS": "-mod=mod"},
        cwd=cache_root(),
    )
    if result.returncode != 0:
        raise ClusterError(f"go mod download k8s.io/kubernetes@{kubernetes_version} failed:\n{result.stderr}")
    go_mod_path = Path(json.loads(result.stdout)["GoMod"])
    modules = staging_modules_from_go_mod(go_mod_path.read_text())
    if not modules:
        raise ClusterError(f"found no staging modules in {go_mod_path}; has the go.mod layout changed?")
    return modules


def _version_ldflags(kubernetes_version: str) -> str:
    major, minor = kubernetes_version.lstrip("v").split(".")[:2]
    stamp = {
        "gitVersion": kubernetes_version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    # Without the stamp /version reports v0.0.0 and helm's kubeVersion checks fail.
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamp.items()]
    return " ".join(flags)


def _wrapper_module(directory: Path) -> None:
    """Write the go.mod that lets the go command build k8s.io/kubernetes commands."""
    minor_version = "v0." + versions.KUBERNETES.lstrip("v").split(".", 1)[1]
    replaces = "\n".join(f"\t{module} => {module} {minor_version}" for module in _staging_modules(versions.KUBERNETES))
    go_line = versions.GO_TOOLCHAIN.removeprefix("go").rsplit(".", 1)[0] + ".0"
    (directory / "go.mod").write_text(
        f"module perennial.dev/localcluster/controlplane\n\ngo {go_line}\n\n"
        f"require (\n\tk8s.io/kubernetes {versions.KUBERNETES}\n"
        f"\tgo.etcd.io/etcd/server/v3 {versions.ETCD}\n)\n\nreplace (\n{replaces}\n)\n"
    )


def _build_control_plane(wanted: Iterable[str]) -> None:
    paths = binary_paths()
    k8s_missing = [name for name in KUBERNETES_COMMANDS if name in wanted and not paths[name].exists()]
    etcd_missing = "etcd" in wanted and not paths["etcd"].exists()
    if not k8s_missing and not etcd_missing:
        return
    source = cache_root() / "src" / f"controlplane-{versions.KUBERNETES}-etcd-{versions.ETCD}"
    source.mkdir(parents=True, exist_ok=True)
    env = _go_env()
    if not (source / "go.sum").exists():
        _wrapper_module(source)
        # Explicit @versions: a bare package path means @upgrade, which would move
        # k8s.io/kubernetes to the newest release and break the staging replaces.
        packages = [f"k8s.io/kubernetes/cmd/{name}@{versions.KUBERNETES}" for name in KUBERNETES_COMMANDS]
        packages.append(f"go.etcd.io/etcd/server/v3@{versions.ETCD}")
        _run("controlplane-modules", ["go", "get", *packages], source, env)
    if k8s_missing:
        staging = Path(tempfile.mkdtemp(dir=cache_root()))
        _run(
            "kubernetes",
            [
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                _version_ldflags(versions.KUBERNETES),
                "-o",
                f"{staging}/",
                *[f"k8s.io/kubernetes/cmd/{name}" for name in k8s_missing],
            ],
            source,
            env,
        )
        _install(staging, paths["kube-apiserver"].parent)
    if etcd_missing:
        staging = Path(tempfile.mkdtemp(dir=cache_root()))
        _run(
            "etcd",
            [
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                f"{staging}/etcd",
                "go.etcd.io/etcd/server/v3",
            ],
            source,
            env,
        )
        _install(staging, paths["etcd"].parent)


def _install(staging: Path, destination: Path) -> None:
    """Move freshly built binaries into the cache; a half-finished build never lands there."""
    destination.mkdir(parents=True, exist_ok=True)
    for built in staging.iterdir():
        os.replace(built, destination / built.name)
    shutil.rmtree(staging, ignore_errors=True)


def _go_install(name: str, package: str, version: str) -> None:
    target = binary_paths()[name]
    if target.exists():
        return
    staging = Path(tempfile.mkdtemp(dir=cache_root()))
    env = _go_env()
    env["GOBIN"] = str(staging)
    _run(name, ["go", "install", "-trimpath", "-ldflags", "-s -w", f"{package}@{version}"], staging, env)
    _install(staging, target.parent)


def _install_prometheus() -> None:
    paths = binary_paths()
    if paths["prometheus"].exists() and paths["promtool"].exists():
        return
    work = Path(tempfile.mkdtemp(dir=cache_root()))
    download = ["apt-get", "download", "prometheus"]
    if subprocess.run(download, cwd=work, capture_output=True).returncode != 0:
        # A fresh machine has no package lists yet.
        _run("apt-update", ["apt-get", "update"], work, dict(os.environ))
        _run("prometheus-download", download, work, dict(os.environ))
    debs = list(work.glob("prometheus_*.deb"))
    if not debs:
        raise ClusterError(f"apt-get download prometheus left no .deb in {work}")
    _run("prometheus-unpack", ["dpkg-deb", "-x", str(debs[0]), "root"], work, dict(os.environ))
    staging = work / "out"
    staging.mkdir()
    for tool in ("prometheus", "promtool"):
        shutil.copy2(work / "root" / "usr" / "bin" / tool, staging / tool)
    _install(staging, paths["prometheus"].parent)
    shutil.rmtree(work, ignore_errors=True)


def ensure_binaries(profile: str) -> dict[str, Path]:
    """Build whatever the profile needs and is not cached yet; return all binary paths."""
    wanted = PROFILE_BINARIES[profile]
    cache_root().mkdir(parents=True, exist_ok=True)
    paths = binary_paths()
    if all(paths[name].exists() for name in wanted):
        return paths
    started = time.monotonic()
    print(
        f"building the local control plane into {cache_root()} (once per machine)",
        file=sys.stderr,
        flush=True,
    )
    _build_control_plane(wanted)
    if "kwok" in wanted:
        _go_install("kwok", "sigs.k8s.io/kwok/cmd/kwok", versions.KWOK)
    if "helm" in wanted:
        _go_install("helm", "helm.sh/helm/v3/cmd/helm", versions.HELM)
    if "prometheus" in wanted:
        _install_prometheus()
    print(f"control plane binaries ready in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return paths
