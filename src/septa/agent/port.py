"""The guest end of the virtio-serial port: open it, wait for the host, read and write.

A virtio-serial port behaves unlike a socket when the host side is not connected: reads
return EOF at once and ``poll`` reports ``POLLHUP`` (with ``POLLIN``) until the host
connects again, so an agent that simply loops on ``read`` would spin. :class:`VirtioPort`
therefore checks ``POLLHUP`` and sleeps a little between checks while the host is away,
and reopens the device if it disappears (hot unplug).
"""

from __future__ import annotations

import errno
import os
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from socket import socket as _Socket

#: How long to sleep between checks while the host side is disconnected.
POLL_INTERVAL = 0.2
#: Longest sleep between attempts to open a port device that does not exist (yet).
MAX_OPEN_INTERVAL = 2.0
READ_SIZE = 65536
SYSFS_PORTS = "/sys/class/virtio-ports"


def find_port(name: str, sysfs: str = SYSFS_PORTS) -> str | None:
    """The device node of the virtio-serial port called ``name`` (``/dev/vportNpM``).

    Found through sysfs, so it works before udev has made ``/dev/virtio-ports/<name>``:
    the agent can start as soon as the kernel has the port, early in the boot.
    """
    try:
        entries = sorted(os.listdir(sysfs))
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(sysfs, entry, "name"), encoding="utf-8") as f:
                if f.read().strip() == name:
                    return "/dev/" + entry
        except OSError:
            continue
    return None


class Port:
    """What the agent needs from its transport (a plain base class: ``typing`` costs boot
    time in the guest)."""

    def wait_connected(self) -> None:
        """Block until a host is connected to the other end."""
        raise NotImplementedError

    def read(self, timeout: float | None = None) -> bytes | None:
        """Next bytes from the host; ``b""`` when the host disconnected; ``None`` when
        ``timeout`` seconds passed without any."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send all of ``data`` to the host."""
        raise NotImplementedError


class VirtioPort(Port):
    """A virtio-serial port in the guest, kept open across host reconnections.

    ``path`` is the device node; with ``name`` instead, the node is looked up in sysfs at
    every (re)open, falling back to ``/dev/virtio-ports/<name>``.
    """

    def __init__(
        self, path: str | None = None, name: str | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        if (path is None) == (name is None):
            raise ValueError("give the port's device path or its name")
        self.path = path
        self.name = name
        self.poll_interval = poll_interval
        self._fd: int | None = None

    def device(self) -> str:
        """The device node to open now."""
        if self.path is not None:
            return self.path
        assert self.name is not None
        return find_port(self.name) or "/dev/virtio-ports/" + self.name

    def _open(self) -> int:
        delay = self.poll_interval
        while self._fd is None:
            try:
                self._fd = os.open(self.device(), os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EBUSY):
                    raise
                time.sleep(delay)
                delay = min(delay * 2, MAX_OPEN_INTERVAL)
        return self._fd

    def close(self) -> None:
        """Close the device (it is reopened on the next use)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def host_connected(self) -> bool:
        """Whether the host side is connected now (no ``POLLHUP``)."""
        fd = self._open()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        for _, events in poller.poll(0):
            if events & select.POLLNVAL:
                self.close()
                return False
            if events & (select.POLLHUP | select.POLLERR):
                return False
        return True

    def wait_connected(self) -> None:
        """Sleep-poll until the host connects; never busy-loops."""
        while True:
            try:
                if self.host_connected():
                    return
            except OSError as exc:
                if exc.errno != errno.ENODEV:
                    raise
                self.close()
            time.sleep(self.poll_interval)

    def read(self, timeout: float | None = None) -> bytes | None:
        """Bytes from the host, ``b""`` when it disconnected or the port went away, or
        ``None`` after ``timeout`` seconds without input."""
        fd = self._open()
        try:
            if timeout is not None:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                if not poller.poll(int(timeout * 1000)):
                    return None
            return os.read(fd, READ_SIZE)
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise
            self.close()
            return b""

    def write(self, data: bytes) -> None:
        """Write all of ``data`` (the driver takes at most 32 KiB per call)."""
        fd = self._open()
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]


class SocketPort(Port):
    """A connected stream socket as the port: one host connection, for tests and for
    running the agent outside a qube. Closing the socket's far end is the disconnection."""

    def __init__(self, sock: _Socket) -> None:
        self.sock = sock

    def wait_connected(self) -> None:
        """The socket is connected already."""

    def read(self, timeout: float | None = None) -> bytes | None:
        """Bytes from the host, ``b""`` at EOF or on an error, ``None`` after ``timeout``."""
        try:
            if timeout is not None:
                ready, _, _ = select.select([self.sock], [], [], timeout)
                if not ready:
                    return None
            return self.sock.recv(READ_SIZE)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        """Send all of ``data``; nothing when the host has gone (the next read says so)."""
        try:
            self.sock.sendall(data)
        except OSError:
            pass
