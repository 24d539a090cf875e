"""Calls a qube makes (``qrexec-client-vm``), relayed by septad under the policy.

Two real agents serve unix sockets in threads (the calling qube ``work`` and the target
``vault``); the host side is the real :class:`AgentLink`, :class:`CallMux` and
:class:`QrexecRelay`, with a fake registry (a :class:`SystemInfo`) and a policy
directory in a temp dir. The caller is the real ``qrexec-client-vm`` run as a process.
No VM boots.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from septa.agent import wire
from septa.agent.main import Agent
from septa.agent.port import SocketPort
from septa.api.protocol import Request, ok_frame
from septa.api.qrexec_admin import AdminBridge
from septa.api.qrexec_relay import QrexecRelay
from septa.core.vm import BaseVM
from septa.hypervisor.agent_link import AgentLink
from septa.qrexec.mux import CallMux
from septa.qrexec.policy import Allow, Ask, Deny, PolicyCache, SystemInfo
from tests.unit.test_agent_calls import SRC, call_config, make_rpc_dir

TIMEOUT = 60.0
CLIENT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
          "from septa.agent.client_vm import main; sys.exit(main())")


class Qube:
    """A qube's agent serving one connection on a unix socket, in a thread."""

    def __init__(self, tmp_path: Path, name: str, services: dict[str, str] | None = None) -> None:
        self.name = name
        base = tmp_path / name
        self.rpc = make_rpc_dir(base / "qubes-rpc", services)
        self.path = base / "agent.sock"
        self.call_socket = base / "run" / "qrexec-agent.sock"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(1)
        self.conn: socket.socket | None = None
        self.agent: Agent | None = None
        self.log: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.conn, _ = self.server.accept()
        self.agent = Agent(
            SocketPort(self.conn), hostname=lambda: self.name, uptime=lambda: 1.0,
            poweroff=lambda: None, log=self.log.append, boot_complete=lambda: True,
            call_config=call_config(self.rpc), call_socket=str(self.call_socket),
        )
        self.agent.run(connections=1)

    @property
    def served_calls(self) -> bool:
        """Whether the host ever sent this agent a call frame (OPEN and the rest)."""
        return self.agent is not None and self.agent.calls is not None

    def close(self) -> None:
        if self.agent is not None and self.agent.outgoing is not None:
            self.agent.outgoing.close()
        if self.conn is not None:
            self.conn.close()
        self.thread.join(TIMEOUT)
        self.server.close()


class Targets:
    """The runtime stand-in: muxes of running qubes, and which ones calls went to.

    A "new disposable" is ``vault`` (recorded with its template), "destroyed" when its
    call ends (recorded too)."""

    def __init__(self) -> None:
        self.muxes: dict[str, CallMux] = {}
        self.asked: list[str] = []
        self.disposables: list[str] = []
        self.discarded: list[str] = []

    async def mux_for(self, name: str, autostart: bool) -> CallMux:
        self.asked.append(name)
        return self.muxes[name]

    async def new_disposable(self, template: str, source: str) -> str:
        self.disposables.append(f"{template} for {source}")
        return "vault"

    async def discard(self, name: str) -> None:
        self.discarded.append(name)


def system_info() -> SystemInfo:
    return SystemInfo.from_json({"domains": {
        "dom0": {"type": "AdminVM", "power_state": "Running"},
        "work": {"type": "AppVM", "power_state": "Running", "tags": ["trusted"]},
        "vault": {"type": "AppVM", "power_state": "Running"},
        "dvm": {"type": "AppVM", "template_for_dispvms": True},
    }})


