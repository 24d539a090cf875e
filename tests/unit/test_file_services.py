"""The file services between two qubes without VMs: qrexec-client-vm with a local program,
qvm-copy / qvm-move, qvm-open-in-vm (file and URL), and dom0's qvm-copy-to-vm.

The harness of :mod:`tests.unit.test_qrexec_relay` runs two real agents (``work`` and
``vault``) and the real relay; the tools run as processes in ``work`` (pointed at its
agent socket by ``SEPTA_AGENT_SOCKET``), and each qube's ``user`` has a home of its own
in the test's temp dir.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

import tests.unit.test_qrexec_relay as relay_harness
from septa.agent import client_vm, mailcaps, opener, qfile
from septa.agent.file_editor import EditorError, parse_name_block
from septa.agent.open_sender import name_block
from septa.agent.open_url import valid_url
from septa.agent.request import CallConfig, User
from septa.tools import qvm_copy_to_vm
from tests.unit.test_agent_calls import SRC
from tests.unit.test_qrexec_relay import Setup

TOOL = ("import sys; sys.path.insert(0, sys.argv.pop(1)); prog = sys.argv.pop(1); "
        "import importlib; sys.exit(importlib.import_module(sys.argv.pop(1)).main(prog=prog))")
CLIENT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
          "from septa.agent.client_vm import main; sys.exit(main())")


@pytest.fixture(autouse=True)
def homes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each qube's ``user`` is the current user with the home ``<qube dir>/home``."""
    def call_config(rpc: Path) -> CallConfig:
        home = rpc.parent / "home"
        home.mkdir(exist_ok=True)
        entry = pwd.getpwuid(os.getuid())

        def lookup(name: str) -> User:
            return User(entry.pw_name, entry.pw_uid, entry.pw_gid,
                        os.getgrouplist(entry.pw_name, entry.pw_gid), str(home), "/bin/sh")
        return CallConfig(rpc_dirs=[str(rpc)], lookup_user=lookup)

    monkeypatch.setattr(relay_harness, "call_config", call_config)


def home(s: Setup, qube: str) -> Path:
    return s.tmp_path / qube / "home"


