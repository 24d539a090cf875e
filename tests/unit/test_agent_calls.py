"""The agent's calls (channels >= 1): requests, services, stdin/stdout/stderr, windows, exit.

The real agent serves one end of a socketpair in a thread, with the service directory in a
temp dir and the current user standing for ``user``; the test speaks raw frames on the
other end (the host side proper, :mod:`septa.qrexec.mux`, has its own tests).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from septa.agent import request as agent_request
from septa.agent import vmexec, wire
from septa.agent.main import Agent
from septa.agent.port import SocketPort
from septa.agent.request import CallConfig, RequestError, User, parse_request
from septa.agent.services import service_files
from septa.agent.wire import Frame, FrameType

SRC = str(Path(wire.__file__).resolve().parents[2])
TIMEOUT = 20.0

#: Services of the tests (besides the shipped ones), by file name.
TEST_SERVICES = {
    "test.Env": "#!/bin/sh\nenv | grep -E '^(QREXEC_|HOME=|USER=|LOGNAME=|SHELL=|PATH=)' "
                "| sort\necho \"args:$#:$*\"\necho \"cwd:$(pwd)\"\n",
    "test.Which": "#!/bin/sh\necho plain\n",
    "test.Which+special": "#!/bin/sh\necho special\n",
    "test.Cat": "#!/bin/sh\nexec cat\n",
    "test.Split": "#!/bin/sh\necho to-stdout; echo to-stderr >&2; exit 5\n",
    "test.Big": "#!/bin/sh\nexec head -c 1048576 /dev/zero\n",
    "test.Pid": "#!/bin/sh\necho $$\nexec sleep 1000\n",
}


def current_user(name: str) -> User:
    """``user`` is whoever runs the tests; other names come from the system."""
    if name != "user":
        return agent_request.lookup_user(name)
    entry = pwd.getpwuid(os.getuid())
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid,
                os.getgrouplist(entry.pw_name, entry.pw_gid), entry.pw_dir, entry.pw_shell)


def make_rpc_dir(path: Path, extra: dict[str, str] | None = None) -> Path:
    """A service directory with the shipped services (runnable on the host) and ours."""
    path.mkdir(parents=True, exist_ok=True)
    files = {**service_files(SRC, sys.executable), **TEST_SERVICES, **(extra or {})}
    for name, text in files.items():
        (path / name).write_text(text)
        (path / name).chmod(0o755)
    return path


def call_config(rpc: Path) -> CallConfig:
    return CallConfig(rpc_dirs=[str(rpc)], lookup_user=current_user)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class RawHost:
    """The host end of an agent connection, speaking frames synchronously."""

    def __init__(self, rpc: Path) -> None:
        self.sock, self.agent_sock = socket.socketpair()
        self.log: list[str] = []
        self.agent = Agent(
            SocketPort(self.agent_sock), hostname=lambda: "test", uptime=lambda: 1.0,
            poweroff=lambda: None, log=self.log.append, boot_complete=lambda: True,
            call_config=call_config(rpc),
        )
        self.thread = threading.Thread(target=self.agent.run, kwargs={"connections": 1},
                                       daemon=True)
        self.thread.start()
        self.decoder = wire.FrameDecoder()
        self.queues: dict[int, list[Frame]] = defaultdict(list)
        assert [self.next(0).type, self.next(0).type] == [FrameType.HELLO, FrameType.READY]

    def send(self, frame: Frame) -> None:
        self.sock.sendall(frame.encode())

    def open(self, channel: int, request: dict[str, object]) -> None:
        self.send(Frame(FrameType.OPEN, channel, json.dumps(request).encode()))

    def _receive(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        data = self.sock.recv(1 << 20)
        assert data, "the agent closed the connection"
        for frame in self.decoder.feed(data):
            self.queues[frame.channel].append(frame)
        return True

    def next(self, channel: int, timeout: float = TIMEOUT) -> Frame:
        """The next frame on ``channel``."""
        deadline = time.monotonic() + timeout
        while not self.queues[channel]:
            left = deadline - time.monotonic()
            if left <= 0 or not self._receive(left):
                raise TimeoutError(f"no frame on channel {channel}")
        return self.queues[channel].pop(0)

    def poll(self, channel: int, seconds: float) -> list[Frame]:
        """Every frame that arrives on ``channel`` within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)
        frames, self.queues[channel] = self.queues[channel], []
        return frames

    def finish(self, channel: int) -> tuple[int, bytes, bytes]:
        """Read the call to its EXIT, granting the window back as output arrives."""
        out, err = bytearray(), bytearray()
        eofs = set()
        while True:
            frame = self.next(channel)
            if frame.type == FrameType.DATA:
                out += frame.payload
                self.send(wire.window(channel, len(frame.payload)))
            elif frame.type == FrameType.DATA_ERR:
                err += frame.payload
                self.send(wire.window(channel, len(frame.payload), FrameType.WINDOW_ERR))
            elif frame.type in (FrameType.EOF, FrameType.EOF_ERR):
                eofs.add(frame.type)
            elif frame.type == FrameType.EXIT:
                assert eofs == {FrameType.EOF, FrameType.EOF_ERR}, "EXIT before the EOFs"
                return frame.json()["status"], bytes(out), bytes(err)
            elif frame.type == FrameType.WINDOW:
                pass
            else:
                raise AssertionError(f"unexpected {frame}")

    def call(self, channel: int, request: dict[str, object],
             stdin: bytes | None = b"") -> tuple[int, bytes, bytes]:
        """A whole small call (stdin within the initial window, then EOF)."""
        self.open(channel, request)
        if stdin is not None:
            if stdin:
                self.send(Frame(FrameType.DATA, channel, stdin))
            self.send(Frame(FrameType.EOF, channel))
        return self.finish(channel)

    def ping(self, token: bytes = b"t") -> float:
        started = time.monotonic()
        self.send(Frame(FrameType.PING, 0, token))
        assert self.next(0, 5.0) == Frame(FrameType.PONG, 0, token)
        return time.monotonic() - started

    def close(self) -> None:
        self.sock.close()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()
        self.agent_sock.close()


