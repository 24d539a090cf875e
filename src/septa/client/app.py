"""The entry point of the client library: :class:`Qubes`, the whole system seen through septad."""

from __future__ import annotations

from collections.abc import Generator, Mapping

from .domains import VMCollection
from .errors import QubesNoSuchPropertyError, QubesValueError
from .labels import Label, Labels
from .pools import Pools
from .properties import Properties
from .transport import Event, Transport
from .vm import QubesVM


class Qubes:
    """The qubes, labels and global properties of one Septa instance.

    ``cache_enabled`` lets a short-lived tool reuse what it read once (power states
    from the qube list); long-lived users should leave it off.
    """

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport()
        self.cache_enabled = False
        self.domains = VMCollection(self)
        self.labels = Labels(self)
        self.props = Properties(self, "admin.property.")
        self.pools = Pools(self)

    def call(
        self, dest: str, method: str, arg: str | None = None, payload: bytes | None = None
    ) -> bytes:
        """One Admin API call; returns its content or raises the daemon's error."""
        return self.transport.call(dest, method, arg, payload)

    def call_self(self, method: str, arg: str | None = None, payload: bytes | None = None) -> bytes:
        """A global call (addressed to dom0)."""
        return self.call("dom0", method, arg, payload)

    def events(self, deadline: float | None = None) -> Generator[Event, None, None]:
        """The ``admin.Events`` stream, starting with ``connection-established``.

        With a ``deadline`` (a :func:`time.monotonic` value) the stream raises
        :class:`TimeoutError` once it passes.
        """
        return self.transport.events("dom0", "admin.Events", deadline=deadline)

    def list_vmclass(self) -> list[str]:
        """Names of the qube classes the daemon can create, sorted."""
        data = self.call_self("admin.vmclass.List").decode()
        return sorted(n for n in data.split("\n") if n)

    def get_label(self, spec: str | int) -> Label:
        """A label by name or index."""
        return self.labels.find(spec)

    def global_default_pool(self, volume: str) -> str | None:
        """The global ``default_pool_<volume>`` property, if the daemon has one."""
        try:
            return self.props.get(f"default_pool_{volume}").text
        except QubesNoSuchPropertyError:
            return None

    def add_new_vm(
        self,
        cls: str,
        name: str,
        label: str | Label,
        template: str | QubesVM | None = None,
        pool: str | None = None,
        pools: Mapping[str, str] | None = None,
    ) -> QubesVM:
        """Create a qube (``admin.vm.Create.<cls>`` or ``admin.vm.CreateInPool.<cls>``)."""
        if " " in name:
            raise QubesValueError("Qube name could not contain space: %s", name)
        if pool and pools:
            raise QubesValueError("only one of pool= and pools= can be used")
        method = "admin.vm.Create."
        payload = f"name={name} label={label}"
        if pool:
            payload += f" pool={pool}"
            method = "admin.vm.CreateInPool."
        if pools:
            payload += "".join(f" pool:{vol}={p}" for vol, p in sorted(pools.items()))
            method = "admin.vm.CreateInPool."
        arg = str(template) if template is not None else None
        self.call_self(method + cls, arg, payload.encode())
        self.domains.clear_cache()
        return self.domains[name]
