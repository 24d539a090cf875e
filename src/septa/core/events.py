"""Synchronous events on registry objects, with global listeners for ``admin.Events``.

Every change in the registry fires an event on its subject (a qube or the registry
itself). Handlers registered on the subject run first; then every global listener of
the registry gets ``(subject, event, kwargs)``, which is how the Admin API streams
events and how plug-ins (entry point group ``septa.extensions``) hook in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

Handler = Callable[..., Any]
Listener = Callable[[Any, str, dict[str, Any]], None]


class Emitter:
    """Mixin: an object that fires events and lets handlers subscribe by event name."""

    def __init__(self) -> None:
        self._handlers: defaultdict[str, list[Handler]] = defaultdict(list)
        self._listeners: list[Listener] = []
        self.revision = 0

    def add_handler(self, event: str, handler: Handler) -> None:
        self._handlers[event].append(handler)

    def remove_handler(self, event: str, handler: Handler) -> None:
        self._handlers[event].remove(handler)

    def add_listener(self, listener: Listener) -> None:
        """Receive every event fired on this object (used by the registry to fan out)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def fire_event(self, event: str, **kwargs: Any) -> list[Any]:
        """Run the handlers of ``event``; return what they returned (for pre-events).

        Every event counts as a change: :attr:`revision` grows, so that cached
        serialisations of this object know they are stale.
        """
        self.revision += 1
        results = [handler(self, event, **kwargs) for handler in list(self._handlers[event])]
        results += [h(self, event, **kwargs) for h in list(self._handlers["*"])]
        for listener in list(self._listeners):
            listener(self, event, kwargs)
        return [r for r in results if r is not None]
