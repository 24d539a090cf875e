"""septad under hostile and unlucky conditions: fuzzed requests, kill -9 in mid-write."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from pathlib import Path

from septa.api import daemon  # noqa: F401 - registers the methods
from septa.api.dispatch import TABLE
from septa.api.protocol import parse_request
from septa.core import store
from septa.core.errors import ProtocolError
from septa.paths import Paths
from tests.wire import Daemon, raw_call, request

SIDE_EFFECTS = {"admin.vm.firewall.Set", "admin.vm.firewall.Reload", "admin.vm.notes.Set"}
SEEDS = [
    request("admin.vm.List"),
    request("admin.vm.List", "work"),
    request("admin.vmclass.List"),
    request("admin.label.List"),
    request("admin.label.Get", arg="red"),
    request("admin.property.GetAll"),
    request("admin.property.Get", arg="default_template"),
    request("admin.vm.property.Get", "work", arg="memory"),
    request("admin.vm.property.GetAll", "work"),
    request("admin.vm.property.GetDefault", "work", arg="netvm"),
    request("admin.vm.feature.List", "work"),
    request("admin.vm.feature.CheckWithTemplateAndAdminVM", "work", arg="os"),
    request("admin.vm.tag.Get", "work", arg="x"),
    request("admin.vm.notes.Get", "work"),
    request("admin.vm.firewall.Get", "work"),
    request("admin.vm.CurrentState", "work"),
    request("admin.vm.property.Set", "work", b"1200", "memory"),
    request("admin.vm.Create.AppVM", payload=b"name=fuzzed label=red"),
    request("admin.vm.Remove", "work"),
    request("admin.vm.feature.Set", "work", b"val", "feat"),
    request("admin.vm.notes.Set", "work", b"notes"),
    request("admin.vm.firewall.Set", "work", b"action=drop\n"),
]
INVALID_WRITES = [
    request("admin.vm.property.Set", "work", b"-1", "memory"),
    request("admin.vm.property.Set", "work", b"many", "vcpus"),
    request("admin.vm.property.Set", "work", b"pink", "label"),
    request("admin.vm.property.Set", "work", b"debian-12", "netvm"),
    request("admin.vm.property.Set", "work", b"x", "name"),
    request("admin.vm.property.Set", "work", b"5", "qid"),
    request("admin.vm.property.Reset", "work", arg="uuid"),
    request("admin.property.Set", payload=b"work", arg="default_template"),
    request("admin.vm.Create.AppVM", payload=b"name=-bad label=red"),
    request("admin.vm.Create.AppVM", payload=b"name=ok label=nolabel"),
    request("admin.vm.Create.AppVM", payload=b"name=ok"),
    request("admin.vm.Create.AppVM", arg="work", payload=b"name=ok label=red"),
    request("admin.vm.Remove", "debian-12"),
    request("admin.vm.Remove", "dom0"),
    request("admin.vm.feature.Set", "work", b"v", "bad/name"),
    request("admin.vm.tag.Set", "work", arg="bad.tag"),
    request("admin.vm.firewall.Set", "work", b"action=accept dstports=80\n"),
    request("admin.vm.notes.Set", "work", b"\xff\xfe"),
    request("admin.label.Create", arg="red", payload=b"0x123456"),
    request("admin.label.Remove", arg="red"),
]


def _is_writer(data: bytes) -> bool:
    try:
        spec, _ = TABLE.lookup(parse_request(data).method)
    except ProtocolError:
        return False
    return spec.writes or spec.name in SIDE_EFFECTS


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and buf:
            del buf[pos:pos + rng.randint(1, 8)]
        elif op == 3:
            buf[pos:pos] = rng.choice([b"\0", b" ", b"+", b"%", b"\n", b"uuid:", b"..", b"\\"])
        else:
            buf = buf[:pos]
    return bytes(buf)


def _fuzz_case(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    if kind == 1:
        method = rng.choice(TABLE.names())
        return request(method, rng.choice(["dom0", "work", "ghost", "uuid:x"]),
                       bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))),
                       rng.choice(["", "memory", "x", "netvm", "%s"]))
    if kind == 2:
        return rng.choice(SEEDS) + b"y" * rng.choice([65536, 70000])
    return _mutate(rng, rng.choice(SEEDS))


def _file_digest(path: Path) -> str:
    info = path.stat()
    if info.st_size > 1 << 20:
        # volume images are large and sparse: their size, allocation and mtime tell a change
        return f"{info.st_size}/{info.st_blocks}/{info.st_mtime_ns}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state_digest(root: Path) -> dict[str, str]:
    base = Paths(root).qubes_base
    return {str(p.relative_to(base)): _file_digest(p)
            for p in sorted(base.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def _setup(septad: Daemon) -> None:
    septad.ok("admin.vm.Create.TemplateVM", payload=b"name=debian-12 label=black")
    septad.ok("admin.vm.Create.AppVM", arg="debian-12", payload=b"name=work label=blue")
    septad.ok("admin.vm.feature.Set", "work", arg="os", payload=b"Linux")
    septad.ok("admin.vm.notes.Set", "work", payload=b"notes")


def test_fuzzed_requests_never_break_the_daemon_or_the_registry(septad: Daemon) -> None:
    _setup(septad)
    before = _state_digest(septad.root)
    for data in INVALID_WRITES:
        answer = raw_call(septad.paths.admin_socket, data)
        assert answer.startswith(b"2\0"), (data, answer)
    rng = random.Random(20261130)
    answered = 0
    for _ in range(3000):
        data = _fuzz_case(rng)
        if _is_writer(data):
            continue
        answer = raw_call(septad.paths.admin_socket, data)
        assert answer[:2] in (b"0\0", b"2\0", b"1\0"), (data, answer)
        answered += 1
    for _ in range(50):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(septad.paths.admin_socket))
        sock.sendall(b"admin.vm.List+ dom0 na")
        sock.close()
    assert answered > 2500
    assert septad.proc is not None and septad.proc.poll() is None
    assert septad.ok("admin.vm.property.Get", "work", arg="memory") == "default=True type=int 400"
    assert _state_digest(septad.root) == before


def test_kill_9_leaves_a_whole_registry_and_loses_no_acknowledged_change(septad: Daemon) -> None:
    _setup(septad)
    rng = random.Random(7)
    for _round in range(5):
        acknowledged = -1
        sent = -1
        stop = threading.Event()

        def writer(stop: threading.Event = stop) -> None:
            nonlocal acknowledged, sent
            value = 0
            while not stop.is_set():
                sent = value
                try:
                    answer = septad.call("admin.vm.property.Set", "work",
                                         str(value).encode(), "qrexec_timeout")
                except OSError:
                    return
                if answer.startswith(b"0\0"):
                    acknowledged = value
                value += 1

        thread = threading.Thread(target=writer, daemon=True)
        # write a few before the kill so that values have to be persisted in order
        septad.ok("admin.vm.property.Set", "work", b"1", "qrexec_timeout")
        thread.start()
        time.sleep(rng.uniform(0.2, 1.0))
        septad.kill()
        stop.set()
        thread.join(timeout=30)
        app = store.load(Paths(septad.root))
        stored = app.domains["work"].get("qrexec_timeout")
        assert acknowledged <= stored <= max(sent, 1), (acknowledged, stored, sent)
        assert acknowledged > 0
        septad.start()
