"""Pure parts of the `real` profile: hand-written OCI images and the node's generated configs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
from localcluster import build, cluster, images, node, podtargets, versions

PATHS = node.NodePaths(Path("/tmp/cluster/node"))


def _members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {member.name: member for member in tar.getmembers()}


def _read(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def _image(content: bytes = b"#!binary") -> bytes:
    return images.oci_archive("localhost/perennial/tool:1", {"bin/tool": images.ImageFile(content)}, ["/bin/tool"])


def test_an_image_is_reproducible_and_keyed_by_its_content() -> None:
    assert _image() == _image()
    assert images.image_id(_image()) != images.image_id(_image(b"#!other"))


def test_an_image_is_an_oci_layout_whose_blobs_match_their_digests() -> None:
    archive = _image()
    names = _members(archive)
    assert json.loads(_read(archive, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(_read(archive, "index.json"))
    (entry,) = index["manifests"]
    # ctr names the imported image after this annotation.
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/perennial/tool:1"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1"
    for name in names:
        if name.startswith("blobs/sha256/") and names[name].isfile():
            assert hashlib.sha256(_read(archive, name)).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(_read(archive, "blobs/sha256/" + entry["digest"].removeprefix("sha256:")))
    config = json.loads(_read(archive, "blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")))
    assert config["config"]["Entrypoint"] == ["/bin/tool"]
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]


def test_a_base_image_of_a_ready_made_layer_has_a_command_and_no_entrypoint() -> None:
    layer = images.layer_tar({"usr/bin/python3": images.ImageFile(b"elf")})
    archive = images.oci_archive_of_layer("localhost/perennial/python:debian", layer, cmd=["python3"])
    index = json.loads(_read(archive, "index.json"))
    manifest = json.loads(_read(archive, "blobs/sha256/" + index["manifests"][0]["digest"].removeprefix("sha256:")))
    config = json.loads(_read(archive, "blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")))
    assert config["config"]["Cmd"] == ["python3"]
    assert "Entrypoint" not in config["config"]
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "debian"


def test_a_layer_holds_its_files_with_parent_directories_owned_by_root() -> None:
    layer = images.layer_tar({"usr/local/bin/tool": images.ImageFile(b"x", 0o755), "etc/conf": images.ImageFile(b"")})
    members = _members(layer)
    assert list(members) == ["etc", "usr", "usr/local", "usr/local/bin", "etc/conf", "usr/local/bin/tool"]
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())
    assert members["usr/local"].isdir()
    assert members["usr/local/bin/tool"].mode == 0o755


def test_containerd_keeps_everything_under_the_cluster_directory() -> None:
    config = tomllib.loads(node.containerd_config(PATHS, Path("/c/runc"), Path("/c/cni"), build.PAUSE_IMAGE))
    for key in ("root", "state", "temp"):
        assert config[key].startswith("/tmp/cluster/node/")
    assert config["grpc"]["address"] == "/tmp/cluster/node/containerd/containerd.sock"
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc == {"BinaryName": "/c/runc", "Root": "/tmp/cluster/node/containerd/runc", "SystemdCgroup": False}
    # Not the machine-wide /var/run/netns; no negative oom_score_adj (no CAP_SYS_RESOURCE here).
    assert runtime["netns_mounts_under_state_dir"] is True
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["cni"] == {"bin_dirs": ["/c/cni"], "conf_dir": "/tmp/cluster/node/cni/net.d", "max_conf_num": 1}
    assert config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == build.PAUSE_IMAGE


def test_the_pod_network_never_routes_off_the_machine() -> None:
    (bridge,) = json.loads(node.cni_conflist(PATHS))["plugins"]
    # isGateway would switch on IPv4 forwarding machine-wide; ipMasq would NAT pods out.
    assert bridge["isGateway"] is False
    assert bridge["ipMasq"] is False
    # No default route: the Service range only, via the gateway (the bridge address).
    assert bridge["ipam"]["routes"] == [{"dst": node.SERVICE_RANGE}]
    assert node.SERVICE_RANGE == cluster.SERVICE_CLUSTER_IP_RANGE
    assert bridge["ipam"]["ranges"] == [[{"subnet": node.NODE_POD_SUBNET, "gateway": node.NODE_IP}]]
    assert bridge["ipam"]["dataDir"] == "/tmp/cluster/node/cni/ipam"
    assert node.NODE_POD_SUBNET.startswith("10.244.")  # inside the cluster's POD_CIDR
    assert cluster.POD_CIDR == "10.244.0.0/16"


def test_the_kubelet_runs_on_cgroup_v1_and_serves_on_the_bridge_only() -> None:
    config = json.loads(node.kubelet_config(PATHS, 10250, 10248, Path("/tmp/cluster/pki/ca.crt")))
    assert (config["cgroupDriver"], config["failCgroupV1"]) == ("cgroupfs", False)
    assert config["address"] == node.NODE_IP
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["containerRuntimeEndpoint"] == "unix:///tmp/cluster/node/containerd/containerd.sock"
    args = node.kubelet_args(PATHS, Path("/tmp/cluster/kubelet.kubeconfig"))
    assert f"--hostname-override={node.NODE_NAME}" in args
    assert all("/var/lib/kubelet" not in arg for arg in args)


def test_kube_proxy_uses_nftables_and_leaves_machine_wide_settings_alone() -> None:
    config = json.loads(node.kube_proxy_config(Path("/tmp/cluster/kube-proxy.kubeconfig"), 1, 2))
    assert config["mode"] == "nftables"
    assert (config["healthzBindAddress"], config["metricsBindAddress"]) == ("127.0.0.1:1", "127.0.0.1:2")
    assert config["nodePortAddresses"] == [f"{node.NODE_IP}/32"]
    assert config["clusterCIDR"] == node.NODE_POD_SUBNET
    # Zero keeps kube-proxy from rewriting the machine's conntrack sysctls.
    assert config["conntrack"] == {
        "maxPerCore": 0,
        "min": 0,
        "tcpEstablishedTimeout": "0s",
        "tcpCloseWaitTimeout": "0s",
    }


def test_mounts_under_a_directory_come_deepest_first() -> None:
    mountinfo = "\n".join(
        [
            "22 1 8:0 / / rw - ext4 /dev/vda rw",
            "90 22 0:50 / /tmp/c/node/kubelet/pods/x/volumes/token rw - tmpfs tmpfs rw",
            "91 22 0:51 / /tmp/c/node/containerd/state/netns/cni-1 rw - nsfs nsfs rw",
            r"92 22 0:52 / /tmp/c/node/with\040space rw - tmpfs tmpfs rw",
            "93 22 0:53 / /tmp/cother rw - tmpfs tmpfs rw",
        ]
    )
    assert node.mounts_under(mountinfo, Path("/tmp/c")) == [
        "/tmp/c/node/kubelet/pods/x/volumes/token",
        "/tmp/c/node/containerd/state/netns/cni-1",
        "/tmp/c/node/with space",
    ]


@pytest.mark.parametrize(
    ("running", "profile"),
    [
        (["etcd", "kube-apiserver"], "api"),
        (["etcd", "kube-apiserver", "kwok", "prometheus"], "full"),
        (["etcd", "kube-apiserver", "containerd", "kubelet"], "real"),
    ],
)
def test_cluster_env_names_the_running_profile(running: list[str], profile: str) -> None:
    assert cluster._profile_of(running) == profile


def test_the_real_profile_has_a_node_and_no_kwok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "kwok" not in cluster.PROFILE_COMPONENTS["real"]
    assert {"containerd", "kubelet"} <= set(cluster.PROFILE_COMPONENTS["real"])
    monkeypatch.setenv("PERENNIAL_CACHE", str(tmp_path))
    paths = build.binary_paths()
    assert set(build.PROFILE_BINARIES["real"]) <= set(paths)
    assert paths["kubelet"].parent == paths["kube-apiserver"].parent  # one Kubernetes version
    assert paths["containerd"] == tmp_path / "bin" / f"containerd-{versions.CONTAINERD}" / "containerd"
    assert paths["bridge"].parent == build.cni_bin_dir() == tmp_path / "bin" / f"cni-plugins-{versions.CNI_PLUGINS}"


def test_a_non_root_image_names_its_numeric_user_and_a_root_one_none() -> None:
    def config(archive: bytes) -> dict[str, object]:
        index = json.loads(_read(archive, "index.json"))
        digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.loads(_read(archive, "blobs/sha256/" + digest))
        blob = _read(archive, "blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:"))
        return dict(json.loads(blob)["config"])

    files = {"bin/tool": images.ImageFile(b"#!binary")}
    nonroot = images.oci_archive("localhost/perennial/tool:nonroot", files, ["/bin/tool"], user=build.NONROOT_USER)
    assert config(nonroot)["User"] == "65532:65532"
    # Images without a user are byte for byte what they were before the parameter existed.
    assert "User" not in config(_image())


def _repository(root: Path) -> Path:
    (root / "operator" / "perennial" / "__pycache__").mkdir(parents=True)
    (root / "operator" / "perennial" / "__init__.py").write_text("__version__ = '0.1.0'\n")
    (root / "operator" / "perennial" / "__pycache__" / "x.pyc").write_bytes(b"bytecode")
    (root / "pyproject.toml").write_text("[project]\nname = 'perennial'\n")
    (root / "README.md").write_text("readme\n")
    (root / "LICENSE").write_text("license\n")
    (root / "notes.txt").write_text("not in the image\n")
    (root / "Dockerfile").write_text(
        "ARG BASE=python:3.11-slim\nFROM ${BASE} AS builder\nCOPY pyproject.toml ./\n"
        "COPY README.md LICENSE ./\nCOPY operator/ operator/\nFROM ${BASE}\n"
        "COPY --from=builder /opt/perennial /opt/perennial\n"
    )
    return root


def test_the_dockerfile_sources_are_what_it_copies_from_the_context() -> None:
    dockerfile = (cluster.REPO_ROOT / "Dockerfile").read_text()
    assert build.dockerfile_sources(dockerfile) == ["pyproject.toml", "README.md", "LICENSE", "operator"]
    assert build.dockerfile_sources("COPY --from=builder /a /b\nCOPY --chown=1:1 x y/\n") == ["x"]


def test_the_operator_image_is_keyed_by_the_files_it_copies_and_its_base(tmp_path: Path) -> None:
    root = _repository(tmp_path / "repo")
    base = tmp_path / "base.tar"
    base.write_bytes(_image())
    key = build.operator_image_key(root, base)
    assert build.operator_image_key(root, base) == key

    # Files the image does not copy (and bytecode) change nothing.
    (root / "notes.txt").write_text("edited\n")
    (root / "operator" / "perennial" / "__pycache__" / "x.pyc").write_bytes(b"other bytecode")
    assert build.operator_image_key(root, base) == key
    # A copied file, the Dockerfile or the base does.
    (root / "operator" / "perennial" / "__init__.py").write_text("__version__ = '0.2.0'\n")
    changed = build.operator_image_key(root, base)
    assert changed != key
    (root / "Dockerfile").write_text((root / "Dockerfile").read_text() + "USER 65532:65532\n")
    assert build.operator_image_key(root, base) != changed
    changed = build.operator_image_key(root, base)
    base.write_bytes(_image(b"#!other base"))
    assert build.operator_image_key(root, base) != changed


def test_any_dockerfile_is_keyed_by_its_context_files_base_and_build_arguments(tmp_path: Path) -> None:
    context = tmp_path / "churn"
    (context / "trainer").mkdir(parents=True)
    (context / "trainer" / "Dockerfile").write_text(
        "ARG BASE=python:3.11-slim\nFROM ${BASE}\nCOPY trainer/requirements.txt /tmp/\nCOPY shared.py ./\n"
    )
    (context / "trainer" / "requirements.txt").write_text("scikit-learn==1.9.1\n")
    (context / "shared.py").write_text("x = 1\n")
    (context / "README.md").write_text("not copied\n")
    base = tmp_path / "base.tar"
    base.write_bytes(_image())
    spec = build.ImageSpec("localhost/perennial/churn-trainer", context, "trainer/Dockerfile")
    key = build.image_key(spec, base)
    assert spec.short_name == "churn-trainer"
    (context / "README.md").write_text("edited\n")
    assert build.image_key(spec, base) == key
    (context / "shared.py").write_text("x = 2\n")
    changed = build.image_key(spec, base)
    assert changed != key
    with_args = build.ImageSpec(spec.repository, context, spec.dockerfile, (("A", "1"), ("B", "2")))
    assert build.image_key(with_args, base) != changed
    # The arguments' order is no input, their values are.
    reordered = build.ImageSpec(spec.repository, context, spec.dockerfile, (("B", "2"), ("A", "1")))
    assert build.image_key(reordered, base) == build.image_key(with_args, base)
    other = build.ImageSpec(spec.repository, context, spec.dockerfile, (("A", "1"), ("B", "3")))
    assert build.image_key(other, base) != build.image_key(with_args, base)


def test_the_churn_images_build_from_their_folder_with_their_own_dockerfiles() -> None:
    specs = build.churn_image_specs(cluster.REPO_ROOT)
    assert sorted(specs) == ["server", "traffic", "trainer"]
    for component, spec in specs.items():
        assert spec.repository == f"localhost/perennial/churn-{component}"
        assert spec.context == cluster.REPO_ROOT / "examples" / "churn"
        dockerfile = (spec.context / spec.dockerfile).read_text()
        assert build.dockerfile_sources(dockerfile) == [f"{component}/requirements.txt", "churnlib.py", component]
    # The operator's spec and key are as before the builder was generalised.
    assert build.operator_image_spec(cluster.REPO_ROOT) == build.ImageSpec(
        build.OPERATOR_IMAGE_REPOSITORY, cluster.REPO_ROOT
    )


def test_only_the_real_profile_serves_the_api_on_the_bridge(tmp_path: Path) -> None:
    # api and full: loopback, and state.json exactly as before.
    loopback = cluster.State(ports={"kube-apiserver": 6443})
    loopback.save(tmp_path)
    assert json.loads((tmp_path / "state.json").read_text()) == {"ports": {"kube-apiserver": 6443}, "processes": {}}
    local = cluster.LocalCluster(tmp_path)
    assert local.api_url() == "https://127.0.0.1:6443"
    # real: the bridge address (pods reach it there, and via the `kubernetes` Service).
    bridge = cluster.State(ports={"kube-apiserver": 6443}, api_address=node.NODE_IP, operator_image="img:1")
    bridge.save(tmp_path)
    local = cluster.LocalCluster(tmp_path)
    assert local.api_url() == f"https://{node.NODE_IP}:6443"
    assert local.state.operator_image == "img:1"
    assert local.state.churn_images == {}
    bridge.churn_images = {"trainer": "t:1", "server": "s:1"}
    bridge.save(tmp_path)
    assert cluster.LocalCluster(tmp_path).state.churn_images == {"trainer": "t:1", "server": "s:1"}


def test_prometheus_targets_are_the_operator_and_model_server_pods_that_run() -> None:
    def pod(
        name: str, ports: list[dict[str, object]], labels: dict[str, str] | None = None, **status: str
    ) -> dict[str, object]:
        return {
            "metadata": {"namespace": "ns", "name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "ports": ports}]},
            "status": {"phase": "Running", "podIP": "10.244.0.7", **status},
        }

    pods = {
        "items": [
            pod("server", [{"name": "http", "containerPort": 8080}], {"perennial.dev/model": "churn"}),
            pod("operator", [{"name": "metrics", "containerPort": 8000}, {"name": "webhook", "containerPort": 9443}]),
            # Not model servers, not running, no address yet: not scraped.
            pod("web", [{"name": "http", "containerPort": 80}]),
            pod("trainer", [{"name": "metrics", "containerPort": 8000}], phase="Succeeded"),
            pod("starting", [{"name": "metrics", "containerPort": 8000}], podIP=""),
        ]
    }
    assert podtargets.targets(pods) == [
        {"targets": ["10.244.0.7:8000"], "labels": {"namespace": "ns", "pod": "operator"}},
        {"targets": ["10.244.0.7:8080"], "labels": {"namespace": "ns", "pod": "server"}},
    ]
    assert podtargets.targets({"items": None}) == []


def test_only_the_real_profile_runs_pod_targets() -> None:
    assert "pod-targets" in cluster.PROFILE_COMPONENTS["real"]
    assert "pod-targets" not in cluster.PROFILE_COMPONENTS["full"]
    assert cluster.PROFILE_COMPONENTS["full"] == (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "prometheus",
    )
