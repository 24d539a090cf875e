"""Backup and restore of a large volume under septad, against the equivalent
``tar | gzip | scrypt enc`` pipelines run in the same benchmark, and peak memory.

Setup: a private ``septad`` (temporary ``SEPTA_ROOT`` under /var/tmp), a TemplateVM and
an AppVM whose private volume gets a ``--gib`` GiB image (a quarter random bytes, a
quarter compressible text, half holes), imported with ``qvm-volume import``. No qube
boots. Each step runs ``--repeat`` times, interleaved, and the medians are reported:

1. septa backup: ``qvm-backup --yes -p FILE DEST bk`` (septad's ``admin.backup.Execute``:
   the volume exported, ``tar --sparse``, gzip, 100 MiB chunks, each encrypted with its
   own scrypt key, N = 2^20, r = 8, p = 1).
2. References on the same image file, with the same scrypt parameters:
   ``tar --sparse -c | gzip | scrypt enc`` (one key for the whole stream), and the same
   cut into 100 MiB chunks with a ``scrypt enc`` per chunk (Qubes' own layout and
   cost, ``split --filter``).
3. septa restore: ``qvm-backup-restore`` of that backup after ``qvm-remove`` (when the
   tool is installed); reference: ``scrypt dec | gzip -d | tar -x`` of the one-key file.

Throughput is the volume's size (holes included) per second; "data MB/s" counts only
the bytes that are not holes. Peak memory: the largest RSS of the processes of a step
(``getrusage`` of its children in a wrapper process), and septad's own peak growth
(``VmHWM`` against its RSS before; septad is started fresh for the run).

Usage: ``.venv/bin/python bench/backup.py [--gib G] [--repeat R]`` (as root).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import _harness as h
import boot

PASSPHRASE = "bench passphrase"
LOG_N, R, P = 20, 8, 1
CHUNK = 100 * 1024 * 1024
QUBE = "bk"
MIB = 1024 * 1024
_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "status = subprocess.run(sys.argv[1:]).returncode\n"
    "elapsed = time.perf_counter() - start\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'{elapsed} {peak} {status}', file=sys.stderr)\n"
)


def make_image(path: Path, size: int) -> int:
    """A sparse image: random, text, holes; returns the bytes that are data."""
    quarter = size // 4
    text = (b"The Qubes OS model of security by compartmentalization. " * 1200)[:MIB]
    with path.open("wb") as out:
        for _ in range(quarter // MIB):
            out.write(os.urandom(MIB))
        for _ in range(quarter // MIB):
            out.write(text)
        out.truncate(size)
    return 2 * (quarter // MIB) * MIB


def measured(argv: Sequence[str], env: dict[str, str] | None = None,
             stdin: bytes | None = None) -> tuple[float, int]:
    """(seconds, peak RSS KiB of the children) of ``argv``; a failure raises."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], env=env, input=stdin,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    last = done.stderr.decode(errors="replace").strip().splitlines()
    try:
        elapsed, peak, status = last[-1].split()
    except (IndexError, ValueError):
        raise h.BenchError(f"{argv[0]}: no timing: {done.stderr[-400:]!r}") from None
    if status != "0":
        raise h.BenchError(f"{' '.join(argv)} exited with {status}: "
                           f"{' '.join(last[-6:-1])}")
    return float(elapsed), int(peak)


