"""Septa's Admin API client library: talks to septad over its unix socket, nothing else.

Start with :class:`Qubes`::

    app = Qubes()
    for vm in app.domains:
        print(vm.name, vm.klass, vm.get_power_state())
"""

from .app import Qubes
from .errors import QubesException
from .vm import QubesVM

__all__ = ["Qubes", "QubesException", "QubesVM"]
