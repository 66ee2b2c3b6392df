"""Certificates and kubeconfigs for the local control plane, made with the openssl CLI.

One CA signs the API server's serving certificate and a client certificate per
identity (admin in ``system:masters``; controller-manager and scheduler under their
own names, so the cluster's bootstrap RBAC applies to them as in a real cluster).
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localcluster.errors import ClusterError

API_SERVER_SANS = (
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:127.0.0.1",
    "IP:10.96.0.1",  # first address of --service-cluster-ip-range
)


@dataclass(frozen=True)
class ClientIdentity:
    name: str  # file stem
    common_name: str  # the Kubernetes user name
    organization: str = ""  # the Kubernetes group


CLIENTS = (
    ClientIdentity("admin", "perennial-admin", "system:masters"),
    ClientIdentity("controller-manager", "system:kube-controller-manager"),
    ClientIdentity("scheduler", "system:kube-scheduler"),
    ClientIdentity("kwok", "perennial-kwok", "system:masters"),
    # The `real` profile's node: the Node authorizer and NodeRestriction know it by this name.
    ClientIdentity("kubelet", "system:node:perennial-node", "system:nodes"),
    ClientIdentity("kube-proxy", "system:kube-proxy"),  # bound to system:node-proxier by bootstrap RBAC
    # The API server's identity towards kubelets (logs, exec), as kubeadm makes it.
    ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
)


def _openssl(args: list[str], cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def new_ca(pki: Path, common_name: str, days: int = 3650) -> None:
    """``ca.crt`` and ``ca.key`` in ``pki``: a self-signed EC P-256 certificate authority."""
    pki.mkdir(parents=True, exist_ok=True)
    request = ["req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days)]
    _openssl([*request, "-subj", f"/CN={common_name}"], pki)


def signed_pair(pki: Path, stem: str, subject: str, extensions: str, days: int = 3650) -> None:
    """``<stem>.crt`` and ``<stem>.key``, signed by the CA in ``pki`` with ``extensions``."""
    _openssl(["req", "-new", *EC_KEY, "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", subject], pki)
    (pki / f"{stem}.ext").write_text(extensions)
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            f"{stem}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            str(days),
            "-sha256",
            "-extfile",
            f"{stem}.ext",
            "-out",
            f"{stem}.crt",
        ],
        pki,
    )


def generate(pki: Path, extra_sans: tuple[str, ...] = ()) -> None:
    """Create the CA, serving and client certificates and the service-account key pair.

    ``extra_sans``: more names for the API server's certificate (the `real` profile's
    bridge address, where its pods reach the API server).
    """
    new_ca(pki, "perennial-local-ca")
    signed_pair(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join((*API_SERVER_SANS, *extra_sans))}\n",
    )
    for client in CLIENTS:
        subject = f"/CN={client.common_name}" + (f"/O={client.organization}" if client.organization else "")
        signed_pair(
            pki,
            client.name,
            subject,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n",
        )
    _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"], pki)
    _openssl(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"], pki)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, pki: Path, server: str, client: str) -> None:
    """A self-contained kubeconfig (certificates embedded) for one client identity."""
    user = (
        f"    client-certificate-data: {_b64(pki / f'{client}.crt')}\n"
        f"    client-key-data: {_b64(pki / f'{client}.key')}\n"
    )
    _write_kubeconfig(path, pki, server, client, user)


def write_token_kubeconfig(path: Path, pki: Path, server: str, user_name: str, token: str) -> None:
    """A kubeconfig that authenticates with a bearer token only (a ServiceAccount's)."""
    _write_kubeconfig(path, pki, server, user_name, f"    token: {token}\n")


def _write_kubeconfig(path: Path, pki: Path, server: str, user_name: str, user: str) -> None:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: perennial-local\n  cluster:\n"
        f"    server: {server}\n    certificate-authority-data: {_b64(pki / 'ca.crt')}\n"
        f"users:\n- name: {user_name}\n  user:\n{user}"
        f"contexts:\n- name: perennial-local\n  context:\n    cluster: perennial-local\n    user: {user_name}\n"
        "current-context: perennial-local\n"
    )
    path.chmod(0o600)
