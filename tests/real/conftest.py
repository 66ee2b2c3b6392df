"""The `real` tier: tests on pods that really run, on the `real` profile's node (issue 17).

Not part of `make test`: these tests run only against a cluster started with `make
cluster-up PROFILE=real` (the directory in PERENNIAL_CLUSTER_DIR, as every `localcluster`
command), and skip, saying why, when there is none. CI (`.ci/run`) starts one and sets
PERENNIAL_REAL_REQUIRED, which makes a missing real cluster a failure instead of a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from localcluster import workload
from localcluster.cluster import LocalCluster
from localcluster.errors import ClusterError

from tests.support.cluster import ClusterInfo


def _without_real_cluster(reason: str) -> NoReturn:
    if os.environ.get("PERENNIAL_REAL_REQUIRED"):
        pytest.fail(f"PERENNIAL_REAL_REQUIRED is set and {reason}", pytrace=False)
    pytest.skip(reason)


def real_cluster() -> ClusterInfo:
    """The running `real` profile, or skip (fail under PERENNIAL_REAL_REQUIRED); usable from fixtures of any scope."""
    local = LocalCluster()
    if not local.env_file.exists() or not {"kube-apiserver", "kubelet"} <= set(local.running()):
        _without_real_cluster(f"the `real` profile is not up in {local.dir}: run `make cluster-up PROFILE=real` first")
    info = ClusterInfo.from_env_file(local.env_file)
    if info.profile != "real":
        _without_real_cluster(f"the cluster in {local.dir} runs the `{info.profile}` profile, not `real`")
    return info


@pytest.fixture
def cluster() -> ClusterInfo:
    return real_cluster()


# The claim every churn test mounts at /models (trainer and server alike).
CLAIM = "models"


@pytest.fixture(scope="module")
def operator_release() -> Iterator[str]:
    """`helm install` of charts/perennial with the image `up` imported; yields the image name."""
    real_cluster()
    local = LocalCluster()
    try:
        image = workload.install_operator(local)
    except ClusterError as error:
        pytest.fail(str(error))
    yield image
    workload.uninstall_operator(local)


@pytest.fixture
def claim(namespace: str) -> Iterator[Path]:
    """A claim `models` in the test's namespace, bound to a static local PV; yields the PV's directory on the node."""
    local = LocalCluster()
    pv_name, directory = workload.create_local_claim(local, namespace, CLAIM)
    yield directory
    # The namespace goes with the test; the PV (Retain) and its directory go here.
    workload.delete_local_volume(local, pv_name)
