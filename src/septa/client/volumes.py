"""Volumes of a qube: ``admin.vm.volume.{List,Info,CloneFrom,CloneTo,Import...}``."""

from __future__ import annotations

import os
from typing import BinaryIO, Protocol

import septa.paths

from .errors import QubesDaemonCommunicationError
from .transport import parse_response

IMPORT_SERVICE = "admin.vm.volume.ImportWithSize"


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

    def __lt__(self, other: Volume) -> bool:
        return (self._vm.name, self._name) < (other._vm.name, other._name)

    def clone_from(self, source: Volume) -> None:
        """Replace this volume's data with a copy of ``source`` (CloneFrom + CloneTo)."""
        token = source._call("CloneFrom")
        self._call("CloneTo", token)

    def import_data_with_size(self, stream: BinaryIO, size: int) -> None:
        """Replace the volume's data with ``size`` bytes read from ``stream``."""
        import shutil  # rarely needed: keep the tools' start-up light
        import subprocess

        root = septa.paths.current().root
        service = root / "etc/qubes-rpc" / IMPORT_SERVICE
        if not service.exists():
            raise QubesDaemonCommunicationError("%s not found", str(service))
        command = [str(service), self._name]
        if os.geteuid() != 0 and "SEPTA_ROOT" not in os.environ:
            command.insert(0, "sudo")
        env = dict(os.environ)
        env.update(QREXEC_REMOTE_DOMAIN="dom0", QREXEC_REQUESTED_TARGET=self._vm.name)
        with subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        ) as proc:
            assert proc.stdin is not None
            try:
                proc.stdin.write(f"{size}\n".encode())
                shutil.copyfileobj(stream, proc.stdin)
            except BrokenPipeError:
                pass
            out, _ = proc.communicate()
        parse_response(out)
