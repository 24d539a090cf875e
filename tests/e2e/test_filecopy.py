"""File copy and open-in-qube between real qubes: qvm-copy, qvm-move, qvm-copy-to-vm (in
qubes and in dom0), a refused malicious stream, qvm-open-in-vm and qvm-open-in-dvm.

Two qubes share the module: ``fc-src`` sends, ``fc-dst`` receives. qvm-copy's target is
``@default``; Qubes' own policy for it is ``ask``, which needs a policy agent to answer,
so the policy here redirects ``@default`` with ``allow target=``. qvm-open-in-dvm opens
the file in a disposable of ``fc-dvm``, which has the same headless handler.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Qubes
from tests.wire import Daemon

pytestmark = pytest.mark.e2e

SRC, DST, DVM = "fc-src", "fc-dst", "fc-dvm"
POLICY = f"""\
qubes.Filecopy * {SRC} {DST} allow
qubes.Filecopy * {SRC} @default allow target={DST}
qubes.Filecopy * @adminvm {DST} allow
qubes.OpenInVM * {SRC} {DST} allow
qubes.OpenURL * {SRC} {DST} allow
qubes.OpenInVM * {SRC} @dispvm allow
"""
INCOMING = f"/home/user/QubesIncoming/{SRC}"

#: A file handler for headless qubes: logs what it opened and appends a line to it.
EDITOR = """#!/bin/sh
echo "opened $1" >> /home/user/opened.log
echo "edited in $(hostname)" >> "$1"
"""
MAILCAP = """text/plain; /home/user/editor %s
x-scheme-handler/https; echo %s >> /home/user/urls.log
"""


@pytest.fixture(scope="module")
def qubes_pair(e2e_daemon: Daemon) -> Iterator[Qubes]:
    qubes = Qubes(e2e_daemon)
    policy = e2e_daemon.paths.policy_dir / "30-septa-filecopy.policy"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(POLICY)
    try:
        for name in (SRC, DST):
            qubes.create(name)
            qubes.run("qvm-start", name)
        install_handler(qubes, DST)
        yield qubes
    finally:
        policy.unlink(missing_ok=True)
        for name in (SRC, DST, DVM):
            qubes.remove(name)


def install_handler(qubes: Qubes, name: str) -> None:
    sh(qubes, name, f"cat > /home/user/editor <<'EOF'\n{EDITOR}EOF\n"
                    "chmod 755 /home/user/editor\n"
                    f"cat > /home/user/.mailcap <<'EOF'\n{MAILCAP}EOF\n")


def sh(qubes: Qubes, qube: str, script: str, check: bool = True) -> tuple[int, str, str]:
    """Run a shell script in a qube as ``user``: (status, stdout, stderr). The script runs
    in a subshell, so that it may end with a here-document (qubes.VMShell appends
    ``; exit`` to the command line)."""
    done = qubes.run("qvm-run", "-p", qube, f"(\n{script.strip()}\n)", check=False,
                     timeout=900)
    if check and done.returncode != 0:
        raise AssertionError(f"{qube}: {script}\n-> {done.returncode}\n{done.stdout}\n"
                             f"{done.stderr}")
    return done.returncode, done.stdout, done.stderr


def test_big_file_arrives_byte_for_byte(qubes_pair: Qubes) -> None:
    qubes = qubes_pair
    _, digest, _ = sh(qubes, SRC, "head -c 100M /dev/urandom > /home/user/big.bin && "
                                  "chmod 640 /home/user/big.bin && "
                                  "sha256sum < /home/user/big.bin")
    status, out, err = sh(qubes, SRC, "qvm-copy /home/user/big.bin")
    assert status == 0
    assert out == ""
    assert "sent 102400/102400 KB" in err
    _, got, _ = sh(qubes, DST, f"sha256sum < {INCOMING}/big.bin; stat -c '%a %s' "
                               f"{INCOMING}/big.bin")
    assert got.splitlines() == [digest.strip(), f"640 {100 * 1024 * 1024}"]


TREE = """
set -e
mkdir -p /home/user/tree/sub/deeper /home/user/tree/empty-dir
cd /home/user/tree
echo hello > a.txt
: > empty
printf '#!/bin/sh\\n' > sub/run.sh && chmod 750 sub/run.sh
head -c 300000 /dev/urandom > sub/deeper/data.bin
ln -s deeper/data.bin sub/link
touch -d '2001-02-03 04:05:06.789' a.txt sub/deeper/data.bin
chmod 555 sub/deeper
touch -d '2002-01-01 00:00:00' sub sub/deeper empty-dir
"""
#: Every entry: type, path, mode, mtime, link target, file hash.
LIST = ("cd {0} && find . -mindepth 1 -printf '%y %P %m %T@ %l\\n' | sort && "
        "find . -type f -exec sha256sum {{}} + | sort -k 2")


def test_directory_tree_keeps_modes_times_and_links(qubes_pair: Qubes) -> None:
    qubes = qubes_pair
    sh(qubes, SRC, TREE)
    _, expected, _ = sh(qubes, SRC, LIST.format("/home/user/tree"))
    sh(qubes, SRC, f"qvm-copy-to-vm {DST} /home/user/tree/")
    _, got, _ = sh(qubes, DST, LIST.format(f"{INCOMING}/tree"))
    assert got == expected
    assert "l sub/link 777" in got and "d sub/deeper 555" in got


EVIL = r"""
import os, struct, sys
def entry(name, mode, data=b""):
    return struct.pack("<IIQIIII", len(name) + 1, mode, len(data), 0, 0, 0, 0) + name + b"\0" + data
