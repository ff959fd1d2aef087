"""Real Redis topologies for the tests, started on loopback in a temp dir: one server, a TLS
server with a CA made here, a primary + replica + 3 sentinels, a 3-primary / 3-replica cluster.

Everything is a ``redis-server`` process this module starts and kills; ports are picked free
(a cluster node also needs ``port + 10000`` free for its bus). ``SKIP`` is the one skip reason:
tests skip only when ``redis-server`` / ``redis-cli`` are missing, and say so loudly.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
MISSING = REDIS_SERVER is None or REDIS_CLI is None
SKIP = (
    "REDIS TOPOLOGY TESTS SKIPPED: redis-server / redis-cli not on PATH "
    "(apt-get install redis-server; .ci/run installs it) - Cluster, Sentinel and TLS are untested"
)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, bus: bool = False) -> list[int]:
    """``n`` loopback ports free a moment ago (with ``bus``: ``port + 10000`` free as well)."""
    out: list[int] = []
    while len(out) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port in out or (bus and (port + 10000 > 65535 or not _free(port + 10000))):
            continue
        out.append(port)
    return out


def cli(port: int, *args: str, tls: list[str] | None = None) -> str:
    assert REDIS_CLI is not None
    cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *(tls or []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()


def _ping(port: int, tls: list[str] | None = None) -> bool:
    return cli(port, "PING", tls=tls) == "PONG"


def wait_for(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Node:
    port: int
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Topology:
    nodes: list[Node] = field(default_factory=list)

    def start(self, directory: Path, port: int, *args: str, sentinel: bool = False) -> Node:
        assert REDIS_SERVER is not None
        directory.mkdir(parents=True, exist_ok=True)
        base = [REDIS_SERVER]
        if sentinel:
            conf = directory / f"sentinel-{port}.conf"
            conf.write_text("\n".join(args) + "\n")
            base += [str(conf), "--sentinel"]
            args = ()
        cmd = [*base, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
        if not sentinel:
            cmd += ["--save", "", "--appendonly", "no"]
        proc = subprocess.Popen([*cmd, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        node = Node(port, proc)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            node.kill()


@contextmanager
def single(directory: Path) -> Iterator[str]:
    """One plain server; yields its URL."""
    topo = Topology()
    try:
        (port,) = free_ports(1)
        topo.start(directory, port)
        wait_for(lambda: _ping(port), "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        topo.close()


@dataclass
class Cluster:
    topo: Topology
    ports: list[int]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def primaries(self) -> list[int]:
        lines = cli(self.ports[0], "CLUSTER", "NODES").splitlines()
        return [int(ln.split()[1].split(":")[1].split("@")[0]) for ln in lines if "master" in ln.split()[2]]

    def replica_of(self, primary: int) -> int:
        lines = cli(primary, "CLUSTER", "NODES").splitlines()
        me = next(ln.split()[0] for ln in lines if "myself" in ln.split()[2])
        return next(int(ln.split()[1].split(":")[1].split("@")[0]) for ln in lines if ln.split()[3] == me)

    def failover(self, primary: int) -> int:
        """``CLUSTER FAILOVER`` on the primary's replica; returns the new primary's port."""
        replica = self.replica_of(primary)
        assert cli(replica, "CLUSTER", "FAILOVER") == "OK"
        wait_for(lambda: "role:master" in cli(replica, "INFO", "replication"), "cluster failover")
        wait_for(lambda: "role:slave" in cli(primary, "INFO", "replication"), "old primary demoted")
        return replica

    def role(self, port: int) -> str:
        return "primary" if "role:master" in cli(port, "INFO", "replication") else "replica"


@contextmanager
def cluster(directory: Path) -> Iterator[Cluster]:
    """3 primaries + 3 replicas (``redis-cli --cluster create --cluster-replicas 1``)."""
    topo = Topology()
    try:
        ports = free_ports(6, bus=True)
        for port in ports:
            topo.start(
                directory / str(port),
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
            )
        for port in ports:
            wait_for(lambda port=port: _ping(port), f"cluster node {port}")
        assert REDIS_CLI is not None
        create = subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert create.returncode == 0, create.stdout + create.stderr
        for port in ports:
            wait_for(
                lambda port=port: "cluster_state:ok" in cli(port, "CLUSTER", "INFO"),
                f"cluster state on {port}",
            )
        c = Cluster(topo, ports)
        wait_for(lambda: len(c.primaries()) == 3, "3 primaries")
        yield c
    finally:
        topo.close()


@dataclass
class SentinelSet:
    topo: Topology
    primary: int
    replica: int
    sentinels: list[int]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + "/main/0"

    def current_primary(self) -> int:
        out = cli(self.sentinels[0], "SENTINEL", "get-master-addr-by-name", "main").split()
        return int(out[1])

    def failover(self) -> int:
        """``SENTINEL FAILOVER``; returns the new primary's port once the sentinels agree."""
        old = self.current_primary()
        assert cli(self.sentinels[0], "SENTINEL", "FAILOVER", "main") == "OK"
        wait_for(lambda: self.current_primary() != old, "sentinel failover")
        new = self.current_primary()
        wait_for(lambda: "role:master" in cli(new, "INFO", "replication"), "new primary promoted")
        return new


