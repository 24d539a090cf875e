"""Reading the properties of many qubes at once (one ``GetAll`` per qube, several in flight).

Used by listing tools: with a thousand qubes, overlapping the calls lets the daemon
answer one while the client parses another.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import QubesException
from .vm import QubesVM

DEFAULT_WORKERS = 4
#: Below this many qubes the calls are made one after the other (in a predictable order).
PARALLEL_THRESHOLD = 16


def _fetch(vm: QubesVM) -> None:
    try:
        vm.props.load_all()
    except QubesException:
        # Left uncached: the caller will read (and report) this qube's properties itself.
        pass


def fetch_all_properties(vms: Sequence[QubesVM], workers: int = DEFAULT_WORKERS) -> None:
    """Fill the property cache of every qube that does not have it yet."""
    todo = list({vm.name: vm for vm in vms if not vm.props.is_cached}.values())
    if workers <= 1 or len(todo) < PARALLEL_THRESHOLD:
        for vm in todo:
            _fetch(vm)
        return
    from concurrent.futures import ThreadPoolExecutor  # only needed for many qubes

    with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        list(pool.map(_fetch, todo))