streams = {
    "dotdot": entry(b"../evil", 0o100644, b"pwned"),
    "absolute": entry(b"/tmp/evil", 0o100644, b"pwned"),
    "symlink": entry(b"d", 0o40755) + entry(b"d/l", 0o120777, b"../../../../tmp"),
    "escape": entry(b"ok\x1b]0;title\x07", 0o100644, b"x"),
}
sys.stdout.buffer.write(streams[sys.argv[1]] + bytes(32))
"""
RESULT = "python3 -c 'import struct,sys; print(struct.unpack(\"<I\", sys.stdin.buffer.read(4))[0])'"


@pytest.mark.parametrize(("kind", "code"), [("dotdot", 84), ("absolute", 84),
                                            ("symlink", 67), ("escape", 84)])
def test_malicious_stream_is_refused_and_writes_nothing_outside(
        qubes_pair: Qubes, kind: str, code: int) -> None:
    qubes = qubes_pair
    sh(qubes, SRC, f"cat > /tmp/evil.py <<'EOF'\n{EVIL}EOF\n")
    listing = f"mkdir -p {INCOMING}; ls -A /home/user /home/user/QubesIncoming /tmp"
    before = sh(qubes, DST, listing)[1]
    _, out, _ = sh(qubes, SRC, f"python3 /tmp/evil.py {kind} | "
                               f"qrexec-client-vm {DST} qubes.Filecopy | {RESULT}")
    assert out.strip() == str(code)
    assert sh(qubes, DST, listing)[1] == before
    _, out, _ = sh(qubes, DST, f"find {INCOMING} -maxdepth 2 -name 'ok*' -o -path '*/d/*'; "
                               "ls /tmp/evil /home/user/evil /home/user/QubesIncoming/evil 2>&1; "
                               f"rm -rf {INCOMING}/d; true")
    assert out.count("No such file") == 3, out
    assert INCOMING not in out, out


def test_qvm_move_removes_the_source_only_after_success(qubes_pair: Qubes) -> None:
    qubes = qubes_pair
    sh(qubes, SRC, "mkdir -p /home/user/mv && echo one > /home/user/mv/moved.txt")
    sh(qubes, SRC, "qvm-move --without-progress /home/user/mv/moved.txt")
    assert sh(qubes, DST, f"cat {INCOMING}/moved.txt")[1] == "one\n"
    assert sh(qubes, SRC, "ls -A /home/user/mv")[1] == ""
    # A second move of the same name fails in the receiver: the source stays.
    sh(qubes, SRC, "echo two > /home/user/mv/moved.txt")
    status, _, err = sh(qubes, SRC, "qvm-move /home/user/mv/moved.txt", check=False)
    assert status == 1
    assert 'A file named "moved.txt" already exists in QubesIncoming dir' in err
    assert sh(qubes, SRC, "cat /home/user/mv/moved.txt")[1] == "two\n"


def test_dom0_qvm_copy_to_vm(qubes_pair: Qubes, tmp_path: Path) -> None:
    qubes = qubes_pair
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "from-dom0").mkdir()
    (tmp_path / "from-dom0" / "blob").write_bytes(data)
    (tmp_path / "from-dom0" / "blob").chmod(0o604)
    done = qubes.run("qvm-copy-to-vm", DST, str(tmp_path / "from-dom0"))
    assert "sent 3073/3073 KB" in done.stderr
    _, out, _ = sh(qubes, DST, "cd /home/user/QubesIncoming/dom0/from-dom0 && "
                               "sha256sum < blob && stat -c %a blob")
    assert out.splitlines() == [f"{hashlib.sha256(data).hexdigest()}  -", "604"]
    again = qubes.run("qvm-copy-to-vm", "--without-progress", DST,
                      str(tmp_path / "from-dom0"), check=False)
    assert again.returncode == 1
    assert 'A file named "from-dom0/blob" already exists' in again.stderr


def test_open_in_vm_opens_and_edits_come_back(qubes_pair: Qubes) -> None:
    qubes = qubes_pair
    sh(qubes, SRC, "echo 'my notes' > /home/user/notes.txt && chmod 604 /home/user/notes.txt")
    sh(qubes, SRC, f"qvm-open-in-vm {DST} /home/user/notes.txt")
    _, out, _ = sh(qubes, SRC, "cat /home/user/notes.txt; stat -c %a /home/user/notes.txt")
    assert out == f"my notes\nedited in {DST}\n604\n"
    log = sh(qubes, DST, "cat /home/user/opened.log")[1]
    assert re.fullmatch(rf"opened /tmp/{SRC}-\w+/notes.txt\n", log)
    assert sh(qubes, DST, f"ls /tmp | grep -c '^{SRC}-' || true")[1].strip() == "0"

    url = "https://example.org/path?q=1"
    sh(qubes, SRC, f"qvm-open-in-vm {DST} {shlex.quote(url)}")
    assert sh(qubes, DST, "cat /home/user/urls.log")[1] == url + "\n"
    status, _, err = sh(qubes, SRC, f"qvm-open-in-vm {DST} 'javascript://x'", check=False)
    assert status == 0  # the local program's status, as in Qubes; the service refused
    assert "Invalid URL" in err


def test_open_in_dvm(qubes_pair: Qubes) -> None:
    qubes = qubes_pair
    qubes.create(DVM, "--prop", "template_for_dispvms=True")
    qubes.run("qvm-start", DVM)
    install_handler(qubes, DVM)
    qubes.run("qvm-shutdown", "--wait", "--timeout", "120", DVM)
    qubes.run("qvm-prefs", SRC, "default_dispvm", DVM)
    sh(qubes, SRC, "echo 'for a disposable' > /home/user/dvm.txt")
    before = set(qubes.run("qvm-ls", "--raw-list").stdout.split())
    sh(qubes, SRC, "qvm-open-in-dvm /home/user/dvm.txt")
    out = sh(qubes, SRC, "cat /home/user/dvm.txt")[1]
    assert re.fullmatch(r"for a disposable\nedited in disp\d+\n", out), out
    deadline = time.monotonic() + 120  # the relay destroys the disposable after the call
    while set(qubes.run("qvm-ls", "--raw-list").stdout.split()) != before:
        assert time.monotonic() < deadline, "the disposable must be gone"
        time.sleep(1)
