"""Shared fixtures: an initialised data directory, two registered tenants with keys, and
a real ``clickstream serve`` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.settings import DataDir

# Timing-based health checks are noise on a shared 2-core machine: speed is measured in
# benchmarks/, not in tests.
settings.register_profile(
    "clickstream", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("clickstream")

ARTIFACTS = Path(__file__).parent / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    d = DataDir.resolve(tmp_path / "data").ensure()
    ControlDB(d.control_db).migrate()
    return d


@dataclass
class Tenant:
    site_id: str
    hostname: str
    domain: str
    keys: dict[str, str] = field(default_factory=dict)  # permission -> secret


@pytest.fixture
def tenants(data_dir: DataDir) -> dict[str, Tenant]:
    """Two sites on two tracking hostnames, each with a read, write and admin key."""
    db = ControlDB(data_dir.control_db)
    out = {}
    for site_id, host, domain in (("site_a", "t.alpha.test", "alpha.test"), ("site_b", "t.beta.test", "beta.test")):
        sites_mod.add_site(db, site_id, domain=domain, hostnames=[host], plan="enterprise")
        t = Tenant(site_id, host, domain)
        for perm in ("read", "write", "admin"):
            secret, _ = keys_mod.create_key(db, site_id, name=f"{perm} key", permissions=perm)
            t.keys[perm] = secret
        out[site_id] = t
    db.close()
    return out


@dataclass
class ServerProcess:
    url: str
    port: int
    proc: subprocess.Popen
    data: DataDir
    log_path: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(data: DataDir, *, extra_args: list[str] | None = None, env: dict | None = None,
                 port: int | None = None, timeout: float = 60.0) -> ServerProcess:
    port = port or free_port()
    log_path = data.path / f"serve-{port}-{time.time_ns()}.log"
    full_env = {**os.environ, "CLICKSTREAM_DATA": str(data.path), **(env or {})}
    cmd = [sys.executable, "-m", "clickstream_lake", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data", str(data.path), *(extra_args or [])]
    logf = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code in (200, 503):
                return ServerProcess(url, port, proc, data, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not become healthy in {timeout}s:\n{log_path.read_text(errors='replace')}")


@pytest.fixture
def server_factory(data_dir: DataDir) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``clickstream serve`` processes; all are stopped at teardown."""
    procs: list[ServerProcess] = []

    def make(**kwargs) -> ServerProcess:
        s = start_server(kwargs.pop("data", data_dir), **kwargs)
        procs.append(s)
        return s

    yield make
    for s in procs:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
            try:
                s.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()


@pytest.fixture
def server(server_factory, tenants) -> ServerProcess:
    """A running server over the two-tenant data directory."""
    return server_factory()


@pytest.fixture(scope="module")
def moto():
    """A real S3-protocol server (moto) on loopback, one per test module."""
    from tests.s3server import MotoServer

    server = MotoServer.start()
    yield server
    server.stop()