@pytest.fixture
def rpc(tmp_path: Path) -> Path:
    return make_rpc_dir(tmp_path / "qubes-rpc")


@pytest.fixture
def host(rpc: Path) -> Iterator[RawHost]:
    h = RawHost(rpc)
    yield h
    h.close()


def service(name: str, arg: str = "", **extra: object) -> dict[str, object]:
    return {"service": name, "arg": arg, "source": "work", "user": "user",
            "requested_target": "target-qube", **extra}


# --- requests ---------------------------------------------------------------------------------


def test_service_environment_argument_and_home(host: RawHost) -> None:
    status, out, err = host.call(1, service("test.Env", "some.arg"))
    me = current_user("user")
    lines = out.decode().splitlines()
    assert status == 0 and err == b""
    assert "QREXEC_REMOTE_DOMAIN=work" in lines
    assert "QREXEC_SERVICE_FULL_NAME=test.Env+some.arg" in lines
    assert "QREXEC_SERVICE_ARGUMENT=some.arg" in lines
    assert "QREXEC_REQUESTED_TARGET=target-qube" in lines
    assert f"HOME={me.home}" in lines and f"USER={me.name}" in lines
    assert f"SHELL={me.shell}" in lines and any(x.startswith("PATH=/usr") for x in lines)
    assert "args:1:some.arg" in lines and f"cwd:{me.home}" in lines


def test_service_without_argument(host: RawHost) -> None:
    status, out, _ = host.call(1, service("test.Env"))
    lines = out.decode().splitlines()
    assert status == 0 and "args:0:" in lines
    assert "QREXEC_SERVICE_FULL_NAME=test.Env" in lines
    assert not any(x.startswith("QREXEC_SERVICE_ARGUMENT") for x in lines)


def test_the_file_for_the_argument_wins(host: RawHost) -> None:
    assert host.call(1, service("test.Which", "special"))[1] == b"special\n"
    assert host.call(2, service("test.Which", "other"))[1] == b"plain\n"
    assert host.call(3, service("test.Which"))[1] == b"plain\n"


