"""A private certificate authority for tests, made with the openssl CLI (as ``localcluster.pki``).

One CA signs a serving certificate for 127.0.0.1/localhost and a client certificate; the
tests trust the CA only through the operator's endpoint settings, never the system's
trust store. Keys are EC P-256: quick to make, and what a modern private CA issues.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localcluster.pki import new_ca, signed_pair


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def pem(self, name: str) -> str:
        return self.path(name).read_text()

    @property
    def ca(self) -> str:
        return self.pem("ca.crt")

    @property
    def client_cert(self) -> str:
        return self.pem("client.crt")

    @property
    def client_key(self) -> str:
        return self.pem("client.key")


def make_pki(directory: Path, ca_name: str = "perennial-test-ca") -> Pki:
    """``ca.crt``/``ca.key``, ``server.crt``/``.key`` (127.0.0.1, localhost), ``client.crt``/``.key`` (CN perennial)."""
    new_ca(directory, ca_name, days=2)
    signed_pair(
        directory,
        "server",
        "/CN=prometheus-proxy",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        days=2,
    )
    signed_pair(
        directory,
        "client",
        "/CN=perennial",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        days=2,
    )
    return Pki(directory)