async def tool(s: Setup, prog: str, *args: str, caller: str = "work",
               env: dict[str, str] | None = None, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run a guest tool in ``caller``: (exit status, stdout, stderr)."""
    module = {"qrexec-client-vm": ""}.get(prog, "septa.agent.filecopy")
    if prog.startswith("qvm-open"):
        module = "septa.agent.openinvm"
    if prog == "qrexec-client-vm":
        argv = [sys.executable, "-c", CLIENT, SRC, *args]
    else:
        argv = [sys.executable, "-c", TOOL, SRC, prog, module, *args]
    full_env = {**os.environ, "SEPTA_AGENT_SOCKET": str(s.qubes[caller].call_socket),
                **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=full_env, cwd=str(s.tmp_path))
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- qrexec-client-vm ------------------------------------------------------------------------


def test_options_are_parsed_as_qubes_does() -> None:
    opts = client_vm.parse_args(["-tT", "--buffer-size=0x1000", "-a/run/x", "--prefix-data",
                                 "hi", "$dispvm", "svc+arg", "/bin/prog", "-v"])
    assert (opts.filter_stdout, opts.filter_stderr, opts.socket, opts.prefix) == \
        (True, True, "/run/x", b"hi")
    assert opts.words == ["$dispvm", "svc+arg", "/bin/prog", "-v"]
    opts = client_vm.parse_args(["-t", "--no-filter-escape-chars-stdout", "--", "-x", "s"])
    assert opts.filter_stdout is False and opts.words == ["-x", "s"]
    for bad in (["vm"], ["--bogus", "vm", "s"], ["--buffer-size=x1", "vm", "s"],
                ["--buffer-size=12k", "vm", "s"], ["-p", "a", "-p", "b", "vm", "s"], ["vm", ""]):
        with pytest.raises(client_vm.UsageError):
            client_vm.parse_args(bad)
    with pytest.raises(client_vm.UsageError) as info:
        client_vm.parse_args(["--help"])
    assert info.value.args == (0,)


def test_escape_filter() -> None:
    assert b"a\x1b[31mb\tc\n\xc3\xa9\x07".translate(client_vm.FILTER) == b"a_[31mb\tc\n__\x07"


def test_local_program_is_connected_to_the_service(tmp_path: Path) -> None:
    script = 'echo ping; read line; echo "back: $line" >&2; exit 7'

    async def scenario(s: Setup) -> None:
        status, out, err = await tool(s, "qrexec-client-vm", "vault", "test.Cat",
                                      "/bin/sh", "-c", script)
        assert (status, out, err) == (7, "", "back: ping\n")
        status, out, err = await tool(s, "qrexec-client-vm", "vault", "test.Split", "/bin/cat")
        assert (status, err) == (0, "to-stderr\n")  # the program's status, not the service's
        status, _, err = await tool(s, "qrexec-client-vm", "vault", "test.Cat", "no/such")
        assert status == 127 and "cannot run no/such" in err

    relay_harness.run(tmp_path, scenario, "test.Cat * work vault allow\n"
                                          "test.Split * work vault allow\n")


def test_refused_call_ends_the_local_program(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        marker = s.tmp_path / "ran"
        status, _, err = await tool(s, "qrexec-client-vm", "vault", "test.Cat", "/bin/sh",
                                    "-c", f"read x; touch {marker}")
        assert (status, err) == (126, "Request refused\n")
        assert not marker.exists()

    relay_harness.run(tmp_path, scenario, "test.Cat * work vault deny\n")


def test_prefix_data_and_filters(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        status, out, _ = await tool(s, "qrexec-client-vm", "-t", "--prefix-data=\x1bpre-",
                                    "vault", "test.Cat", stdin=b"stdin\x01")
        assert (status, out) == (0, "_pre-stdin_")

    relay_harness.run(tmp_path, scenario, "test.Cat * work vault allow\n")


# --- qvm-copy / qvm-move -------------------------------------------------------------------


def make_files(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("hello\n")
    (docs / "sub" / "data.bin").write_bytes(os.urandom(700_000))
    (docs / "sub" / "tool").write_text("#!/bin/sh\n")
    (docs / "sub" / "tool").chmod(0o700)
    (docs / "sub" / "link").symlink_to("data.bin")
    return docs


def test_qvm_copy_to_vm_and_qvm_move(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        docs = make_files(s.tmp_path / "src")
        status, out, err = await tool(s, "qvm-copy-to-vm", "vault", str(docs))
        assert status == 0, err
        assert "qvm-copy/qvm-move instead" in err and "sent 684/684 KB" in err
        got = home(s, "vault") / "QubesIncoming" / "work" / "docs"
        assert sha(got / "sub" / "data.bin") == sha(docs / "sub" / "data.bin")
        assert stat.S_IMODE((got / "sub" / "tool").stat().st_mode) == 0o700
        assert os.readlink(got / "sub" / "link") == "data.bin"
        assert docs.exists()

        status, _, err = await tool(s, "qvm-copy-to-vm", "vault", str(docs))
        assert status == 1
        assert 'A file named "docs/a.txt" already exists in QubesIncoming dir' in err

        (s.tmp_path / "move-me").write_text("moving")
        status, out, err = await tool(s, "qvm-move", "--without-progress",
                                      str(s.tmp_path / "move-me"))
        assert (status, out, err) == (0, "", "")
        assert (got.parent / "move-me").read_text() == "moving"
        assert not (s.tmp_path / "move-me").exists()

    relay_harness.run(tmp_path, scenario, "qubes.Filecopy * work vault allow\n"
                                          "qubes.Filecopy * work @default allow target=vault\n")


def test_refused_copy_and_move_keep_the_sources(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        (s.tmp_path / "keep").write_text("x")
        status, _, err = await tool(s, "qvm-move-to-vm", "vault", str(s.tmp_path / "keep"))
        assert status == 126 and "Request refused" in err
        assert (s.tmp_path / "keep").exists()
        status, _, err = await tool(s, "qvm-copy", "..")
        assert status == 1 and "Refusing to copy" in err
        status, _, err = await tool(s, "qvm-copy")
        assert status == 1 and "usage: qvm-copy [--without-progress]" in err
        status, out, _ = await tool(s, "qvm-copy", "--help")
        assert status == 0 and "QubesIncoming" in out

    relay_harness.run(tmp_path, scenario, "qubes.Filecopy * work vault deny\n")


def test_unsafe_names_need_allow_all_names(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        odd = s.tmp_path / "odd\x1bname"
        odd.write_text("x")
        status, _, err = await tool(s, "qvm-copy-to-vm", "vault", str(odd))
        assert status == 126
        s.policy("qubes.Filecopy +allow-all-names work vault allow\n")
        status, _, err = await tool(s, "qvm-copy-to-vm", "vault", str(odd))
        assert status == 0, err
        assert (home(s, "vault") / "QubesIncoming" / "work" / "odd\x1bname").is_file()

    relay_harness.run(tmp_path, scenario, "qubes.Filecopy + work vault allow\n")


def test_crafted_stream_is_refused_by_the_service(tmp_path: Path) -> None:
    stream = (qfile.FileHeader(8, stat.S_IFREG | 0o644, 4).encode() + b"../evil\0" + b"evil"
              + qfile.FileHeader().encode())

    async def scenario(s: Setup) -> None:
        status, out, _ = await tool(s, "qrexec-client-vm", "vault", "qubes.Filecopy",
                                    stdin=stream)
        answer = out.encode("latin-1", errors="replace")
        assert status == errno.EILSEQ
        assert qfile.RESULT_HEADER.unpack(answer[:16])[0] == errno.EILSEQ
        assert not (home(s, "vault") / "QubesIncoming" / "evil").exists()
        assert list((home(s, "vault") / "QubesIncoming" / "work").iterdir()) == []

    relay_harness.run(tmp_path, scenario, "qubes.Filecopy * work vault allow\n")


# --- qvm-open-in-vm ------------------------------------------------------------------------

EDITOR = """#!/bin/sh
echo "opened $1" >> "$HOME/opened.log"
printf 'edited by vault\\n' >> "$1"
"""


def test_open_in_vm_edits_come_back(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        vault = home(s, "vault")
        (vault / "editor").write_text(EDITOR)
        (vault / "editor").chmod(0o755)
        (vault / ".mailcap").write_text(f"text/plain; {vault}/editor %s\n"
                                        f"x-scheme-handler/https; echo url %s >> {vault}/urls\n")
        doc = s.tmp_path / "notes.txt"
        doc.write_text("original\n")
        doc.chmod(0o640)
        status, _, err = await tool(s, "qvm-open-in-vm", "vault", str(doc))
        assert status == 0, err
        assert doc.read_text() == "original\nedited by vault\n"
        assert stat.S_IMODE(doc.stat().st_mode) == 0o640
        log = (vault / "opened.log").read_text()
        assert log.startswith("opened /tmp/work-") and log.endswith("/notes.txt\n")

        status, _, err = await tool(s, "qvm-open-in-vm", "--view-only", "vault", str(doc))
        assert status == 0, err
        assert doc.read_text() == "original\nedited by vault\n"

        status, _, err = await tool(s, "qvm-open-in-vm", "vault", "https://example.org/a?b")
        assert status == 0, err
        assert (vault / "urls").read_text() == "url https://example.org/a?b\n"

        status, _, err = await tool(s, "qvm-open-in-vm", "vault", "not-a-file")
        assert status == 2 and 'Error! "not-a-file" is not a valid file or URL.' in err

    relay_harness.run(tmp_path, scenario, "qubes.OpenInVM * work vault allow\n"
                                          "qubes.OpenURL * work vault allow\n")


@pytest.mark.skipif(any(opener.which(c) for c in ("run-mailcap", "mimeopen"))
                    or any(os.path.exists(p) for p in mailcaps.DEFAULT_FILES[1:]),
                    reason="this host has a file handler")
def test_open_in_vm_without_handler_leaves_the_file(tmp_path: Path) -> None:
    async def scenario(s: Setup) -> None:
        doc = s.tmp_path / "data.xyz"
        doc.write_text("same")
        status, _, err = await tool(s, "qvm-open-in-vm", "vault", str(doc))
        assert status == 0  # the local program's status, as in Qubes
        assert "no handler" in err
        assert doc.read_text() == "same"

    relay_harness.run(tmp_path, scenario, "qubes.OpenInVM * work vault allow\n")


def test_name_block_round_trip() -> None:
    assert parse_name_block(name_block("/x/My File (1).pdf", False)) == ("My_File__1_.pdf", False)
    assert parse_name_block(name_block("a.txt", True)) == ("a.txt", True)
    long = "x" * 300 + ".txt"
    name, _ = parse_name_block(name_block(long, False))
    assert name.endswith(".txt") and len(name) == 255
    for bad in (b"a/b", b"..", b""):
        with pytest.raises(EditorError):
            parse_name_block(bad.ljust(256, b"\0"))


def test_url_validation() -> None:
    assert valid_url("https://example.org/x?y=1#z") and valid_url("ftp://h/f")
    for bad in ("file:///etc/passwd", "javascript:alert(1)", "https://a b", "http://\x1b",
                "HTTPS//x", ""):
        assert not valid_url(bad)


# --- dom0's qvm-copy-to-vm -----------------------------------------------------------------


def test_dom0_qvm_copy_to_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capfd: pytest.CaptureFixture[str]) -> None:
    """The tool's stream, through a stand-in for the call, unpacked by the service."""
    from septa.agent.qfile_unpack import Unpacker

    dest = tmp_path / "qube-home" / "QubesIncoming" / "dom0"
    dest.mkdir(parents=True)
    requests = []

    def fake_run_call(request: object, *, stdin: object, stdout: object,
                      stderr: object) -> int:
        requests.append(request)
        out_r, out_w = os.pipe()
        root = os.open(dest, os.O_RDONLY)
        try:
            code = Unpacker(stdin.fileno(), out_w, root).run()  # type: ignore[attr-defined]
        finally:
            os.close(out_w)
            os.close(root)
        with os.fdopen(out_r, "rb") as answer:
            stdout(answer.read())  # type: ignore[operator]
        return min(code, 255)

    monkeypatch.setattr(qvm_copy_to_vm, "run_call", fake_run_call)
    docs = make_files(tmp_path / "src")
    assert qvm_copy_to_vm.main(["work", str(docs) + "/"]) == 0
    assert sha(dest / "docs" / "sub" / "data.bin") == sha(docs / "sub" / "data.bin")
    assert requests[0].service == "qubes.Filecopy" and requests[0].arg == ""
    assert "sent 684/684 KB" in capfd.readouterr().err
    assert qvm_copy_to_vm.main(["--without-progress", "work", str(docs)]) == 1
    assert 'A file named "docs/a.txt" already exists' in capfd.readouterr().err


# --- what the template ships ---------------------------------------------------------------


def test_the_template_ships_the_file_tools_and_services(tmp_path: Path) -> None:
    import importlib

    from septa.templates import guestfiles
    from septa.templates.recipe import load_recipe

    recipe = Path(__file__).resolve().parents[2] / "templates" / "recipes" / "debian-12.toml"
    guestfiles.install(tmp_path, load_recipe(recipe))
    for name, (module, _) in guestfiles.GUEST_TOOLS.items():
        launcher = tmp_path / "usr" / "bin" / name
        assert launcher.stat().st_mode & 0o777 == 0o755
        text = launcher.read_text()
        compile(text, name, "exec")
        assert f"from septa.agent.{module} import main" in text
        assert callable(importlib.import_module(f"septa.agent.{module}").main)
    rpc = tmp_path / "etc" / "qubes-rpc"
    for service in ("qubes.Filecopy", "qubes.OpenInVM", "qubes.OpenURL"):
        assert (rpc / service).stat().st_mode & 0o777 == 0o755
        compile((rpc / service).read_text(), service, "exec")