def test_command_form_runs_sh(host: RawHost) -> None:
    status, out, err = host.call(4, {"command": "echo $0 $QREXEC_REMOTE_DOMAIN; exit 9",
                                     "user": "user"})
    assert (status, out, err) == (9, b"/bin/sh dom0\n", b"")


def test_missing_and_unexecutable_services(host: RawHost, rpc: Path) -> None:
    status, out, err = host.call(1, service("no.Such"))
    assert status == 127 and out == b""
    assert err.count(b"\n") == 1 and b"no.Such" in err
    (rpc / "test.NotExec").write_text("#!/bin/sh\necho hi\n")
    status, _, err = host.call(2, service("test.NotExec"))
    assert status == 126 and b"not executable" in err


def test_a_service_that_cannot_be_executed(host: RawHost, rpc: Path) -> None:
    (rpc / "test.NoInterp").write_text("#!/nonexistent/interpreter\n")
    (rpc / "test.NoInterp").chmod(0o755)
    status, _, err = host.call(1, service("test.NoInterp"))
    assert status == 127 and b"cannot run" in err


@pytest.mark.parametrize("payload", [
    b"{not json", b"[1, 2]", b"{}", b'{"service": "a", "command": "b"}',
    b'{"service": 5}', b'{"service": "../../bin/sh"}', b'{"service": "a/b"}',
    b'{"service": ""}', b'{"service": "ok", "arg": "x/y"}', b'{"command": ""}',
    b'{"command": "true", "user": "no-such-user-here"}', b'{"command": "a\\u0000b"}',
    b'{"service": "ok", "source": 3}', b"\xff\xfe",
])
def test_bad_requests_get_an_error_and_the_agent_goes_on(host: RawHost, payload: bytes) -> None:
    host.send(Frame(FrameType.OPEN, 7, payload))
    frame = host.next(7)
    assert frame.type == FrameType.ERROR and "OPEN refused" in frame.json()["message"]
    host.send(Frame(FrameType.DATA, 7, b"late stdin"))  # ignored: the channel is not open
    host.send(Frame(FrameType.EOF, 7))
    host.ping()
    assert host.call(7, service("test.Which"))[1] == b"plain\n"  # the channel is free again


def test_request_validation() -> None:
    config = CallConfig(rpc_dirs=["/nonexistent"], lookup_user=current_user)
    request = parse_request(b'{"command": "id", "user": "user"}', config)
    assert request.argv == ["/bin/sh", "-c", "id"]
    assert request.env["QREXEC_REMOTE_DOMAIN"] == "dom0"
    long_arg = json.dumps({"service": "s", "arg": "a" * 260, "user": "user"}).encode()
    with pytest.raises(RequestError, match="too long"):
        parse_request(long_arg, config)
    missing = parse_request(b'{"service": "qubes.X", "user": "user"}', config)
    assert missing.argv is None and missing.status == 127


def test_only_root_switches_users(monkeypatch: pytest.MonkeyPatch) -> None:
    config = CallConfig(rpc_dirs=["/nonexistent"],
                        lookup_user=lambda name: User(name, 4242, 4242, [], "/", "/bin/sh"))
    monkeypatch.setattr("septa.agent.request.os.geteuid", lambda: 1000)
    with pytest.raises(RequestError, match="not run as root"):
        parse_request(b'{"command": "id", "user": "other"}', config)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_calls_run_as_the_requested_user(host: RawHost) -> None:
    nobody = pwd.getpwnam("nobody")
    status, out, err = host.call(1, {"command": "id -u; id -g; id -G; pwd; echo $HOME $USER",
                                     "user": "nobody"})
    groups = " ".join(str(g) for g in os.getgrouplist("nobody", nobody.pw_gid))
    home_cwd = nobody.pw_dir if os.path.isdir(nobody.pw_dir) else "/"
    assert status == 0, err
    assert out.decode().splitlines() == [
        str(nobody.pw_uid), str(nobody.pw_gid), groups, home_cwd,
        f"{nobody.pw_dir} nobody",
    ]


# --- streams, windows, exit -------------------------------------------------------------------


def test_stdout_and_stderr_are_separate_and_the_status_comes_last(host: RawHost) -> None:
    assert host.call(1, service("test.Split")) == (5, b"to-stdout\n", b"to-stderr\n")


