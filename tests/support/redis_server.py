"""A real `redis-server` (Debian's package) on a free loopback port in a temp directory.

Append-only with fsync on every write, as a production tier would run: a stop and a start
on the same port keep the data, so tests can take Redis away mid-run and bring it back.
`persistent=False` is a cache-only Redis instead: a restart comes back empty.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.servers import free_port


class RedisServer:
    def __init__(
        self,
        directory: Path,
        password: str | None = None,
        tls: bool = False,
        persistent: bool = True,
    ) -> None:
        self.directory = directory
        self.persistent = persistent  # False: a restart loses every key (a cache-only Redis)
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            ca = self.directory / "ca.crt"
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
        ]
        args += ["--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else []
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args += self._tls_args()
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until(lambda: self.ping(), "answer PING")
        return self

    def _tls_args(self) -> list[str]:
        """A throwaway CA and a server certificate for 127.0.0.1 (openssl), TLS only."""
        d = self.directory
        if not (d / "server.crt").exists():
            new_key = ["openssl", "req", "-newkey", "rsa:2048", "-nodes"]
            _run(*new_key, "-x509", "-days", "2", "-subj", "/CN=test-ca",
                 "-keyout", d / "ca.key", "-out", d / "ca.crt")  # fmt: skip
            _run(*new_key, "-subj", "/CN=127.0.0.1",
                 "-keyout", d / "server.key", "-out", d / "server.csr")  # fmt: skip
            (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
            _run("openssl", "x509", "-req", "-in", d / "server.csr", "-days", "2",
                 "-CA", d / "ca.crt", "-CAkey", d / "ca.key", "-CAcreateserial",
                 "-extfile", d / "san.ext", "-out", d / "server.crt")  # fmt: skip
        return ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
                "--tls-cert-file", str(d / "server.crt"), "--tls-key-file", str(d / "server.key"),
                "--tls-ca-cert-file", str(d / "ca.crt")]  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: a hung Redis (a long fork, a partition): connections stay, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def _wait_until(self, ready: object, what: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if callable(ready) and ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"redis-server did not {what} within {timeout_s}s")


def _run(*args: object) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)
