"""Wall time of ``qvm-ls`` with a large registry, against interpreter start-up and real Qubes.

Starts a private ``septad`` under a fresh temporary ``SEPTA_ROOT`` with one template and
``--qubes`` AppVMs (created through the API), then times, interleaved repetition by
repetition (median of ``--repeat``):

- ``.venv/bin/qvm-ls``, our tool (skipped with a note while it does not work yet);
- the reference ``.venv/bin/python -c "import septa.client"``: interpreter start-up plus
  the import of our client library, the floor of any of our tools;
- ``python -c pass`` for context (bare interpreter start-up);
- if the unmodified Qubes 4.3 client is at ``/opt/qubesadmin-4.3``, its ``qvm-ls``
  against the same daemon. It uses ``/var/run/qubesd.sock`` only when
  ``/etc/qubes-release`` exists, so it runs in a private mount namespace (``unshare -m``:
  an overlay on /etc adding ``qubes-release``, a tmpfs on /run, our socket bound onto
  /run/qubesd.sock). Every command is spawned the same way (fork, a pre-exec hook that
  enters that namespace or does nothing, exec), so the spawn cost is equal for all.
  Anything failing there skips this comparison with a printed note.

Usage: ``.venv/bin/python bench/qvm_ls.py [--qubes N] [--repeat R]``
"""

from __future__ import annotations

import argparse
import ctypes
import os
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import _harness as h

QUBESADMIN = Path("/opt/qubesadmin-4.3")
QUBESADMIN_PYTHON = QUBESADMIN / "venv" / "bin" / "python"
QUBESADMIN_QVM_LS = "import sys; from qubesadmin.tools.qvm_ls import main; sys.exit(main())"
CLONE_NEWNS = 0x00020000


def _no_hook() -> None:
    """The pre-exec hook of commands that run in our own namespace."""


