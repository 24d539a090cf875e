"""The debian-12 template boots under bare QEMU (TCG) and its agent answers on virtio-serial.

Builds the template (or takes it from ``$SEPTA_CACHE``, default
``/var/cache/septa/templates``), boots a qcow2 overlay of it with direct kernel boot on
q35 and an empty private volume, waits for the agent's HELLO and READY, PINGs it, asks it
to shut down and checks that QEMU exits by itself (a clean poweroff) and that the guest
formatted the private volume and copied /home onto it. Prints the build and boot-to-READY
times.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from septa.agent import wire
from septa.templates import TemplateImage, cached_build, default_cache_dir

pytestmark = pytest.mark.e2e

RECIPE = Path(__file__).resolve().parents[2] / "templates" / "recipes" / "debian-12.toml"
READY_TIMEOUT = 120.0
POWEROFF_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def template() -> TemplateImage:
    if os.geteuid() != 0:
        pytest.skip("building a template needs root")
    started = time.monotonic()
    image = cached_build(RECIPE)
    elapsed = time.monotonic() - started
    print(f"\ntemplate {image.name} in {image.directory} ({elapsed:.1f} s, "
          f"build took {image.manifest.get('build_seconds')} s; cache {default_cache_dir()})")
    return image


class AgentConnection:
    """The host end of the agent port: a unix socket that QEMU serves."""

    def __init__(self, path: Path, deadline: float) -> None:
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.decoder = wire.FrameDecoder()
        self.frames: list[wire.Frame] = []

    def send(self, frame_type: int, payload: bytes = b"", channel: int = 0) -> None:
        self.sock.sendall(wire.encode(frame_type, channel, payload))

    def receive(self, timeout: float) -> wire.Frame:
        deadline = time.monotonic() + timeout
        while not self.frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the agent")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("QEMU closed the agent socket")
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def qemu_dir(tmp_path: Path) -> Iterator[Path]:
    # unix socket paths are limited to 108 bytes: keep them short
    short = Path(f"/tmp/septa-boot-{os.getpid()}")
    short.mkdir(exist_ok=True)
    yield short
    shutil.rmtree(short, ignore_errors=True)


def _console_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no console log)"
    return "\n".join(text.splitlines()[-lines:])


def _check_private_volume(private: Path) -> None:
    """The first boot made ext4 on the empty volume and copied the template's /home to it."""
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(private)],
                           capture_output=True, text=True)
    assert label.stdout.strip() == "private", label
    listing = subprocess.run(["debugfs", "-R", "ls -p /home", str(private)],
                             capture_output=True, text=True, check=True).stdout
    assert "/user/" in listing, listing


def test_boot_agent_ready_ping_shutdown(template: TemplateImage, qemu_dir: Path) -> None:
    overlay = qemu_dir / "root.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
         "-b", str(template.root), str(overlay)],
        check=True,
    )
    private = qemu_dir / "private.img"
    with open(private, "wb") as f:
        f.truncate(1 << 30)
    agent_sock = qemu_dir / "agent.sock"
    console = qemu_dir / "console.log"
    argv = [
        "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "512",
        "-nographic", "-nodefaults", "-no-user-config",
        "-kernel", str(template.kernel), "-initrd", str(template.initrd),
        "-append", template.kernel_cmdline,
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-drive", f"file={private},if=virtio,format=raw",
        "-device", "virtio-serial",
        "-chardev", f"file,id=con,path={console}",
        "-device", "virtconsole,chardev=con",
        "-chardev", f"socket,id=a,path={agent_sock},server=on,wait=off",
        "-device", f"virtserialport,chardev=a,name={wire.PORT_NAME}",
    ]
    started = time.monotonic()
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    agent: AgentConnection | None = None
    try:
        agent = AgentConnection(agent_sock, started + 10)
        hello = agent.receive(READY_TIMEOUT)
        hello_at = time.monotonic() - started
        assert hello.type == wire.FrameType.HELLO, hello
        info = hello.json()
        assert info["version"] == wire.PROTOCOL_VERSION
        assert info["hostname"] == "debian-12"
        ready = agent.receive(READY_TIMEOUT - (time.monotonic() - started))
        assert ready.type == wire.FrameType.READY, ready
        boot = time.monotonic() - started
        print(f"\nboot to HELLO: {hello_at:.1f} s, to READY: {boot:.1f} s "
              f"(guest uptime at READY: {ready.json().get('uptime')} s)")

        rtts = []
        for i in range(5):
            sent = time.monotonic()
            agent.send(wire.FrameType.PING, b"ping %d" % i)
            pong = agent.receive(10)
            rtts.append(time.monotonic() - sent)
            assert (pong.type, pong.payload) == (wire.FrameType.PONG, b"ping %d" % i)
        print("PING round trips: " + ", ".join(f"{r * 1000:.1f} ms" for r in rtts))

        # the host goes away and comes back: the agent waits (EOF on its port) and
        # introduces itself again on the new connection
        agent.close()
        time.sleep(1.0)
        reconnected = time.monotonic()
        agent = AgentConnection(agent_sock, reconnected + 10)
        assert agent.receive(10).type == wire.FrameType.HELLO
        assert agent.receive(10).type == wire.FrameType.READY
        print(f"HELLO and READY again {time.monotonic() - reconnected:.2f} s after reconnecting")

        agent.send(wire.FrameType.SHUTDOWN_REQUEST)
        asked = time.monotonic()
        rc = qemu.wait(POWEROFF_TIMEOUT)
        print(f"QEMU exited {rc} {time.monotonic() - asked:.1f} s after SHUTDOWN_REQUEST")
        assert rc == 0
        _check_private_volume(private)
    except Exception as exc:
        raise AssertionError(f"{exc!r}\n--- guest console ---\n{_console_tail(console)}") from exc
    finally:
        if agent is not None:
            agent.close()
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