class Setup:
    def __init__(self, tmp_path: Path, qubes: dict[str, Qube], relay: QrexecRelay,
                 targets: Targets, policy_dir: Path) -> None:
        self.tmp_path = tmp_path
        self.qubes = qubes
        self.relay = relay
        self.targets = targets
        self.policy_dir = policy_dir

    def policy(self, text: str) -> None:
        tmp = self.policy_dir / ".new"
        tmp.write_text(text)
        tmp.replace(self.policy_dir / "30-test.policy")

    async def call(self, target: str, call: str, stdin: bytes = b"",
                   caller: str = "work") -> tuple[int, bytes, bytes]:
        """Run qrexec-client-vm in ``caller``: (exit status, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, SRC, "--socket",
            str(self.qubes[caller].call_socket), target, call,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin)
        assert proc.returncode is not None
        return proc.returncode, out, err


Scenario = Callable[[Setup], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, policy: str = "",
        services: dict[str, str] | None = None) -> Setup:
    qubes = {name: Qube(tmp_path, name, services) for name in ("work", "vault")}
    policy_dir = tmp_path / "policy.d"
    policy_dir.mkdir()
    (policy_dir / "30-test.policy").write_text(policy)
    targets = Targets()
    relay = QrexecRelay(system_info, targets,
                        PolicyCache([policy_dir], legacy_dir=tmp_path / "none", root=tmp_path),
                        rpc_dir=make_rpc_dir(tmp_path / "dom0-rpc"))
    setup = Setup(tmp_path, qubes, relay, targets, policy_dir)

    async def main() -> None:
        links: list[AgentLink] = []
        try:
            for name, qube in qubes.items():
                link = AgentLink(name, qube.path)
                links.append(link)
                await link.connect(5.0)
                await link.wait_ready(5.0)
                mux = targets.muxes[name] = CallMux(link)
                relay.attach(mux)
            for qube in qubes.values():
                while not qube.call_socket.exists():
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(scenario(setup), TIMEOUT)
        finally:
            await relay.close()
            for mux in targets.muxes.values():
                await mux.close()
            for link in links:
                await link.close()

    try:
        asyncio.run(main())
    finally:
        for qube in qubes.values():
            qube.close()
    return setup


def test_allowed_call_relays_both_ways_with_exit_status(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        assert await s.call("vault", "test.Cat", b"hello vault\n") == (0, b"hello vault\n", b"")
        assert await s.call("vault", "test.Split") == (5, b"to-stdout\n", b"to-stderr\n")
        status, out, _ = await s.call("vault", "test.Env+some-arg")
        assert status == 0
        lines = out.decode().splitlines()
        assert "QREXEC_REMOTE_DOMAIN=work" in lines
        assert "QREXEC_REQUESTED_TARGET=vault" in lines
        assert "QREXEC_SERVICE_FULL_NAME=test.Env+some-arg" in lines
        assert "args:1:some-arg" in lines

    setup = run(tmp_path, scenario, "test.Cat * work vault allow\n"
                                    "test.Split * @tag:trusted @anyvm allow\n"
                                    "test.Env * work vault allow\n")
    assert setup.qubes["vault"].served_calls
    assert not setup.qubes["work"].served_calls  # the caller runs nothing itself


def test_large_stdin_and_stdout_respect_the_windows(tmp_path: Path) -> None:
    size = 3 * wire.INITIAL_WINDOW + 12345
    data = os.urandom(size)

    async def scenario(s: Setup) -> None:
        assert await s.call("vault", "test.Cat", data) == (0, data, b"")

    run(tmp_path, scenario, "test.Cat * work vault allow\n")


def test_denied_call_never_reaches_the_target(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        status, out, err = await s.call("vault", "test.Cat", b"secret")
        assert (status, out, err) == (126, b"", b"Request refused\n")

    setup = run(tmp_path, scenario, "test.Cat * work vault deny\n")
    assert setup.targets.asked == []
    assert not setup.qubes["vault"].served_calls


def test_no_matching_rule_denies(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        assert (await s.call("vault", "test.Cat"))[0] == 126
        assert (await s.call("vault", "test.Other"))[0] == 126
        assert (await s.call("nonexistent", "test.Cat"))[0] == 126
        assert (await s.call("@default", "test.Cat"))[0] == 126

    setup = run(tmp_path, scenario, "test.Other * vault work allow\n")
    assert setup.targets.asked == []
    assert not setup.qubes["vault"].served_calls


def test_ask_without_a_policy_agent_denies(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        assert (await s.call("vault", "test.Cat"))[0] == 126
        decision = await s.relay.decide("work", "vault", "test.Cat", "")
        assert isinstance(decision, Deny) and "no policy agent" in decision.reason

    setup = run(tmp_path, scenario, "test.Cat * work vault ask\n")
    assert not setup.qubes["vault"].served_calls


def test_ask_runs_the_call_in_the_target_the_user_chose(tmp_path: Path) -> None:
    questions: list[tuple[str, str, str, tuple[str, ...], str | None]] = []

    async def confirm(ask: Ask, source: str, service: str, arg: str) -> Allow | Deny:
        questions.append((source, service, arg, ask.targets, ask.default_target))
        return ask.answer("vault") if arg != "no" else Deny("the user said no")

    async def scenario(s: Setup) -> None:
        s.relay.confirm = confirm
        assert await s.call("@default", "test.Cat+yes", b"chosen") == (0, b"chosen", b"")
        assert (await s.call("@default", "test.Cat+no", b"refused"))[0] == 126

    setup = run(tmp_path, scenario, "test.Cat * work @default ask default_target=vault\n"
                                    "test.Cat * work vault ask\n")
    assert questions[0] == ("work", "test.Cat", "yes", ("vault",), "vault")
    assert [q[2] for q in questions] == ["yes", "no"]
    assert setup.targets.asked == ["vault"]


def test_dispvm_call_runs_in_a_new_disposable_destroyed_after(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        assert await s.call("@dispvm", "test.Cat", b"once") == (0, b"once", b"")
        assert await s.call("@dispvm:dvm", "test.Cat", b"twice") == (0, b"twice", b"")

    setup = run(tmp_path, scenario, "test.Cat * work @dispvm allow target=@dispvm:dvm\n"
                                    "test.Cat * work @dispvm:dvm allow\n")
    assert setup.targets.disposables == ["dvm for work", "dvm for work"]
    assert setup.targets.discarded == ["vault", "vault"]


class FakeAdmin:
    """The Admin API stand-in: answers with what it was asked and who it may list."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def respond_to(self, request: Request, permits: Callable[[BaseVM], bool] | None,
                         ) -> bytes:
        self.requests.append(request)
        assert permits is not None
        seen = [name for name in ("work", "vault", "dvm")
                if permits(cast("BaseVM", SimpleNamespace(name=name)))]
        return ok_frame(f"{request.dest} {request.arg} {' '.join(seen)} "
                        f"{request.payload.decode()}")


