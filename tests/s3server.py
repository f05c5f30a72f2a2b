"""A real S3-protocol server on loopback for tests (moto's server), plus a TCP proxy that can
be stopped and started to make the endpoint go away and come back while moto keeps its state."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx

from tests.conftest import free_port

DUMMY_KEY = "testing"
DUMMY_SECRET = "testing"


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


@dataclass
class MotoServer:
    """``moto_server`` in a subprocess on a free loopback port."""

    port: int
    proc: subprocess.Popen
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, env: dict | None = None) -> MotoServer:
        port = free_port()
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=full_env,
        )
        server = cls(port, proc, env or {})
        try:
            wait_http(server.url + "/moto-api/")
        except RuntimeError:
            proc.kill()
            raise
        return server

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def storage_options(endpoint: str, **config) -> dict:
    return {
        "key": DUMMY_KEY,
        "secret": DUMMY_SECRET,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "config_kwargs": {"connect_timeout": 2, "read_timeout": 10, "retries": {"max_attempts": 1}, **config},
        "retries": 1,  # s3fs's own inner retries; the exporter does the backoff
    }


def make_bucket(endpoint: str) -> str:
    import s3fs

    name = f"lake-{uuid.uuid4().hex[:10]}"
    opts = storage_options(endpoint)
    opts.pop("retries")
    fs = s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True, **opts)
    fs.call_s3("create_bucket", Bucket=name)
    return name


class TCPProxy:
    """Forwards 127.0.0.1:<port> to an upstream port; ``stop()`` closes the listener and every
    open connection (the endpoint is gone: connections are refused), ``start()`` brings it
    back on the same port."""

    def __init__(self, upstream_port: int, port: int | None = None):
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.running = False
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.running:
            return
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        self.running = True
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def stop(self) -> None:
        self.running = False
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self.running:
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