def test_stdin_eof_closes_the_process_stdin(host: RawHost) -> None:
    host.open(3, service("test.Cat"))
    host.send(Frame(FrameType.DATA, 3, b"first "))
    host.send(Frame(FrameType.DATA, 3, b"second"))
    host.ping()  # cat runs on, waiting for more
    assert all(f.type == FrameType.DATA for f in host.queues[3])
    host.send(Frame(FrameType.EOF, 3))
    status, out, err = host.finish(3)
    assert (status, out, err) == (0, b"first second", b"")


def test_exit_status_of_a_signal(host: RawHost) -> None:
    assert host.call(1, {"command": "kill -TERM $$", "user": "user"})[0] == 128 + 15


def test_the_agent_sends_no_more_than_the_host_grants(host: RawHost) -> None:
    host.open(1, service("test.Big"))
    host.send(Frame(FrameType.EOF, 1))
    frames = host.poll(1, 0.5)
    sent = sum(len(f.payload) for f in frames if f.type == FrameType.DATA)
    assert sent == wire.INITIAL_WINDOW  # the process had more: it waits for a grant
    host.send(wire.window(1, 1000))
    frames = host.poll(1, 0.3)
    assert sum(len(f.payload) for f in frames if f.type == FrameType.DATA) == 1000
    host.send(wire.window(1, 1 << 20))
    status, out, _ = host.finish(1)
    assert status == 0 and sent + 1000 + len(out) == 1 << 20


def test_the_agent_grants_stdin_as_the_process_reads_it(host: RawHost) -> None:
    host.open(1, {"command": "head -c 300000 > /dev/null; echo read", "user": "user"})
    chunk = b"x" * wire.MAX_PAYLOAD
    for _ in range(4):
        host.send(Frame(FrameType.DATA, 1, chunk))  # exactly the initial window
    grants = 0
    while grants < 200000:
        frame = host.next(1)
        assert frame.type == FrameType.WINDOW, frame
        grants += wire.window_grant(frame)
    host.send(Frame(FrameType.DATA, 1, chunk))  # within the new grant
    host.send(Frame(FrameType.EOF, 1))
    status, out, _ = host.finish(1)
    assert (status, out) == (0, b"read\n")
    assert host.agent.calls is not None
    assert host.agent.calls.stdin_high_water <= wire.INITIAL_WINDOW


