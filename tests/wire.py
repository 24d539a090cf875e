"""Test helpers: raw Admin API calls and a septad process under a private SEPTA_ROOT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from septa.paths import Paths

SEPTAD = [sys.executable, "-m", "septa.api.daemon"]


def raw_call(sock_path: Path, data: bytes, timeout: float = 30.0) -> bytes:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(sock_path))
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def request(method: str, dest: str = "dom0", payload: bytes = b"", arg: str = "") -> bytes:
    return f"{method}+{arg} dom0 name {dest}".encode() + b"\0" + payload


@dataclass
class Daemon:
    """A septad process serving ``root``."""

    root: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "septad.log"

    @property
    def paths(self) -> Paths:
        return Paths(self.root)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SEPTA_ROOT": str(self.root)}

    def start(self) -> Daemon:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(SEPTAD, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"septad exited: {self.log.read_text()}")
            try:
                if raw_call(self.paths.admin_socket, request("admin.vm.List")).startswith(b"0\0"):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("septad did not start in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def call(self, method: str, dest: str = "dom0", payload: bytes = b"", arg: str = "") -> bytes:
        return raw_call(self.paths.admin_socket, request(method, dest, payload, arg))

    def ok(self, method: str, dest: str = "dom0", payload: bytes = b"", arg: str = "") -> str:
        answer = self.call(method, dest, payload, arg)
        assert answer.startswith(b"0\0"), (method, dest, arg, answer)
        return answer[2:].decode()

    def error(self, method: str, dest: str = "dom0", payload: bytes = b"", arg: str = "") -> str:
        """The exception name of a call that must fail."""
        answer = self.call(method, dest, payload, arg)
        assert answer.startswith(b"2\0"), (method, dest, arg, answer)
        return answer.split(b"\0")[1].decode()