@contextmanager
def sentinel(directory: Path) -> Iterator[SentinelSet]:
    """A primary, its replica and 3 sentinels monitoring ``main`` (quorum 2)."""
    topo = Topology()
    try:
        primary, replica, *sentinels = free_ports(5)
        topo.start(directory / "p", primary)
        topo.start(directory / "r", replica, "--replicaof", "127.0.0.1", str(primary))
        wait_for(lambda: "master_link_status:up" in cli(replica, "INFO", "replication"), "replica sync")
        for port in sentinels:
            topo.start(
                directory / f"s{port}",
                port,
                f"port {port}",
                "bind 127.0.0.1",
                f"sentinel monitor main 127.0.0.1 {primary} 2",
                "sentinel down-after-milliseconds main 1000",
                "sentinel failover-timeout main 5000",
                sentinel=True,
            )
        for port in sentinels:
            wait_for(lambda port=port: _ping(port), f"sentinel {port}")
        # Failover needs the sentinels to know the replica and each other.
        for port in sentinels:
            wait_for(
                lambda port=port: (
                    "num-other-sentinels\n2" in cli(port, "SENTINEL", "master", "main")
                    and cli(port, "SENTINEL", "replicas", "main") != ""
                ),
                f"sentinel {port} discovery",
            )
        yield SentinelSet(topo, primary, replica, sentinels)
    finally:
        topo.close()


@dataclass
class TlsServer:
    port: int
    ca: Path
    cert: Path
    key: Path

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    @property
    def cli_tls(self) -> list[str]:
        return ["--tls", "--cacert", str(self.ca), "--cert", str(self.cert), "--key", str(self.key)]


def _make_pki(directory: Path) -> tuple[Path, Path, Path, Path, Path]:
    """A CA, a server cert for 127.0.0.1/localhost and a client cert, via ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key_pem(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return path

    def cert(
        name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: object, **kw: object
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for ext, critical in kw.get("extensions", []):  # type: ignore[attr-defined]
            b = b.add_extension(ext, critical=critical)
        return b.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sidecar-test-ca")])
    ca = cert(
        "sidecar-test-ca",
        ca_key,
        ca_name,
        ca_key,
        extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)],
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    srv = cert(
        "localhost",
        srv_key,
        ca_name,
        ca_key,
        extensions=[(san, False), (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)],
    )
    cli_key = ec.generate_private_key(ec.SECP256R1())
    client = cert(
        "sidecar",
        cli_key,
        ca_name,
        ca_key,
        extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(srv.public_bytes(pem))
    (directory / "client.pem").write_bytes(client.public_bytes(pem))
    return (
        directory / "ca.pem",
        directory / "server.pem",
        key_pem(srv_key, directory / "server.key"),
        directory / "client.pem",
        key_pem(cli_key, directory / "client.key"),
    )


@contextmanager
def tls(directory: Path) -> Iterator[TlsServer]:
    """A TLS-only server that requires a client certificate signed by the test CA."""
    topo = Topology()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ca, srv_cert, srv_key, cli_cert, cli_key = _make_pki(directory)
        (port,) = free_ports(1)
        assert REDIS_SERVER is not None
        proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                "0",
                "--tls-port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--tls-cert-file",
                str(srv_cert),
                "--tls-key-file",
                str(srv_key),
                "--tls-ca-cert-file",
                str(ca),
                "--tls-auth-clients",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        topo.nodes.append(Node(port, proc))
        server = TlsServer(port, ca, cli_cert, cli_key)
        wait_for(lambda: _ping(port, server.cli_tls), "TLS redis-server")
        yield server
    finally:
        topo.close()