@dataclass
class Command:
    """One timed command and its wall times, one per repetition."""

    label: str
    short: str
    argv: list[str]
    env: dict[str, str]
    hook: Callable[[], None] = _no_hook
    expect: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def probe(self) -> str | None:
        """Run once (also a warm-up); None if it works, else why not."""
        try:
            proc = subprocess.run(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                  capture_output=True, preexec_fn=self.hook, check=False,
                                  timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"cannot run: {exc}"
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            return f"exit status {proc.returncode}: {' / '.join(err[-3:]) or '(no stderr)'}"
        out = proc.stdout.decode(errors="replace").split()
        missing = [word for word in self.expect if word not in out]
        if missing:
            return f"output lacks {', '.join(missing)} (got {len(out)} words)"
        return None

    def time_once(self) -> None:
        self.times.append(h.wall_time(self.argv, self.env, self.hook))


@contextmanager
def qubes_namespace(root: Path, socket_path: str) -> Iterator[Callable[[], None]]:
    """A mount namespace where the Qubes client finds /etc/qubes-release and our socket.

    Yields the pre-exec hook that moves a child into it; raises :class:`h.BenchError`
    (with the reason) when it cannot be set up.
    """
    if os.geteuid() != 0:
        raise h.BenchError("needs root (unshare -m, mount)")
    ns_dir = root / "qubes-ns"
    (ns_dir / "upper").mkdir(parents=True)
    (ns_dir / "work").mkdir()
    (ns_dir / "upper" / "qubes-release").write_text("Qubes release 4.3 (R4.3)\n")
    run_dir = os.path.realpath("/var/run")
    if root.resolve().is_relative_to(run_dir) or root.resolve().is_relative_to("/etc"):
        raise h.BenchError(f"the temporary root {root} would be hidden by the mounts")
    q = shlex.quote
    script = "\n".join([
        "set -e",
        "mount --make-rprivate /",
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={q(str(ns_dir / 'upper'))},"
        f"workdir={q(str(ns_dir / 'work'))} /etc",
        f"mount -t tmpfs tmpfs {q(run_dir)}",
        f"touch {q(run_dir)}/qubesd.sock",
        f"mount --bind {q(socket_path)} {q(run_dir)}/qubesd.sock",
        "test -e /etc/qubes-release",
        "echo ready",
        "exec sleep infinity",
    ])
    try:
        holder = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise h.BenchError(f"cannot run unshare: {exc}") from exc
    ns_fd = -1
    try:
        assert holder.stdout is not None and holder.stderr is not None
        ready, _, _ = select.select([holder.stdout], [], [], 10.0)
        line = holder.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            holder.kill()
            _, err = holder.communicate()
            raise h.BenchError("namespace setup failed: "
                               + (" ".join(err.decode(errors="replace").split())
                                  or "no 'ready' in 10 s"))
        ns_path = f"/proc/{holder.pid}/ns/mnt"
        if os.stat(ns_path).st_ino == os.stat("/proc/self/ns/mnt").st_ino:
            raise h.BenchError("unshare did not create a new mount namespace")
        ns_fd = os.open(ns_path, os.O_RDONLY)
        libc = ctypes.CDLL(None, use_errno=True)
        setns = libc.setns
        fd = ns_fd

        def enter() -> None:
            if setns(fd, CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "setns into the Qubes namespace failed")

        yield enter
    finally:
        if ns_fd >= 0:
            os.close(ns_fd)
        if holder.poll() is None:
            holder.terminate()
        holder.wait()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Wall time of qvm-ls with many qubes, against interpreter start-up.")
    parser.add_argument("--qubes", type=int, default=1000, help="AppVMs to create (1000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per figure (5)")
    args = parser.parse_args(argv)
    if args.qubes < 1 or args.repeat < 1:
        parser.error("need --qubes >= 1 and --repeat >= 1")
    return args


def _commands(daemon: h.Septad, qubes: int) -> list[Command]:
    python = str(h.VENV_BIN / "python")
    names = ["dom0", "tpl", "app0", f"app{qubes - 1}"]
    return [
        Command("qvm-ls (septa)", "septa qvm-ls", [str(h.VENV_BIN / "qvm-ls")], daemon.env,
                expect=names),
        Command('python -c "import septa.client" (reference)', "import",
                [python, "-c", "import septa.client"], daemon.env),
        Command('python -c "pass" (bare start-up)', "pass", [python, "-c", "pass"], daemon.env),
    ]


def run(args: argparse.Namespace) -> int:
    h.print_machine_facts("qvm-ls wall time: septa vs. start-up floor and Qubes 4.3 client", [
        ("settings", f"{args.qubes} qubes, median of {args.repeat} runs per command"),
    ])
    notes: list[str] = []
    with h.temp_root() as root, h.septad(root) as daemon:
        print(f"creating 1 template + {args.qubes} AppVMs through admin.vm.Create ...",
              flush=True)
        start = time.perf_counter()
        h.make_qubes(daemon.socket, args.qubes)
        print(f"created in {time.perf_counter() - start:.1f} s\n", flush=True)

        commands = _commands(daemon, args.qubes)
        ours, reference = commands[0], commands[1]
        with _maybe_qubesadmin(root, daemon, args.qubes, notes) as qubesadmin:
            if qubesadmin is not None:
                commands.append(qubesadmin)
            working: list[Command] = []
            for command in commands:
                problem = command.probe()
                if problem is None:
                    working.append(command)
                else:
                    notes.append(f"skipped {command.label}: {problem}")
            for rep in range(args.repeat):
                for command in working if rep % 2 == 0 else working[::-1]:
                    command.time_once()
                print(f"repetition {rep + 1}/{args.repeat}: " + ", ".join(
                    f"{c.short} {c.times[-1]:.3f} s" for c in working),
                    flush=True)

    print()
    real = qubesadmin if qubesadmin is not None and qubesadmin.times else None
    headers = ["command", "median s", "(min..max)", "/ import ref"]
    if real is not None:
        headers.append("/ qubesadmin")
    table = h.Table(*headers)
    for command in working:
        row = [command.label, f"{h.median(command.times):.3f}",
               h.spread(command.times, "{:.3f}"),
               f"{h.paired_ratio(command.times, reference.times):.2f}"
               if reference.times else "-"]
        if real is not None:
            row.append(f"{h.paired_ratio(command.times, real.times):.2f}")
        table.add(*row)
    table.print()
    print(f"(medians of {args.repeat} runs; ratios are medians of per-repetition ratios)")
    if ours.times and reference.times:
        above = [o - r for o, r in zip(ours.times, reference.times, strict=True)]
        print(f"qvm-ls above the import floor: {h.median(above) * 1e3:.0f} ms "
              f"({h.median(above) / (args.qubes + 2) * 1e6:.0f} us per qube listed)")
    for note in notes:
        print(f"note: {note}")
    return 0


@contextmanager
def _maybe_qubesadmin(root: Path, daemon: h.Septad, qubes: int,
                      notes: list[str]) -> Iterator[Command | None]:
    """The real Qubes client's qvm-ls as a :class:`Command`, or None with a note."""
    if not QUBESADMIN_PYTHON.exists():
        notes.append(f"Qubes 4.3 client comparison skipped: no {QUBESADMIN_PYTHON}")
        yield None
        return
    with ExitStack() as stack:
        enter: Callable[[], None] | None = None
        try:
            enter = stack.enter_context(qubes_namespace(root, daemon.socket))
        except (h.BenchError, OSError) as exc:
            notes.append(f"Qubes 4.3 client comparison skipped: {exc}")
        if enter is None:
            yield None
            return
        env = {key: value for key, value in os.environ.items() if key != "SEPTA_ROOT"}
        env["PYTHONPATH"] = str(QUBESADMIN)
        yield Command("qvm-ls (Qubes 4.3 qubesadmin)", "qubesadmin qvm-ls",
                      [str(QUBESADMIN_PYTHON), "-c", QUBESADMIN_QVM_LS], env, enter,
                      expect=["dom0", "tpl", "app0", f"app{qubes - 1}"])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return run(args)
    except h.BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
