"""Admin API calls that qubes make through qrexec: ``admin.*`` services run by septad.

As in Qubes, a management qube calls ``qrexec-client-vm <qube> admin.vm.property.Get+label``
(its target is the qube the call is about, or dom0 for calls on the system), and the
policy sends the call to dom0 (``allow target=dom0``, or a rule for ``@adminvm``). The
relay hands an allowed call to :class:`AdminBridge`, which reads the payload from the
call's stdin, serves the request on septad's Admin API table with the calling qube as
its source and the requested target as its destination, and writes the answer (the
Admin API's own frames, an event stream for ``admin.Events``) to the call's stdout.

Calls about the whole system show only what the policy lets the qube see:
``admin.vm.List`` and ``admin.Events`` on dom0 list a qube only when the policy would
``allow`` the same call on that qube (``ask`` is not enough), as Qubes' admin extension
filters them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from septa.api.protocol import MAX_REQUEST, Request, exception_frame
from septa.qrexec.policy import Allow, PolicyCache, SystemInfo
from septa.qrexec.policy import Request as PolicyRequest
from septa.qrexec.policy.errors import RequestError

if TYPE_CHECKING:
    from septa.core.vm import BaseVM
    from septa.qrexec.incoming import CallInfo, IncomingCall

log = logging.getLogger(__name__)
PREFIX = "admin."
_ADMINVM_TOKENS = ("@adminvm", "dom0", "@default", "")


class Responder(Protocol):
    """What answers Admin API requests (septad's :class:`~septa.api.server.ApiServer`)."""

    async def respond_to(self, request: Request, permits: Callable[[BaseVM], bool] | None,
                         ) -> bytes | AsyncIterator[bytes]:
        ...


class AdminBridge:
    """Serves ``admin.*`` calls from qubes on septad's Admin API."""

    def __init__(self, server: Responder, policy: PolicyCache,
                 system_info: Callable[[], SystemInfo]) -> None:
        self.server = server
        self.policy = policy
        self.system_info = system_info

    @staticmethod
    def serves(service: str) -> bool:
        return service.startswith(PREFIX)

    async def serve(self, call: IncomingCall, requested_target: str) -> int:
        """Serve one allowed call; its exit status (0: the answer, even an error, went out)."""
        info = call.info
        payload = await self._read_payload(call)
        answer: bytes | AsyncIterator[bytes]
        if payload is None:
            answer = exception_frame(
                "ProtocolError", f"Request too large (over {MAX_REQUEST} bytes)")
        else:
            dest = "dom0" if requested_target in _ADMINVM_TOKENS else requested_target
            request = Request(method=info.service, arg=info.arg, source=call.source,
                              dest=dest, payload=payload)
            answer = await self.server.respond_to(request, self._permits(call.source, info))
        if isinstance(answer, bytes):
            call.stdout.write(answer)
            await call.stdout.drain()
        else:
            async for frame in answer:
                call.stdout.write(frame)
                await call.stdout.drain()
        call.stdout.write_eof()
        call.stderr.write_eof()
        return 0

    @staticmethod
    async def _read_payload(call: IncomingCall) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while data := await call.stdin.read(65536):
            size += len(data)
            if size > MAX_REQUEST:
                return None
            chunks.append(data)
        return b"".join(chunks)

    def _permits(self, source: str, info: CallInfo) -> Callable[[BaseVM], bool]:
        service, arg = info.service, info.arg
        system = self.system_info()

        def permits(vm: BaseVM) -> bool:
            try:
                request = PolicyRequest(source, vm.name, service, arg)
            except RequestError:
                return False
            return isinstance(self.policy.evaluate(request, system), Allow)

        return permits