def shell(script: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", script]


def vm_hwm_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def tool(daemon: h.Septad, *argv: str, stdin: bytes | None = None) -> str:
    done = subprocess.run([str(h.VENV_BIN / argv[0]), *argv[1:]], env=daemon.env,
                          input=stdin, capture_output=True, check=False, timeout=7200)
    if done.returncode != 0:
        raise h.BenchError(f"{' '.join(argv)}: {done.stderr.decode(errors='replace')[-600:]}")
    return done.stdout.decode(errors="replace")


def setup(daemon: h.Septad, image: Path) -> None:
    tool(daemon, "qvm-create", "--class", "TemplateVM", "-l", "black", "tpl")
    tool(daemon, "qvm-create", "-t", "tpl", "-l", "red", QUBE)
    current = int(tool(daemon, "qvm-volume", "info", f"{QUBE}:private", "size").strip())
    if image.stat().st_size > current:
        tool(daemon, "qvm-volume", "resize", f"{QUBE}:private", str(image.stat().st_size))
    tool(daemon, "qvm-volume", "import", f"{QUBE}:private", str(image))


def septa_backup(daemon: h.Septad, work: Path, passfile: Path, run: int) -> tuple[float, int]:
    dest = work / f"septa-{run}.bin"
    return measured([str(h.VENV_BIN / "qvm-backup"), "--yes", "-p", str(passfile), str(dest),
                     QUBE], env=daemon.env)


def reference_backup(image: Path, work: Path, passfile: Path, chunked: bool
                     ) -> tuple[float, int]:
    scrypt = (f"scrypt enc --logN {LOG_N} -r {R} -p {P} "
              f"--passphrase file:{passfile}")
    tar = f"tar -C {image.parent} --sparse -cf - {image.name} | gzip"
    if chunked:
        out = work / "chunks"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        script = (f"{tar} | split -b {CHUNK} -a 3 -d "
                  f"--filter='{scrypt} - > $FILE.enc' - {out}/vol.")
    else:
        script = f"{tar} | {scrypt} - {work}/reference.enc"
    return measured(shell(script))


def reference_restore(work: Path, passfile: Path) -> tuple[float, int]:
    target = work / "reference-restore"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    return measured(shell(f"scrypt dec --passphrase file:{passfile} {work}/reference.enc | "
                          f"gzip -d | tar -C {target} --sparse -xf -"))


def septa_restore(daemon: h.Septad, backup: Path, passfile: Path) -> tuple[float, int]:
    tool(daemon, "qvm-remove", "-f", QUBE)
    return measured([str(h.VENV_BIN / "qvm-backup-restore"), "-p", str(passfile),
                     str(backup), QUBE], env=daemon.env)


def run(args: argparse.Namespace) -> int:
    size = args.gib * 1024 * MIB
    h.print_machine_facts("backup and restore of a large volume: septa vs. tar|gzip|scrypt", [
        ("settings", f"{args.gib} GiB volume (1/4 random, 1/4 text, 1/2 holes), "
                     f"scrypt N=2^{LOG_N} r={R} p={P}, {args.repeat} repetitions"),
        ("scrypt", subprocess.run(["scrypt", "--version"], capture_output=True, text=True,
                                  check=False).stdout.strip() or "not installed"),
    ])
    if shutil.which("scrypt") is None:
        raise h.BenchError("the reference needs the scrypt tool (apt-get install scrypt)")
    restore_tool = (h.VENV_BIN / "qvm-backup-restore").exists()
    results: dict[str, list[tuple[float, int]]] = {}
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(h.temp_root("septa-bench-backup-", "/var/tmp", 0o755))
        daemon = stack.enter_context(h.septad(root, new_session=True))
        work = root / "work"
        work.mkdir()
        passfile = work / "passphrase"
        passfile.write_text(PASSPHRASE + "\n")
        image = work / "volume.img"
        start = time.perf_counter()
        data = make_image(image, size)
        setup(daemon, image)
        print(f"setup: image and import {time.perf_counter() - start:.1f} s", flush=True)
        rss_before, _ = vm_hwm_kib(daemon.proc.pid)
        for repetition in range(args.repeat):
            results.setdefault("septa backup (qvm-backup)", []).append(
                septa_backup(daemon, work, passfile, repetition))
            results.setdefault("tar | gzip | scrypt enc (one key)", []).append(
                reference_backup(image, work, passfile, chunked=False))
            results.setdefault("tar | gzip | split 100M | scrypt enc per chunk", []).append(
                reference_backup(image, work, passfile, chunked=True))
            results.setdefault("scrypt dec | gzip -d | tar -x (one key)", []).append(
                reference_restore(work, passfile))
            if restore_tool:
                results.setdefault("septa restore (qvm-backup-restore)", []).append(
                    septa_restore(daemon, work / f"septa-{repetition}.bin", passfile))
        _, hwm = vm_hwm_kib(daemon.proc.pid)
        backup_size = (work / "septa-0.bin").stat().st_size
    print(f"\n-- backup and restore of a {args.gib} GiB volume ({data / MIB:.0f} MiB of data), "
          f"median of {args.repeat} --")
    table = h.Table("what", "median s", "runs s", "MB/s (volume)", "data MB/s",
                    "peak RSS MiB", "x reference")
    reference = {"backup": h.median([t for t, _ in results[
        "tar | gzip | split 100M | scrypt enc per chunk"]]),
        "restore": h.median([t for t, _ in results["scrypt dec | gzip -d | tar -x (one key)"]])}
    for label, runs in results.items():
        seconds = h.median([t for t, _ in runs])
        kind = "restore" if "restore" in label or "dec" in label else "backup"
        table.add(label, f"{seconds:.1f}", " ".join(f"{t:.1f}" for t, _ in runs),
                  f"{size / 1e6 / seconds:.0f}", f"{data / 1e6 / seconds:.0f}",
                  f"{max(p for _, p in runs) / 1024:.0f}",
                  f"{seconds / reference[kind]:.2f}")
    table.print()
    print(f"septad: RSS {rss_before / 1024:.0f} MiB before, peak {hwm / 1024:.0f} MiB "
          f"(growth {(hwm - rss_before) / 1024:.0f} MiB: the writer's scrypt key "
          f"derivations); septa's backup file {backup_size / MIB:.0f} MiB")
    print("x reference: against the per-chunk pipeline for backups (Qubes' layout and key "
          "cost) and the one-key pipeline for restores")
    if not restore_tool:
        print("note: qvm-backup-restore is not installed: no septa restore figure")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=int, default=2, help="volume size in GiB (2)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (3)")
    args = parser.parse_args(argv)
    if args.gib < 1 or args.repeat < 1:
        parser.error("--gib and --repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return boot.guarded_run("backup.py", run, _parse(argv))


if __name__ == "__main__":
    sys.exit(main())