def test_admin_calls_from_qubes_follow_the_policy(tmp_path: Path) -> None:
    admin = FakeAdmin()

    async def scenario(s: Setup) -> None:
        s.relay.admin = AdminBridge(admin, s.relay.policy, system_info)
        assert await s.call("dom0", "admin.vm.List") == (0, b"0\0dom0  vault ", b"")
        assert await s.call("vault", "admin.vm.property.Get+label", b"x") == \
            (0, b"0\0vault label vault x", b"")
        assert (await s.call("work", "admin.vm.property.Get+label"))[0] == 126
        assert (await s.call("dom0", "admin.vm.Kill"))[0] == 126

    run(tmp_path, scenario, "admin.vm.List * work @adminvm allow\n"
                            "admin.vm.List * work vault allow target=dom0\n"
                            "admin.vm.property.Get * work vault allow target=dom0\n")
    assert [(r.source, r.method, r.dest) for r in admin.requests] == [
        ("work", "admin.vm.List", "dom0"), ("work", "admin.vm.property.Get", "vault")]


def test_policy_change_takes_effect(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        assert await s.call("vault", "test.Cat", b"one") == (0, b"one", b"")
        s.policy("test.Cat * work vault deny\n")
        assert (await s.call("vault", "test.Cat", b"two"))[0] == 126
        s.policy("test.Cat * work vault allow\n")
        assert await s.call("vault", "test.Cat", b"three") == (0, b"three", b"")

    setup = run(tmp_path, scenario, "test.Cat * work vault allow\n")
    assert setup.targets.asked == ["vault", "vault"]


def test_redirect_and_user_from_the_rule(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        status, out, _ = await s.call("@default", "test.Env")
        assert status == 0
        assert "QREXEC_REQUESTED_TARGET=@default" in out.decode().splitlines()

    setup = run(tmp_path, scenario, "test.Env * work @default allow target=vault\n")
    assert setup.targets.asked == ["vault"]


def test_call_to_dom0_runs_its_service(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        assert await s.call("dom0", "test.Cat", b"to dom0") == (0, b"to dom0", b"")
        status, out, _ = await s.call("@adminvm", "test.Env+x")
        assert status == 0
        assert "QREXEC_REMOTE_DOMAIN=work" in out.decode().splitlines()
        status, _, err = await s.call("dom0", "test.Missing")
        assert status == 127 and b"no service test.Missing" in err

    setup = run(tmp_path, scenario, "test.Cat * work @adminvm allow\n"
                                    "test.Env * work dom0 allow\n"
                                    "test.Missing * work dom0 allow\n")
    assert setup.targets.asked == []


def test_caller_going_away_aborts_the_remote(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, SRC, "--socket",
            str(s.qubes["work"].call_socket), "vault", "test.Pid",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        pid = int(await proc.stdout.readline())
        proc.kill()
        await proc.wait()
        for _ in range(500):
            if not alive(pid):
                break
            await asyncio.sleep(0.02)
        assert not alive(pid)

    run(tmp_path, scenario, "test.Pid * work vault allow\n")


def alive(pid: int) -> bool:
    from tests.unit.test_agent_calls import alive as agent_alive

    return agent_alive(pid)


def test_agent_refuses_a_client_that_does_not_start_with_call(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        reader, writer = await asyncio.open_unix_connection(str(s.qubes["work"].call_socket))
        writer.write(wire.Frame(wire.FrameType.DATA, 0, b"x").encode())
        await writer.drain()
        frames = wire.FrameDecoder().feed(await reader.read())
        assert [f.type for f in frames] == [wire.FrameType.ERROR]
        assert frames[0].json()["refused"] is True
        writer.close()

    setup = run(tmp_path, scenario, "test.Cat * work vault allow\n")
    assert not setup.qubes["vault"].served_calls
