"""Waiting for qubes to stop, the way Qubes' tools do it.

The ``admin.Events`` stream is opened; at ``connection-established`` the qubes that
are already halted are struck off, then each ``domain-shutdown`` event strikes off its
subject. If the daemon offers no event stream (or it ends early), the power states
are polled with ``admin.vm.CurrentState`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .app import Qubes
from .errors import QubesException
from .vm import QubesVM

#: Seconds between two power-state checks when polling.
POLL_INTERVAL = 0.5


def is_stopped(vm: QubesVM) -> bool:
    """Whether the qube is halted (or is a disposable that is already gone)."""
    vm.forget_state()
    state = vm.get_power_state()
    return state == "Halted" or (state == "NA" and vm.klass == "DispVM")


def wait_for_shutdown(app: Qubes, vms: Iterable[QubesVM], timeout: float) -> list[QubesVM]:
    """Wait until all ``vms`` have stopped, for at most ``timeout`` seconds.

    Returns the qubes still not stopped at the end (in the given order), empty on success.
    """
    todo = list(vms)
    if not todo:
        return []
    deadline = time.monotonic() + timeout
    pending = _wait_for_events(app, todo, deadline)
    if pending is None:
        pending = _poll(todo, deadline)
    return pending


def _wait_for_events(app: Qubes, vms: list[QubesVM], deadline: float) -> list[QubesVM] | None:
    """The qubes left when done or out of time; None if the event stream failed."""
    pending = list(vms)
    stream = app.events(deadline=deadline)
    try:
        for event in stream:
            if event.name == "connection-established":
                pending = [vm for vm in pending if not is_stopped(vm)]
            elif event.name == "domain-shutdown":
                pending = [vm for vm in pending if vm.name != event.subject]
            if not pending:
                return []
    except TimeoutError:
        return pending
    except (QubesException, OSError):
        return None
    finally:
        stream.close()
    return None


def _poll(vms: list[QubesVM], deadline: float) -> list[QubesVM]:
    pending = list(vms)
    while True:
        pending = [vm for vm in pending if not is_stopped(vm)]
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            return pending
        time.sleep(min(POLL_INTERVAL, left))
