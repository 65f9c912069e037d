"""Fixtures that start a real coordinator and agent (the release binaries, or those in
DOCKYARD_BIN_DIR) on free loopback ports, and stop them afterwards."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("DOCKYARD_SHARED", REPO.parent / "shared"))
BIN = Path(os.environ.get("DOCKYARD_BIN_DIR", REPO / "target" / "release"))
RECEPTOR = SHARED / "data" / "vina-examples" / "1iep" / "1iep_receptor.pdbqt"
BOX = dict(center=(15.190, 53.903, 16.917), size=(20.0, 20.0, 20.0))


_GIVEN = set()


def free_port() -> int:
    """A loopback port free a moment ago, below the kernel's ephemeral range (where outgoing
    connections could take it before the server binds it), never handed out twice."""
    import random

    try:
        first = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    hi = max(first, 2048)
    lo = max(1024, hi - 12000)
    for _ in range(1000):
        port = random.randrange(lo, hi)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name: str) -> str:
    p = BIN / name
    if not p.exists():
        pytest.fail(f"{p} is missing: build it with `cargo build --release --workspace --bins` (or set DOCKYARD_BIN_DIR)")
    return str(p)


class Cluster:
    """One coordinator and one agent, their logs under `dir`."""

    def __init__(self, dir: Path, coordinator_args: List[str], agent_args: List[str], scheme: str = "http"):
        self.dir = dir
        port = free_port()
        self.endpoint = f"{scheme}://127.0.0.1:{port}"
        self.procs: List[subprocess.Popen] = []
        self._start(
            "coordinator",
            [binary("dockyard-coordinator"), "--listen", f"127.0.0.1:{port}", "--data-dir", str(dir / "data"), *coordinator_args],
        )
        self._start(
            "agent",
            [
                binary("dockyard-agent"),
                "--coordinator",
                self.endpoint,
                "--node-id",
                "py-agent",
                "--slots",
                "2",
                "--work-dir",
                str(dir / "work"),
                "--enable-sleep-engine",
                *agent_args,
            ],
        )

    def _start(self, name: str, args: List[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log))

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def wait_node(self, client, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(n.node_id == "py-agent" and n.state == "ready" for n in client.nodes()):
                return
            for p in self.procs:
                if p.poll() is not None:
                    pytest.fail(f"a process exited ({p.args[0]}, {p.returncode}):\n{self.log('coordinator')[-3000:]}\n{self.log('agent')[-3000:]}")
            time.sleep(0.2)
        pytest.fail(f"the agent did not register in {timeout} s:\n{self.log('agent')[-3000:]}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.kill()
            p.wait()


def wait_listening(endpoint: str, timeout: float = 30) -> None:
    host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens at {endpoint} after {timeout} s")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A plain coordinator (no TLS, no tokens) with an agent offering vina and the sleep engine."""
    d = tmp_path_factory.mktemp("plain")
    vina = shutil.which("vina")
    c = Cluster(d, [], ["--vina", vina] if vina else [])
    wait_listening(c.endpoint)
    yield c
    c.stop()


def make_pki(d: Path) -> None:
    """A CA and a server certificate for 127.0.0.1, made here (the `cryptography` package)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("dockyard test CA"))
        .issuer_name(name("dockyard test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(cert.public_bytes(pem))
    (d / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture(scope="session")
def secure(tmp_path_factory) -> Iterator[Cluster]:
    """A coordinator serving TLS with a certificate made here, tokens on (bootstrap admin
    secret in `admin.secret`), and an agent that joins with the join secret."""
    d = tmp_path_factory.mktemp("secure")
    make_pki(d)
    (d / "admin.secret").write_text("py-admin-secret-0123456789abcdef\n")
    (d / "join.secret").write_text("py-join-secret-0123456789abcdef\n")
    c = Cluster(
        d,
        [
            "--tls-cert",
            str(d / "server.pem"),
            "--tls-key",
            str(d / "server.key"),
            "--admin-token-file",
            str(d / "admin.secret"),
            "--join-token-file",
            str(d / "join.secret"),
        ],
        ["--tls-ca", str(d / "ca.pem"), "--join-token-file", str(d / "join.secret")],
        scheme="https",
    )
    wait_listening(c.endpoint)
    yield c
    c.stop()


def admin_secret(c: Cluster) -> str:
    return (c.dir / "admin.secret").read_text().strip()


def optional(mod: str) -> Optional[object]:
    try:
        return __import__(mod)
    except ImportError:
        return None
