"""Pinned versions of everything the local control plane is built from.

Changing a version here changes the cache key, so the next `cluster-up` rebuilds
exactly the binaries whose version moved and nothing else.
"""

KUBERNETES = "v1.36.3"
# The etcd server Kubernetes v1.36.3 itself pins in its go.mod (go.etcd.io/etcd/server/v3).
ETCD = "v3.6.8"
KWOK = "v0.8.0"
HELM = "v3.22.0"
# Go toolchain the modules above need (k8s v1.36 declares `go 1.26.0`). GOTOOLCHAIN
# makes the go command fetch it through the module proxy when the local go is older.
GO_TOOLCHAIN = "go1.26.8"
# Gateway API CRDs (standard channel), for the canary tests that steer traffic with an
# HTTPRoute's weights; no gateway implementation is installed.
GATEWAY_API = "v1.4.0"
# The `real` profile's node (kubelet and kube-proxy come from KUBERNETES above).
# containerd 2.x: Kubernetes v1.36 needs containerd >= 2.0; no replace directives, so
# `go install` builds it. runc comes from Debian's package (unpacked into the cache).
CONTAINERD = "v2.4.2"
CNI_PLUGINS = "v1.10.0"
