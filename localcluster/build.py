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
- The ``real`` profile's node: kubelet and kube-proxy from the same Kubernetes module and
  version (their own wrapper module, so the control plane's stays as it was built);
  containerd 2.x, its runc shim and ctr, and the CNI plugins by ``go install``; runc
  and ``nft`` (for kube-proxy, with its two libraries) from Debian's packages, unpacked
  like Prometheus. Its images (``ensure_images``) are built here too, from no registry:
  see images.py; the Python base comes from ``mmdebstrap`` (Debian's package, unpacked)
  run against the machine's own Debian sources.

Binaries live in ``$PERENNIAL_CACHE`` (default ``~/.cache/perennial``) under a
directory per version, so a second run builds nothing and a version bump rebuilds
only what moved.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from localcluster import images, versions
from localcluster.errors import ClusterError, tail

PROGRESS_INTERVAL_SECONDS = 30

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
KUBERNETES_NODE_COMMANDS = ("kubelet", "kube-proxy")
CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")
# The CNI plugins a one-node bridge network needs, by their package in the plugins module.
CNI_PLUGINS = {
    "bridge": "plugins/main/bridge",
    "host-local": "plugins/ipam/host-local",
    "loopback": "plugins/main/loopback",
    "portmap": "plugins/meta/portmap",
}


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
    paths.update({name: k8s / name for name in KUBERNETES_NODE_COMMANDS})
    paths.update({name: bin_dir("containerd", versions.CONTAINERD) / name for name in CONTAINERD_COMMANDS})
    paths["runc"] = bin_dir("runc", "debian") / "runc"
    # kube-proxy's nftables mode runs `nft`: Debian's, unpacked with its two libraries.
    paths["nft"] = bin_dir("nftables", "debian") / "nft"
    paths.update({name: cni_bin_dir() / name for name in CNI_PLUGINS})
    return paths


def cni_bin_dir() -> Path:
    """The directory containerd's CRI plugin searches for CNI plugins (all of them, nothing else)."""
    return bin_dir("cni-plugins", versions.CNI_PLUGINS)


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
    # A real node instead of kwok: pods really run (issue 17). No kwok; Prometheus scrapes the
    # operator and model server pods (file_sd kept in sync by localcluster/podtargets.py).
    "real": (
        "etcd",
        "kube-apiserver",
        "kubectl",
        "kube-controller-manager",
        "kube-scheduler",
        *KUBERNETES_NODE_COMMANDS,
        *CONTAINERD_COMMANDS,
        "runc",
        *CNI_PLUGINS,
        "nft",
        # The operator is installed in a pod by its chart.
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


def _wrapper_module(directory: Path, name: str = "controlplane") -> None:
    """Write the go.mod that lets the go command build k8s.io/kubernetes commands."""
    minor_version = "v0." + versions.KUBERNETES.lstrip("v").split(".", 1)[1]
    replaces = "\n".join(f"\t{module} => {module} {minor_version}" for module in _staging_modules(versions.KUBERNETES))
    go_line = versions.GO_TOOLCHAIN.removeprefix("go").rsplit(".", 1)[0] + ".0"
    (directory / "go.mod").write_text(
        f"module perennial.dev/localcluster/{name}\n\ngo {go_line}\n\n"
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


def _build_node(wanted: Iterable[str]) -> None:
    """kubelet and kube-proxy, from their own wrapper module beside the control plane's.

    Same Kubernetes module and version, same replaces and the same compile cache; a
    separate module only so that the control plane's go.sum is never touched.
    """
    paths = binary_paths()
    missing = [name for name in KUBERNETES_NODE_COMMANDS if name in wanted and not paths[name].exists()]
    if not missing:
        return
    source = cache_root() / "src" / f"node-{versions.KUBERNETES}"
    source.mkdir(parents=True, exist_ok=True)
    env = _go_env()
    if not (source / "go.sum").exists():
        _wrapper_module(source, "node")
        packages = [f"k8s.io/kubernetes/cmd/{name}@{versions.KUBERNETES}" for name in KUBERNETES_NODE_COMMANDS]
        _run("node-modules", ["go", "get", *packages], source, env)
    staging = Path(tempfile.mkdtemp(dir=cache_root()))
    _run(
        "kubernetes-node",
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            _version_ldflags(versions.KUBERNETES),
            "-o",
            f"{staging}/",
            *[f"k8s.io/kubernetes/cmd/{name}" for name in missing],
        ],
        source,
        env,
    )
    _install(staging, paths[missing[0]].parent)


def _build_containerd(wanted: Iterable[str]) -> None:
    paths = binary_paths()
    if not any(name in wanted and not paths[name].exists() for name in CONTAINERD_COMMANDS):
        return
    module = "github.com/containerd/containerd/v2"
    # containerd's own Makefile tags: no man-page generator; btrfs needs cgo (off here).
    _go_install_packages(
        "containerd",
        [f"{module}/cmd/{name}@{versions.CONTAINERD}" for name in CONTAINERD_COMMANDS],
        paths["containerd"].parent,
        ldflags=f"-s -w -X {module}/version.Version={versions.CONTAINERD}",
        tags="urfave_cli_no_docs no_btrfs",
    )


def _build_cni_plugins(wanted: Iterable[str]) -> None:
    paths = binary_paths()
    if not any(name in wanted and not paths[name].exists() for name in CNI_PLUGINS):
        return
    module = "github.com/containernetworking/plugins"
    _go_install_packages(
        "cni-plugins",
        [f"{module}/{package}@{versions.CNI_PLUGINS}" for package in CNI_PLUGINS.values()],
        cni_bin_dir(),
    )


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
    _go_install_packages(name, [f"{package}@{version}"], target.parent)


def _go_install_packages(
    step: str, packages: list[str], destination: Path, ldflags: str = "-s -w", tags: str = ""
) -> None:
    """`go install` packages of one module at one version into ``destination``."""
    staging = Path(tempfile.mkdtemp(dir=cache_root()))
    env = _go_env()
    env["GOBIN"] = str(staging)
    args = ["go", "install", "-trimpath", "-ldflags", ldflags]
    if tags:
        args += ["-tags", tags]
    _run(step, [*args, *packages], staging, env)
    _install(staging, destination)


def _install_debian(
    package: str, files: dict[str, str], destination: Path, also: tuple[str, ...] = (), wrappers: str = ""
) -> None:
    """Unpack ``files`` (name -> path inside the .debs) of Debian packages into ``destination``.

    ``apt-get download`` + ``dpkg-deb -x``: nothing is installed on the machine. ``also``
    are further packages unpacked into the same tree (libraries the machine lacks);
    ``wrappers`` names a file of ``files`` to wrap in a script that finds those libraries.
    """
    if all((destination / name).exists() for name in files):
        return
    work = _unpack_debian((package, *also))
    staging = work / "out"
    staging.mkdir()
    for name, inside in files.items():
        shutil.copy2(work / "root" / inside, staging / name, follow_symlinks=True)
    if wrappers:
        os.replace(staging / wrappers, staging / f"{wrappers}.real")
        script = staging / wrappers
        script.write_text(
            f'#!/bin/sh\nhere="$(dirname "$(readlink -f "$0")")"\n'
            f'LD_LIBRARY_PATH="$here" exec "$here/{wrappers}.real" "$@"\n'
        )
        script.chmod(0o755)
    _install(staging, destination)
    shutil.rmtree(work, ignore_errors=True)


def _unpack_debian(packages: Iterable[str]) -> Path:
    """``apt-get download`` Debian packages and ``dpkg-deb -x`` them into ``<work>/root``; return ``work``."""
    packages = tuple(packages)
    work = Path(tempfile.mkdtemp(dir=cache_root()))
    download = ["apt-get", "download", *packages]
    if subprocess.run(download, cwd=work, capture_output=True).returncode != 0:
        # A fresh machine has no package lists yet.
        _run("apt-update", ["apt-get", "update"], work, dict(os.environ))
        _run(f"{packages[0]}-download", download, work, dict(os.environ))
    for name in packages:
        debs = list(work.glob(f"{name}_*.deb"))
        if not debs:
            raise ClusterError(f"apt-get download {name} left no .deb in {work}")
        _run(f"{name}-unpack", ["dpkg-deb", "-x", str(debs[0]), "root"], work, dict(os.environ))
    return work


def _install_prometheus() -> None:
    files = {"prometheus": "usr/bin/prometheus", "promtool": "usr/bin/promtool"}
    _install_debian("prometheus", files, binary_paths()["prometheus"].parent)


PAUSE_VERSION = "3.10.2"  # build/pause/Makefile's TAG in k8s.io/kubernetes v1.36.3
PAUSE_IMAGE = f"localhost/perennial/pause:{PAUSE_VERSION}"
BUSYBOX_IMAGE = "localhost/perennial/busybox:debian"
# The same busybox as a numeric non-root user: the operator's training pods run with
# runAsNonRoot, which the kubelet refuses for an image whose user is root.
BUSYBOX_NONROOT_IMAGE = "localhost/perennial/busybox:debian-nonroot"
NONROOT_USER = "65532:65532"
PYTHON_IMAGE = "localhost/perennial/python:debian"
# Debian's sources as configured on this machine: mmdebstrap reads them from this file.
DEBIAN_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


def image_archives() -> dict[str, Path]:
    """The OCI archives the `real` node imports into containerd, by image name."""
    directory = cache_root() / "images"
    return {
        PAUSE_IMAGE: directory / f"pause-{PAUSE_VERSION}-{versions.KUBERNETES}.tar",
        BUSYBOX_IMAGE: directory / "busybox-debian.tar",
        BUSYBOX_NONROOT_IMAGE: directory / "busybox-debian-nonroot.tar",
        PYTHON_IMAGE: directory / f"python-debian-{_debian_codename()}.tar",
    }


def _debian_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise ClusterError("no VERSION_CODENAME in /etc/os-release: is this Debian?")


def _python_base_image(archive: Path) -> None:
    """A Debian root filesystem with python3 (mmdebstrap, from Debian's package) as a one-layer image."""
    tool = bin_dir("mmdebstrap", "debian")
    _install_debian("mmdebstrap", {"mmdebstrap": "usr/bin/mmdebstrap"}, tool)
    sources = next((path for path in DEBIAN_SOURCES if path.exists()), None)
    if sources is None:
        raise ClusterError(f"none of {[str(p) for p in DEBIAN_SOURCES]} exists: mmdebstrap needs Debian's sources")
    work = Path(tempfile.mkdtemp(dir=cache_root()))
    command = [
        str(tool / "mmdebstrap"),
        "--mode=root",
        "--variant=minbase",
        # venv and `python`: what the project's Dockerfile runs on its base image.
        "--include=python3,python3-venv,python-is-python3",
        # /dev is the runtime's to fill; no device nodes in an image layer.
        "--skip=output/dev",
        "--format=tar",
        _debian_codename(),
        str(work / "rootfs.tar"),
        str(sources),
    ]
    _run("python-base", command, work, {**os.environ, "SOURCE_DATE_EPOCH": "0"})
    layer = (work / "rootfs.tar").read_bytes()
    env = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
    _write_atomically(archive, images.oci_archive_of_layer(PYTHON_IMAGE, layer, env=env, cmd=["python3"]))
    shutil.rmtree(work, ignore_errors=True)


def ensure_images() -> dict[str, Path]:
    """Build (once) the node's images: the pod sandbox, a static busybox (as root and as non-root)
    and the Python base. No registry involved."""
    archives = image_archives()
    directory = archives[PAUSE_IMAGE].parent
    directory.mkdir(parents=True, exist_ok=True)
    if not archives[PAUSE_IMAGE].exists():
        source = Path(json.loads(_module_download(f"k8s.io/kubernetes@{versions.KUBERNETES}"))["Dir"])
        work = Path(tempfile.mkdtemp(dir=cache_root()))
        # As build/pause/Makefile does, without its cross-compiling image.
        flags = ["-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_VERSION}-perennial"]
        _run("pause", ["gcc", *flags, "-o", "pause", str(source / "build/pause/linux/pause.c")], work, dict(os.environ))
        files = {"pause": images.ImageFile((work / "pause").read_bytes())}
        _write_atomically(archives[PAUSE_IMAGE], images.oci_archive(PAUSE_IMAGE, files, ["/pause"]))
        shutil.rmtree(work, ignore_errors=True)
    if not archives[BUSYBOX_IMAGE].exists():
        busybox = bin_dir("busybox", "debian")
        _install_debian("busybox-static", {"busybox": "bin/busybox"}, busybox)
        files = {"bin/busybox": images.ImageFile((busybox / "busybox").read_bytes())}
        archive = images.oci_archive(BUSYBOX_IMAGE, files, ["/bin/busybox"])
        _write_atomically(archives[BUSYBOX_IMAGE], archive)
    if not archives[BUSYBOX_NONROOT_IMAGE].exists():
        busybox = bin_dir("busybox", "debian")
        _install_debian("busybox-static", {"busybox": "bin/busybox"}, busybox)
        files = {"bin/busybox": images.ImageFile((busybox / "busybox").read_bytes())}
        archive = images.oci_archive(BUSYBOX_NONROOT_IMAGE, files, ["/bin/busybox"], user=NONROOT_USER)
        _write_atomically(archives[BUSYBOX_NONROOT_IMAGE], archive)
    if not archives[PYTHON_IMAGE].exists():
        _python_base_image(archives[PYTHON_IMAGE])
    return archives


# ---------------------------------------------------------------- the operator image
OPERATOR_IMAGE_REPOSITORY = "localhost/perennial/operator"
# buildah reads no /etc/containers here: its policy (only local archives are ever read:
# the base comes from an oci-archive, nothing is pulled) and an empty registry search list.
BUILDAH_POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}\n'
BUILDAH_REGISTRIES = "unqualified-search-registries = []\n"
# The machine's CA bundle: pip in the build reaches PyPI through this machine's egress
# (which may intercept TLS). Mounted during RUN only, never part of a layer.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def buildah_path() -> Path:
    return bin_dir("buildah", "debian") / "buildah"


def _install_buildah() -> Path:
    """buildah from Debian's package, unpacked (not installed) with the two libraries it needs.

    ``patchelf`` (Debian's, unpacked too) points the binary at its own ``lib/`` (an RPATH,
    not LD_LIBRARY_PATH: buildah re-executes itself for chroot isolation, and the build's
    RUN steps must not inherit a library path into the image's processes). The RPATH is
    absolute: the re-executed copy does not run from the cache, so ``$ORIGIN`` would not
    find ``lib/`` ("buildah-chroot-runtime: error while loading shared libraries").
    """
    target = buildah_path()
    if target.exists():
        return target
    work = _unpack_debian(("buildah", "libgpgme11", "libassuan0", "patchelf"))
    staging = work / "out"
    (staging / "lib").mkdir(parents=True)
    shutil.copy2(work / "root/usr/bin/buildah", staging / "buildah.tmp")
    lib = work / "root/usr/lib/x86_64-linux-gnu"
    for soname in ("libgpgme.so.11", "libassuan.so.0"):
        shutil.copy2(lib / soname, staging / "lib" / soname, follow_symlinks=True)
    (staging / "policy.json").write_text(BUILDAH_POLICY)
    (staging / "registries.conf").write_text(BUILDAH_REGISTRIES)
    rpath = str(target.parent / "lib")
    patchelf = [str(work / "root/usr/bin/patchelf"), "--set-rpath", rpath, str(staging / "buildah.tmp")]
    _run("buildah-rpath", patchelf, work, dict(os.environ))
    # The binary last: its presence marks the install complete.
    os.replace(staging / "buildah.tmp", staging / "buildah")
    destination = target.parent
    shutil.rmtree(destination, ignore_errors=True)
    _install(staging, destination)
    shutil.rmtree(work, ignore_errors=True)
    return target


def dockerfile_sources(dockerfile: str) -> list[str]:
    """The build-context paths a Dockerfile's COPY/ADD instructions read (not ``--from`` a stage)."""
    text = dockerfile.replace("\\\n", " ")
    sources: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].upper() not in ("COPY", "ADD"):
            continue
        arguments = [field for field in fields[1:] if not field.startswith("--")]
        if any(field.startswith("--from") for field in fields[1:]):
            continue
        sources += [source.rstrip("/") for source in arguments[:-1]]
    return sources


def _context_files(root: Path, sources: Iterable[str]) -> list[Path]:
    """Every file the COPY sources name, relative to ``root``, without bytecode or build residue."""
    files = []
    for source in sources:
        path = root / source
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            relative = candidate.relative_to(root)
            if "__pycache__" in relative.parts or candidate.suffix == ".pyc":
                continue
            if any(part.endswith(".egg-info") for part in relative.parts):
                continue
            files.append(relative)
    return files


@dataclass(frozen=True)
class ImageSpec:
    """An image built from a Dockerfile and a build context, on the Debian-built Python base.

    ``dockerfile`` is relative to ``context``; the base comes in as the ``BASE`` build
    argument (an ``oci-archive:`` of :data:`PYTHON_IMAGE`), ``build_args`` are the others.
    """

    repository: str
    context: Path
    dockerfile: str = "Dockerfile"
    build_args: tuple[tuple[str, str], ...] = ()

    @property
    def short_name(self) -> str:
        """The archive's file name prefix in the cache (the repository's last part)."""
        return self.repository.rsplit("/", 1)[-1]


def operator_image_spec(root: Path) -> ImageSpec:
    return ImageSpec(OPERATOR_IMAGE_REPOSITORY, root)


# The reference workload (examples/churn): one build context, three Dockerfiles.
CHURN_IMAGES = ("trainer", "server", "traffic")


def churn_image_specs(root: Path) -> dict[str, ImageSpec]:
    return {
        component: ImageSpec(
            f"localhost/perennial/churn-{component}", root / "examples" / "churn", f"{component}/Dockerfile"
        )
        for component in CHURN_IMAGES
    }


def image_key(spec: ImageSpec, base_archive: Path) -> str:
    """An image's cache key: the Dockerfile, every file it copies, the base image and the build arguments."""
    dockerfile = (spec.context / spec.dockerfile).read_text()
    # The salt is the operator's since before any other image: its key (and cache) stays.
    digest = hashlib.sha256(b"perennial-operator-image/1\0")
    digest.update(dockerfile.encode() + b"\0")
    for relative in _context_files(spec.context, dockerfile_sources(dockerfile)):
        digest.update(str(relative).encode() + b"\0" + (spec.context / relative).read_bytes() + b"\0")
    # The base archive is reproducible (images.py): its manifest digest names its content.
    digest.update(images.image_id(base_archive.read_bytes()).encode())
    # None for the operator (its key stays what it was); sorted, so their order is no input.
    for key, value in sorted(spec.build_args):
        digest.update(b"\0arg\0" + key.encode() + b"=" + value.encode())
    return digest.hexdigest()[:16]


def operator_image_key(root: Path, base_archive: Path) -> str:
    """The operator image's cache key (:func:`image_key` of the repository's Dockerfile)."""
    return image_key(operator_image_spec(root), base_archive)


def operator_image(root: Path) -> tuple[str, Path]:
    """The operator image (the repository's Dockerfile on the Debian-built Python base), built once per content."""
    return build_image(operator_image_spec(root))


def churn_images(root: Path) -> dict[str, tuple[str, Path]]:
    """The churn trainer, server and traffic images (examples/churn), built once per content."""
    return {component: build_image(spec) for component, spec in churn_image_specs(root).items()}


def build_image(spec: ImageSpec) -> tuple[str, Path]:
    """Build ``spec`` (unless its archive is cached) and return its name and OCI archive.

    The name is ``<repository>:<key>``, the key a hash of what went into the image
    (:func:`image_key`). buildah runs daemonless with chroot isolation and vfs storage
    under the cache; the build context is a copy of just the files the Dockerfile copies.
    pip in RUN steps trusts the machine's CA bundle (mounted, never in a layer).
    """
    base = ensure_images()[PYTHON_IMAGE]
    key = image_key(spec, base)
    name = f"{spec.repository}:{key}"
    archive = cache_root() / "images" / f"{spec.short_name}-{key}.tar"
    if archive.exists():
        return name, archive
    buildah = _install_buildah()
    started = time.monotonic()
    print(f"building {name} (once per content)", file=sys.stderr, flush=True)
    work = Path(tempfile.mkdtemp(dir=cache_root()))
    context = work / "context"
    context.mkdir()
    dockerfile = (spec.context / spec.dockerfile).read_text()
    for relative in [Path(spec.dockerfile), *_context_files(spec.context, dockerfile_sources(dockerfile))]:
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(spec.context / relative, context / relative)
    (work / "pip.conf").write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n")
    store = cache_root() / "buildah"
    common = [
        str(buildah),
        f"--root={store / 'storage'}",
        f"--runroot={store / 'run'}",
        "--storage-driver=vfs",
        f"--registries-conf={buildah.parent / 'registries.conf'}",
    ]
    build = [
        *common,
        "bud",
        "--isolation=chroot",
        f"--signature-policy={buildah.parent / 'policy.json'}",
        f"--build-arg=BASE=oci-archive:{base}",
        *(f"--build-arg={key}={value}" for key, value in sorted(spec.build_args)),
        "--layers=false",
        f"--volume={work / 'pip.conf'}:/etc/pip.conf:ro",
        *([f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if HOST_CA_BUNDLE.exists() else []),
        f"--tag={name}",
        f"--file={spec.dockerfile}",
        str(context),
    ]
    _run(f"{spec.short_name}-image", build, work, dict(os.environ))
    staged = archive.with_suffix(".tmp")
    staged.unlink(missing_ok=True)
    push = [
        *common,
        "push",
        f"--signature-policy={buildah.parent / 'policy.json'}",
        name,
        f"oci-archive:{staged}:{name}",
    ]
    _run(f"{spec.short_name}-image-archive", push, work, dict(os.environ))
    os.replace(staged, archive)
    # One archive per image in the cache (100+ MB each): a cluster imported its own at `up`.
    for older in archive.parent.glob(f"{spec.short_name}-*.tar"):
        if older != archive and older.stem.removeprefix(f"{spec.short_name}-").isalnum():
            older.unlink(missing_ok=True)
    # Only the archive is kept: vfs copies every layer, and the store would grow per build.
    subprocess.run([*common, "rmi", "--all", "--force"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{name} built in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return name, archive


def _module_download(module: str) -> str:
    result = subprocess.run(
        ["go", "mod", "download", "-json", module],
        capture_output=True,
        text=True,
        env={**_go_env(), "GOFLAGS": "-mod=mod"},
        cwd=cache_root(),
    )
    if result.returncode != 0:
        raise ClusterError(f"go mod download {module} failed:\n{result.stderr}")
    return result.stdout


def _write_atomically(path: Path, content: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def ensure_binaries(profile: str) -> dict[str, Path]:
    """Build whatever the profile needs and is not cached yet; return all binary paths."""
    wanted = PROFILE_BINARIES[profile]
    cache_root().mkdir(parents=True, exist_ok=True)
    paths = binary_paths()
    if "containerd" in wanted:
        # The real node's images need no binary of the cluster; build them first (seconds).
        ensure_images()
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
    _build_node(wanted)
    _build_containerd(wanted)
    _build_cni_plugins(wanted)
    if "runc" in wanted:
        _install_debian("runc", {"runc": "usr/sbin/runc"}, binary_paths()["runc"].parent)
    if "nft" in wanted:
        lib = "usr/lib/x86_64-linux-gnu"
        _install_debian(
            "nftables",
            # The install goes last: "nft" is what marks it complete.
            {
                "libnftables.so.1": f"{lib}/libnftables.so.1",
                "libnftnl.so.11": f"{lib}/libnftnl.so.11",
                "nft": "usr/sbin/nft",
            },
            binary_paths()["nft"].parent,
            also=("libnftables1", "libnftnl11"),
            wrappers="nft",
        )
    print(f"control plane binaries ready in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return paths
