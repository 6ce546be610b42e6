"""A throw-away test CA and a leaf certificate, made with the ``openssl`` command line."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import need_binary


@dataclass(frozen=True)
class Authority:
    ca: Path  # the CA certificate (for SSL_CERT_FILE)
    cert: Path  # the leaf: SAN DNS:localhost, IP:127.0.0.1
    key: Path
    empty_dir: Path  # for SSL_CERT_DIR, so that only the test CA is trusted

    def env(self) -> dict[str, str]:
        return {"SSL_CERT_FILE": str(self.ca), "SSL_CERT_DIR": str(self.empty_dir)}


def make_test_ca(directory: Path, names: str = "DNS:localhost,IP:127.0.0.1") -> Authority:
    """EC P-256 CA and leaf, valid for two days."""
    openssl = need_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30, cwd=directory)

    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    run(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=ptdispatch test CA", "-days", "2", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "leaf.key")
    run("req", "-new", "-key", "leaf.key", "-subj", "/CN=localhost", "-out", "leaf.csr")
    (directory / "leaf.ext").write_text(
        f"subjectAltName={names}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run(
        "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "leaf.pem", "-extfile", "leaf.ext",
    )  # fmt: skip
    empty = directory / "empty-certs"
    empty.mkdir(exist_ok=True)
    return Authority(directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key", empty)
