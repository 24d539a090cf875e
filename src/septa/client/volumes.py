"""Volumes of a qube: ``admin.vm.volume.{List,Info,ListSnapshots,Revert,Resize,Clear,Set.*...}``.

Data is imported through the qrexec service programs ``admin.vm.volume.Import`` and
``admin.vm.volume.ImportWithSize`` (they stream the data, which does not fit in one
Admin API call), as Qubes' client does in dom0.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Protocol

import septa.paths

from .errors import QubesDaemonCommunicationError
from .transport import parse_response

IMPORT_SERVICE = "admin.vm.volume.ImportWithSize"
IMPORT_SERVICE_NO_SIZE = "admin.vm.volume.Import"

#: Volume settings that can be changed (``admin.vm.volume.Set.<name>``).
SETTABLE = ("rw", "revisions_to_keep", "ephemeral")


class VolumeOwner(Protocol):
    """The qube a volume belongs to."""

    @property
    def name(self) -> str: ...

    def call_self(
        self, method: str, arg: str | None = None, payload: bytes | None = None
    ) -> bytes: ...


def _as_bool(text: str) -> bool:
    return text == "True"


class Volume:
    """One volume of a qube (``root``, ``private``, ``volatile``, ``kernel``)."""

    def __init__(self, vm: VolumeOwner, name: str) -> None:
        self._vm = vm
        self._name = name
        self._info: dict[str, str] | None = None

    def _call(self, verb: str, payload: bytes | None = None) -> bytes:
        return self._vm.call_self("admin.vm.volume." + verb, self._name, payload)

    @property
    def name(self) -> str:
        """The volume's name within its qube."""
        return self._name

    def info(self, refresh: bool = False) -> dict[str, str]:
        """The ``key=value`` facts of ``admin.vm.volume.Info``."""
        if self._info is None or refresh:
            text = self._call("Info").decode()
            self._info = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
        return self._info

    def _field(self, key: str) -> str:
        return self.info().get(key, "")

    @property
    def pool(self) -> str:
        """Name of the pool holding the volume."""
        return self._field("pool")

    @property
    def vid(self) -> str:
        """The volume's id within its pool."""
        return self._field("vid")

    @property
    def size(self) -> int:
        """Size in bytes."""
        return int(self._field("size") or 0)

    @property
    def usage(self) -> int:
        """Bytes actually used."""
        return int(self._field("usage") or 0)

    @property
    def rw(self) -> bool:
        """Whether the qube may write to the volume."""
        return _as_bool(self._field("rw"))

    @property
    def save_on_stop(self) -> bool:
        """Whether changes persist when the qube stops."""
        return _as_bool(self._field("save_on_stop"))

    @property
    def snap_on_start(self) -> bool:
        """Whether the volume starts as a snapshot of its source."""
        return _as_bool(self._field("snap_on_start"))

    @property
    def source(self) -> str:
        """The volume a snapshot is taken of, if any."""
        return self._field("source")

    @property
    def ephemeral(self) -> bool:
        """Whether the volume is encrypted with a key that is thrown away at stop."""
        return _as_bool(self._field("ephemeral"))

    @property
    def revisions_to_keep(self) -> int | None:
        """How many old revisions the pool keeps (-1: snapshots disabled); None if unknown."""
        text = self._field("revisions_to_keep")
        return int(text) if text.lstrip("-").isdigit() else None

    def is_outdated(self) -> bool:
        """Whether a snapshot volume is older than its source."""
        return _as_bool(self._field("is_outdated"))

    @property
    def revisions(self) -> list[str]:
        """Ids of the revisions the volume can be reverted to, oldest first."""
        return [r for r in self._call("ListSnapshots").decode().split("\n") if r]

    def revert(self, revision: str) -> None:
        """Go back to an older revision."""
        self._call("Revert", revision.encode())
        self._info = None

    def resize(self, size: int) -> None:
        """Change the volume's size, in bytes."""
        self._call("Resize", str(size).encode())
        self._info = None

    def clear_data(self) -> None:
        """Empty the volume."""
        self._call("Clear")
        self._info = None

    def set(self, setting: str, value: str) -> None:
        """Change one of the :data:`SETTABLE` settings (the daemon checks the value)."""
        self._call("Set." + setting, value.encode())
        self._info = None

    def __lt__(self, other: Volume) -> bool:
        return (self._vm.name, self._name) < (other._vm.name, other._name)

    def clone_from(self, source: Volume) -> None:
        """Replace this volume's data with a copy of ``source`` (CloneFrom + CloneTo)."""
        token = source._call("CloneFrom")
        self._call("CloneTo", token)

    def import_data_with_size(self, stream: BinaryIO, size: int) -> None:
        """Replace the volume's data with ``size`` bytes read from ``stream``."""
        self._import(IMPORT_SERVICE, f"{size}\n".encode(), stream)

    def import_data(self, stream: BinaryIO) -> None:
        """Replace the volume's data with what ``stream`` holds, keeping the volume's size."""
        self._import(IMPORT_SERVICE_NO_SIZE, b"", stream)

    def _import(self, service_name: str, prefix: bytes, stream: BinaryIO) -> None:
        import shutil  # rarely needed: keep the tools' start-up light
        import subprocess

        root = septa.paths.current().root
        service = root / "etc/qubes-rpc" / service_name
        if not service.exists():
            raise QubesDaemonCommunicationError("%s not found", str(service))
        # The variables go on the command line (through env) so that sudo keeps them.
        command = [
            "env",
            "QREXEC_REMOTE_DOMAIN=dom0",
            f"QREXEC_REQUESTED_TARGET={self._vm.name}",
            str(service),
            self._name,
        ]
        if os.geteuid() != 0 and "SEPTA_ROOT" not in os.environ:
            command.insert(0, "sudo")
        try:
            # Its own session: Ctrl-C reaches only the caller, whose closing of stdin
            # then makes the service report the short import to septad as failed
            # (not under sudo, which may need the terminal to ask for a password).
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    start_new_session=command[0] != "sudo")
        except OSError as e:
            raise QubesDaemonCommunicationError(
                "cannot run %s: %s", str(service), e.strerror or str(e)
            ) from None
        with proc:
            assert proc.stdin is not None
            try:
                proc.stdin.write(prefix)
                shutil.copyfileobj(stream, proc.stdin, 1 << 20)
            except BrokenPipeError:
                pass
            except BaseException:
                # interrupted: the service sees its stdin end early and reports the
                # import as failed; take its answer so that it can end quietly
                proc.communicate()
                raise
            out, _ = proc.communicate()
        parse_response(out)
        self._info = None
