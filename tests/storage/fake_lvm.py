"""A stand-in for the ``lvm`` command, for testing the lvm_thin driver without device-mapper.

Usage: ``python fake_lvm.py STATE_DIR SUBCOMMAND ARGS...``. It keeps volume groups in
``STATE_DIR/state.json`` and each thin volume's data in the regular file
``STATE_DIR/dev/<vg>/<lv>``; a snapshot is a sparse copy. It accepts the commands and
options the driver uses, answers as LVM does (JSON report, sizes rounded up to 4 MiB
extents, a renamed or removed origin seen by its snapshots) and fails like LVM on
unknown names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

EXTENT = 4 << 20


def fail(message: str, code: int = 5) -> NoReturn:
    print(f"  {message}", file=sys.stderr)
    sys.exit(code)


def round_up(size: int) -> int:
    return -(-size // EXTENT) * EXTENT


def parse_size(text: str) -> int:
    if not text.endswith("B"):
        fail(f"unsupported size {text}", 3)
    return int(text[:-1])


class State:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "state.json"
        self.data: dict[str, Any] = json.loads(self.file.read_text()) if self.file.exists() \
            else {"vgs": {}}

    def save(self) -> None:
        self.file.write_text(json.dumps(self.data, indent=1))

    def vg(self, name: str) -> dict[str, Any]:
        vgs: dict[str, Any] = self.data["vgs"]
        if name not in vgs:
            fail(f'Volume group "{name}" not found')
        found: dict[str, Any] = vgs[name]
        return found

    def dev(self, vg: str, lv: str) -> Path:
        return self.root / "dev" / vg / lv


def split_lv(spec: str) -> tuple[str, str]:
    vg, _, lv = spec.partition("/")
    if not lv:
        fail(f"invalid logical volume {spec}", 3)
    return vg, lv


def options(args: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i + 1:]
            break
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq and key in ("config", "reportformat", "units", "name"):
                i += 1
                value = args[i]
            opts[key] = value
        elif arg == "-o":
            i += 1
            opts["o"] = args[i]
        else:
            rest.append(arg)
        i += 1
    return opts, rest


def usage_of(path: Path) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def lvs(state: State, rest: list[str]) -> None:
    rows = []
    for vg_name in rest or list(state.data["vgs"]):
        vg = state.vg(vg_name)
        for name, lv in sorted(vg["lvs"].items()):
            if lv["type"] == "thin-pool":
                used = sum(usage_of(state.dev(vg_name, n)) for n, o in vg["lvs"].items()
                           if o["type"] == "thin")
                rows.append({"vg_name": vg_name, "lv_name": name, "pool_lv": "",
                             "lv_size": str(lv["size"]),
                             "data_percent": f"{100 * used / lv['size']:.2f}",
                             "lv_attr": "twi-aotz--", "origin": "",
                             "lv_metadata_size": str(4 << 20), "metadata_percent": "10.00"})
            else:
                used = usage_of(state.dev(vg_name, name))
                rows.append({"vg_name": vg_name, "lv_name": name, "pool_lv": lv["pool"],
                             "lv_size": str(lv["size"]),
                             "data_percent": f"{100 * used / lv['size']:.2f}",
                             "lv_attr": "Vwi-a-tz--" if lv["active"] else "Vwi---tz--",
                             "origin": lv.get("origin", ""), "lv_metadata_size": "",
                             "metadata_percent": ""})
    print(json.dumps({"report": [{"lv": rows}]}))


def lvcreate(state: State, opts: dict[str, str], rest: list[str]) -> None:
    vg_name, target = split_lv(rest[0])
    vg = state.vg(vg_name)
    name = opts.get("name") or fail("no name", 3)
    if name in vg["lvs"]:
        fail(f'Logical Volume "{name}" already exists in volume group "{vg_name}"')
    if target not in vg["lvs"]:
        fail(f'Failed to find logical volume "{vg_name}/{target}"')
    dev = state.dev(vg_name, name)
    dev.parent.mkdir(parents=True, exist_ok=True)
    if "snapshot" in opts:
        origin = vg["lvs"][target]
        if origin["type"] != "thin":
            fail("snapshot of a non-thin volume", 3)
        subprocess.run(["cp", "--sparse=always", str(state.dev(vg_name, target)), str(dev)],
                       check=True)
        vg["lvs"][name] = {"type": "thin", "pool": origin["pool"], "size": origin["size"],
                           "origin": target, "active": True}
    elif "thin" in opts:
        if vg["lvs"][target]["type"] != "thin-pool":
            fail(f"{target} is not a thin pool", 3)
        size = round_up(parse_size(opts["virtualsize"]))
        with open(dev, "wb") as handle:
            handle.truncate(size)
        vg["lvs"][name] = {"type": "thin", "pool": target, "size": size, "origin": "",
                           "active": True}
    else:
        fail("unsupported lvcreate", 3)
    state.save()


def lv_of(state: State, spec: str) -> tuple[str, str, dict[str, Any]]:
    vg_name, name = split_lv(spec)
    vg = state.vg(vg_name)
    if name not in vg["lvs"]:
        fail(f'Failed to find logical volume "{vg_name}/{name}"')
    return vg_name, name, vg


ALLOWED = {
    "lvs": {"config", "reportformat", "units", "nosuffix", "o"},
    "lvcreate": {"config", "thin", "snapshot", "setactivationskip", "activate", "name",
                 "virtualsize"},
    "lvremove": {"config", "force"},
    "lvrename": {"config"},
    "lvresize": {"config", "size"},
    "lvchange": {"config", "activate"},
}


def main(argv: list[str]) -> None:
    state = State(Path(argv[0]))
    command, args = argv[1], argv[2:]
    opts, rest = options(args)
    unknown = set(opts) - ALLOWED.get(command, set())
    if unknown:
        fail(f"Command does not accept option: --{sorted(unknown)[0]}.", 3)
    if "snapshot" in opts and "thin" in opts:
        fail("Command does not accept option: --snapshot.", 3)
    if command == "lvs":
        lvs(state, rest)
        return
    if command == "lvcreate":
        lvcreate(state, opts, rest)
        return
    vg_name, name, vg = lv_of(state, rest[0])
    if command == "lvremove":
        del vg["lvs"][name]
        state.dev(vg_name, name).unlink(missing_ok=True)
        for other in vg["lvs"].values():
            if other.get("origin") == name:
                other["origin"] = ""
    elif command == "lvrename":
        _, new = split_lv(rest[1])
        if new in vg["lvs"]:
            fail(f'Logical Volume "{new}" already exists in volume group "{vg_name}"')
        vg["lvs"][new] = vg["lvs"].pop(name)
        os.rename(state.dev(vg_name, name), state.dev(vg_name, new))
        for other in vg["lvs"].values():
            if other.get("origin") == name:
                other["origin"] = new
    elif command == "lvresize":
        size = round_up(parse_size(opts["size"]))
        if size < vg["lvs"][name]["size"]:
            fail("shrinking needs --force", 3)
        vg["lvs"][name]["size"] = size
        os.truncate(state.dev(vg_name, name), size)
    elif command == "lvchange":
        vg["lvs"][name]["active"] = True
    else:
        fail(f"unsupported command {command}", 3)
    state.save()


def make_vg(root: Path, vg: str, pool: str, size: int) -> None:
    """Create a volume group with one thin pool (for tests)."""
    state = State(root)
    state.data["vgs"][vg] = {"lvs": {pool: {"type": "thin-pool", "size": size}}}
    (root / "dev" / vg).mkdir(parents=True, exist_ok=True)
    state.save()


if __name__ == "__main__":
    main(sys.argv[1:])
