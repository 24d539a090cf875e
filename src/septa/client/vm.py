"""One qube as seen through the Admin API: properties, state, features, tags, notes, volumes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import QubesDaemonAccessError, QubesVMNotFoundError
from .features import Features
from .properties import Properties, PropertyValue
from .tags import Tags
from .volumes import Volume

if TYPE_CHECKING:
    from .app import Qubes
    from .firewall import Firewall

#: Power states as the daemon names them.
POWER_STATES = (
    "Halted",
    "Transient",
    "Running",
    "Paused",
    "Suspended",
    "Halting",
    "Dying",
    "Crashed",
    "NA",
)


class QubesVM:
    """A qube. Cheap to create: nothing is read until asked for."""

    def __init__(
        self,
        app: Qubes,
        name: str,
        klass: str | None = None,
        power_state: str | None = None,
    ) -> None:
        self.app = app
        self._name = name
        self._klass = klass
        self._power_state = power_state
        self._volumes: dict[str, Volume] | None = None
        self.props = Properties(self, "admin.vm.property.")
        self.features = Features(self)
        self.tags = Tags(self)

    @property
    def firewall(self) -> Firewall:
        """The qube's firewall rules (``admin.vm.firewall.*``)."""
        from .firewall import Firewall  # imported on first use: most tools never need it

        return Firewall(self)

    # -- identity ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The qube's name."""
        return self._name

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<QubesVM {self._name}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QubesVM):
            return self._name == other._name
        if isinstance(other, str):
            return self._name == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._name)

    def __lt__(self, other: QubesVM) -> bool:
        return self._name < other._name

    def call_self(self, method: str, arg: str | None = None, payload: bytes | None = None) -> bytes:
        """An Admin API call addressed to this qube."""
        return self.app.call(self._name, method, arg, payload)

    def rename(self, new_name: str) -> None:
        """Change the qube's name (the daemon refuses while it runs)."""
        self.props.set("name", new_name)
        self._name = new_name
        self._volumes = None
        self.app.domains.clear_cache()

    # -- properties ---------------------------------------------------------------

    def prop(self, name: str) -> PropertyValue:
        """One property value (from the cache if all were fetched)."""
        return self.props.get(name)

    def vm_prop(self, name: str) -> QubesVM | None:
        """A property holding a qube reference, as a qube object (None if empty)."""
        value = self.props.get(name)
        return None if value.is_none else self.app.domains.get_blind(value.text)

    def matches_class(self, klass: str | None) -> bool:
        """Whether this object may stand for a listed qube of class ``klass``."""
        return self._klass is None or self._klass == klass

    @property
    def klass(self) -> str:
        """The qube's class (AppVM, TemplateVM, StandaloneVM, DispVM, AdminVM)."""
        if self._klass is None:
            try:
                line = self.call_self("admin.vm.List").decode().split("\n", 1)[0]
                fields = dict(w.split("=", 1) for w in line.split(" ")[1:] if "=" in w)
                self._klass = fields["class"]
            except (QubesDaemonAccessError, KeyError):
                self._klass = self.props.get("klass").text
        return self._klass

    # -- state -------------------------------------------------------------------

    def current_state(self) -> dict[str, str]:
        """The answer of ``admin.vm.CurrentState`` (mem, mem_static_max, cputime, power_state)."""
        text = self.call_self("admin.vm.CurrentState").decode()
        return dict(part.split("=", 1) for part in text.split() if "=" in part)

    def get_power_state(self) -> str:
        """Halted, Transient, Running, Paused, Suspended, Halting, Dying, Crashed or NA."""
        if self._power_state is not None:
            return self._power_state
        try:
            state = self.current_state().get("power_state", "NA")
        except (QubesDaemonAccessError, QubesVMNotFoundError):
            return "NA"
        if self.app.cache_enabled:
            self._power_state = state
        return state

    def forget_state(self) -> None:
        """Drop a remembered power state (it is read again when next needed)."""
        self._power_state = None

    def get_mem(self) -> int:
        """Memory currently used, in KiB."""
        return int(self.current_state().get("mem", "0"))

    def is_halted(self) -> bool:
        """Whether the qube is halted."""
        return self.get_power_state() == "Halted"

    def is_paused(self) -> bool:
        """Whether the qube is paused."""
        return self.get_power_state() == "Paused"

    def is_suspended(self) -> bool:
        """Whether the qube is suspended."""
        return self.get_power_state() == "Suspended"

    def is_running(self) -> bool:
        """Whether the qube is started (running, paused, transient...)."""
        return self.get_power_state() not in ("Halted", "NA")

    def is_networked(self) -> bool:
        """Whether the qube provides network or has a netvm."""
        provides = self.props.get("provides_network")
        if provides.has_value and provides.as_bool():
            return True
        return not self.props.get("netvm").is_none

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the qube."""
        self.call_self("admin.vm.Start")

    def shutdown(self, force: bool = False, wait: bool = False) -> None:
        """Ask the qube to shut down."""
        arg = "+".join(a for a, on in (("force", force), ("wait", wait)) if on)
        self.call_self("admin.vm.Shutdown", arg or None)

    def kill(self) -> None:
        """Stop the qube at once."""
        self.call_self("admin.vm.Kill")

    def pause(self) -> None:
        """Pause the qube."""
        self.call_self("admin.vm.Pause")

    def unpause(self) -> None:
        """Resume a paused qube."""
        self.call_self("admin.vm.Unpause")

    def suspend(self) -> None:
        """Suspend the qube (S3); the daemon pauses it if it cannot suspend."""
        self.call_self("admin.vm.Suspend")

    def resume(self) -> None:
        """Wake a suspended qube."""
        self.call_self("admin.vm.Resume")

    # -- notes and volumes -------------------------------------------------------

    def get_notes(self) -> str:
        """The qube's free-form notes."""
        return self.call_self("admin.vm.notes.Get").decode()

    def set_notes(self, notes: str) -> None:
        """Replace the qube's notes."""
        self.call_self("admin.vm.notes.Set", None, notes.encode())

    @property
    def volumes(self) -> dict[str, Volume]:
        """The qube's volumes by name."""
        if self._volumes is None:
            names = self.call_self("admin.vm.volume.List").decode().split("\n")
            self._volumes = {n: Volume(self, n) for n in names if n}
        return self._volumes

    def get_disk_utilization(self) -> int:
        """Bytes used by all volumes of the qube."""
        return sum(volume.usage for volume in self.volumes.values())
