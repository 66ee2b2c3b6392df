"""The `real` tier: tests on pods that really run, on the `real` profile's node (issue 17).

Not part of `make test`: these tests run only against a cluster started with `make
cluster-up PROFILE=real` (the directory in PERENNIAL_CLUSTER_DIR, as every `localcluster`
command), and skip, saying why, when there is none. CI (`.ci/run`) starts one and sets
PERENNIAL_REAL_REQUIRED, which makes a missing real cluster a failure instead of a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest
from localcluster.cluster import LocalCluster

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
