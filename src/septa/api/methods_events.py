"""``admin.Events``: the stream of registry events, for all qubes (dom0) or one qube."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from septa.api.dispatch import Call, method
from septa.api.protocol import event_frame
from septa.core.properties import serialize
from septa.core.vm import AdminVM, BaseVM

MAX_QUEUED = 10000


def _text(value: Any) -> str:
    if isinstance(value, list | tuple | set):
        return " ".join(_text(v) for v in value)
    return serialize(value)


def subject_name(subject: Any) -> str:
    return subject.name if isinstance(subject, BaseVM) else ""


@method("admin.Events")
async def events(call: Call) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    only = None if isinstance(call.dest, AdminVM) else call.dest

    def listener(subject: Any, event: str, kwargs: dict[str, Any]) -> None:
        if only is not None and subject is not only:
            return
        if isinstance(subject, BaseVM) and not call.may_see(subject):
            return
        if queue.qsize() >= MAX_QUEUED:
            queue.put_nowait(None)
            return
        queue.put_nowait(event_frame(subject_name(subject), event,
                                     {k: _text(v) for k, v in kwargs.items()}))

    async def stream() -> AsyncIterator[bytes]:
        call.app.add_global_listener(listener)
        try:
            yield event_frame("", "connection-established", {})
            while True:
                frame = await queue.get()
                if frame is None:
                    return
                yield frame
        finally:
            call.app.remove_global_listener(listener)

    return stream()
