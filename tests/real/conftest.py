"""The `real` tier: tests on pods that really run, on the `real` profile's node (issue 17).

Not part of `make test` or CI: these tests run only against a cluster started with
`make cluster-up PROFILE=real` (the directory in PERENNIAL_CLUSTER_DIR, as every
`localcluster` command), and skip, saying why, when there is none.
"""

from __future__ import annotations

import pytest
from localcluster.cluster import LocalCluster

from tests.support.cluster import ClusterInfo


def real_cluster() -> ClusterInfo:
    """The running `real` profile, or skip (usable from fixtures of any scope)."""
    local = LocalCluster()
    if not local.env_file.exists() or not {"kube-apiserver", "kubelet"} <= set(local.running()):
        pytest.skip(f"the `real` profile is not up in {local.dir}: run `make cluster-up PROFILE=real` first")
    info = ClusterInfo.from_env_file(local.env_file)
    if info.profile != "real":
        pytest.skip(f"the cluster in {local.dir} runs the `{info.profile}` profile, not `real`")
    return info


@pytest.fixture
def cluster() -> ClusterInfo:
    return real_cluster()
