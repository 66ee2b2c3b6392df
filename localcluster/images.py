"""OCI images built on this machine, without a registry or an image builder.

The `real` profile's node runs images that never came from a registry: each one is an
OCI image layout (a tar archive) written here from files on this machine, and
imported into the node's containerd with ``ctr -n k8s.io images import``. The layout
is written by hand (it is a few JSON documents and one tar layer), byte for byte
reproducible: files are sorted, owned by root and dated 1970, so the same files give
the same digests and an image is cached by its content.

Three images so far:
- the pod sandbox (``pause``): Kubernetes' own ``build/pause/linux/pause.c`` from the
  ``k8s.io/kubernetes`` module, compiled statically here;
- ``busybox``: Debian's ``busybox-static`` binary alone, for the node's smoke pods (and
  the same layer as user 65532, for pods that must run as non-root: the operator's
  training pods);
- ``python``: a Debian root filesystem with ``python3``, made by ``mmdebstrap`` from the
  machine's own Debian sources (the base the project's images will build on).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class ImageFile:
    content: bytes
    mode: int = 0o755


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _add(archive: tarfile.TarFile, name: str, content: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, 0, "root", "root"
    if content is None:
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    else:
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))


def layer_tar(files: Mapping[str, ImageFile]) -> bytes:
    """One uncompressed layer holding ``files`` (path inside the image -> content), with parent directories."""
    parts = [path.strip("/").split("/") for path in files]
    directories = sorted({"/".join(p[:i]) for p in parts for i in range(1, len(p))})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for directory in directories:
            _add(archive, directory + "/", None, 0o755)
        for path in sorted(files):
            _add(archive, path.strip("/"), files[path].content, files[path].mode)
    return buffer.getvalue()


def oci_archive(
    name: str,
    files: Mapping[str, ImageFile],
    entrypoint: Sequence[str],
    env: Sequence[str] = ("PATH=/bin",),
    user: str = "",
) -> bytes:
    """An OCI image layout as a tar archive, named ``name`` for ``ctr images import``.

    ``user``: the image's numeric ``uid:gid`` (empty: root), e.g. for pods that must run
    as non-root, as the operator's training pods do.
    """
    return oci_archive_of_layer(name, layer_tar(files), entrypoint, env, user=user)


def oci_archive_of_layer(
    name: str,
    layer: bytes,
    entrypoint: Sequence[str] = (),
    env: Sequence[str] = ("PATH=/bin",),
    cmd: Sequence[str] = (),
    user: str = "",
) -> bytes:
    """An OCI image layout of one ready-made (uncompressed tar) layer, e.g. a root filesystem."""
    image_config: dict[str, list[str] | str] = {"Env": list(env)}
    if user:
        image_config["User"] = user
    if entrypoint:
        image_config["Entrypoint"] = list(entrypoint)
    if cmd:
        image_config["Cmd"] = list(cmd)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": _digest(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    # containerd names the imported image after this annotation.
                    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
                }
            ],
        },
        sort_keys=True,
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
        _add(archive, "index.json", index, 0o644)
        _add(archive, "blobs/", None, 0o755)
        _add(archive, "blobs/sha256/", None, 0o755)
        for blob in sorted((config, manifest, layer), key=_digest):
            _add(archive, "blobs/sha256/" + _digest(blob).removeprefix("sha256:"), blob, 0o644)
    return buffer.getvalue()


def image_id(archive: bytes) -> str:
    """The manifest digest inside an archive from :func:`oci_archive` (what the node reports)."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        return str(json.loads(member.read())["manifests"][0]["digest"])