def test_more_stdin_than_granted_aborts_the_call(host: RawHost) -> None:
    host.open(2, service("test.Pid"))  # does not read its stdin
    chunk = b"y" * wire.MAX_PAYLOAD
    # the window, plus what the process's pipe takes (and the agent grants again), plus more
    for _ in range(2 * wire.INITIAL_WINDOW // wire.MAX_PAYLOAD):
        host.send(Frame(FrameType.DATA, 2, chunk))
    frames: list[Frame] = []
    while not frames or frames[-1].type != FrameType.EXIT:
        frames.append(host.next(2))
    errors = [f for f in frames if f.type == FrameType.ERROR]
    assert len(errors) == 1 and "more than the" in errors[0].json()["message"]
    assert frames[-1].json()["status"] == 128 + 9


def test_close_kills_the_process_and_exit_follows(host: RawHost) -> None:
    host.open(5, service("test.Pid"))
    data = host.next(5)
    pid = int(data.payload)
    assert alive(pid)
    host.send(Frame(FrameType.CLOSE, 5))
    frame = host.next(5)
    while frame.type != FrameType.EXIT:
        frame = host.next(5)
    assert frame.json() == {"status": 128 + 9}
    assert not alive(pid)


def test_control_frames_are_served_while_calls_run(host: RawHost) -> None:
    for channel in range(1, 6):
        host.open(channel, service("test.Pid"))
    host.open(9, service("test.Cat"))
    host.send(Frame(FrameType.DATA, 9, b"z" * 60000))
    for i in range(5):
        assert host.ping(bytes([i])) < 2.0
    host.send(Frame(FrameType.HELLO))
    assert host.next(0).type == FrameType.HELLO


def test_host_disconnect_kills_the_calls(rpc: Path) -> None:
    h = RawHost(rpc)
    h.open(1, service("test.Pid"))
    pid = int(h.next(1).payload)
    h.close()
    assert not alive(pid)
    assert "host disconnected" in h.log


def test_many_calls_at_once(host: RawHost) -> None:
    for channel in range(1, 41):
        host.open(channel, {"command": f"cat; echo {channel} >&2; exit {channel % 7}",
                            "user": "user"})
        host.send(Frame(FrameType.DATA, channel, b"in-%d" % channel))
        host.send(Frame(FrameType.EOF, channel))
    for channel in range(1, 41):
        assert host.finish(channel) == (channel % 7, b"in-%d" % channel, b"%d\n" % channel)


# --- shipped services ----------------------------------------------------------------------------


def test_vmshell_reads_commands_from_stdin(host: RawHost) -> None:
    status, out, _ = host.call(1, service("qubes.VMShell"), b"echo one\nexit 3\n")
    assert (status, out) == (3, b"one\n")


def test_vmexec_runs_the_encoded_command(host: RawHost) -> None:
    status, out, err = host.call(1, service("qubes.VMExec", "printf+-25s--x+a-2Fb-20c"))
    assert (status, out, err) == (0, b"a/b c-x", b"")
    status, _, err = host.call(2, service("qubes.VMExec", "echo+-2g"))
    assert status == 1 and b"decode" in err


def test_waitforsession_and_getdate(host: RawHost) -> None:
    assert host.call(1, service("qubes.WaitForSession")) == (0, b"", b"")
    status, out, _ = host.call(2, service("qubes.GetDate"))
    assert status == 0
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\n", out), out


def test_vmexec_decoding() -> None:
    assert vmexec.decode("ls+--l+-2Ftmp") == [b"ls", b"-l", b"/tmp"]
    assert vmexec.decode("a.b_c+-00-FF") == [b"a.b_c", b"\x00\xff"]
    assert vmexec.decode("x+") == [b"x", b""]
    for bad in ("", "+x", "a-2f", "a-", "a-2", "a b", "a/b", "a-G0", "é"):
        with pytest.raises(vmexec.DecodeError):
            vmexec.decode(bad)


def test_the_template_ships_the_services(tmp_path: Path) -> None:
    from septa.templates import guestfiles
    from septa.templates.recipe import load_recipe

    recipe = Path(__file__).resolve().parents[2] / "templates" / "recipes" / "debian-12.toml"
    guestfiles.install(tmp_path, load_recipe(recipe))
    rpc = tmp_path / "etc/qubes-rpc"
    names = {"qubes.VMShell", "qubes.VMExec", "qubes.WaitForSession", "qubes.GetDate"}
    assert names <= {p.name for p in rpc.iterdir()}
    for name in names:
        assert (rpc / name).stat().st_mode & 0o777 == 0o755
    assert "/usr/lib/septa-agent" in (rpc / "qubes.VMExec").read_text()
    assert (tmp_path / "usr/lib/septa-agent/septa/agent/vmexec.py").is_file()


def test_the_call_server_is_imported_after_ready_only(tmp_path: Path) -> None:
    """The agent's start stays light; with preload, READY starts importing the calls."""
    code = (
        f"import sys, socket, time; sys.path.insert(0, {SRC!r})\n"
        "from septa.agent.main import Agent\n"
        "from septa.agent.port import SocketPort\n"
        "host, guest = socket.socketpair()\n"
        "booted = [False]\n"
        "agent = Agent(SocketPort(guest), log=lambda m: None, boot_complete=lambda: booted[0],"
        " on_ready=lambda: None, preload=True)\n"
        "agent.introduce()\n"
        "before = 'septa.agent.calls' in sys.modules\n"
        "booted[0] = True\n"
        "agent.maybe_ready()\n"
        "for _ in range(500):\n"
        "    if 'septa.agent.calls' in sys.modules: break\n"
        "    time.sleep(0.01)\n"
        "time.sleep(0.2)\n"
        "print(before, 'septa.agent.calls' in sys.modules, 'subprocess' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["False", "True", "True"]
