"""The table of API methods and the checks every call goes through before its handler.

Each handler is registered with :func:`method`, which states whether it takes an
argument and a payload, whether its destination must be dom0, and whether it changes
the registry (then the registry is saved before the client hears ``OK``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from septa.api.protocol import Request
from septa.core.app import Qubes
from septa.core.errors import ProtocolError, QubesVMNotFoundError
from septa.core.vm import AdminVM, BaseVM

Result = str | bytes | AsyncIterator[bytes] | None
Handler = Callable[["Call"], Awaitable[Result]]


@dataclass(frozen=True)
class MethodSpec:
    """How one method is called; see the module docstring."""

    name: str
    handler: Handler
    wants_arg: bool | None = False
    wants_payload: bool = False
    dest_adminvm: bool | None = None
    writes: bool = False
    prefix: bool = False


@dataclass
class Call:
    """One call being served: the request with its destination resolved."""

    app: Qubes
    request: Request
    dest: BaseVM
    suffix: str = ""
    services: dict[str, Any] = field(default_factory=dict)
    #: for a call a qube made through qrexec: whether the policy would let it make this
    #: call on a given qube (``admin.vm.List`` and ``admin.Events`` on dom0 show only
    #: those qubes); None for dom0's own calls, which see everything
    permits: Callable[[BaseVM], bool] | None = None

    def may_see(self, vm: BaseVM) -> bool:
        """Whether the caller may learn about ``vm`` through this call."""
        return self.permits is None or self.permits(vm)

    @property
    def arg(self) -> str:
        return self.request.arg

    @property
    def payload(self) -> bytes:
        return self.request.payload

    @property
    def source(self) -> str:
        return self.request.source

    def text_payload(self) -> str:
        try:
            return self.request.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("Payload is not valid UTF-8") from None


class MethodTable:
    """Methods by exact name, plus prefix families such as ``admin.vm.Create.<Class>``."""

    def __init__(self) -> None:
        self.exact: dict[str, MethodSpec] = {}
        self.prefixed: dict[str, MethodSpec] = {}

    def register(self, spec: MethodSpec) -> None:
        (self.prefixed if spec.prefix else self.exact)[spec.name] = spec

    def lookup(self, name: str) -> tuple[MethodSpec, str]:
        """The spec and, for a prefix family, the suffix (e.g. the class name)."""
        if name in self.exact:
            return self.exact[name], ""
        for prefix, spec in self.prefixed.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return spec, name[len(prefix):]
        raise ProtocolError(f"Unknown method: {name}")

    def names(self) -> list[str]:
        return sorted([*self.exact, *self.prefixed])


TABLE = MethodTable()


def method(name: str, *, wants_arg: bool | None = False, wants_payload: bool = False,
           dest_adminvm: bool | None = None, writes: bool = False,
           prefix: bool = False, table: MethodTable | None = None,
           ) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        (table or TABLE).register(MethodSpec(name, handler, wants_arg, wants_payload, dest_adminvm,
                                  writes, prefix))
        return handler

    return register


def prepare(app: Qubes, request: Request, table: MethodTable = TABLE,
            permits: Callable[[BaseVM], bool] | None = None) -> tuple[MethodSpec, Call]:
    """Check a request against its method's spec and resolve its destination."""
    spec, suffix = table.lookup(request.method)
    if spec.wants_arg is False and request.arg:
        raise ProtocolError(f"{request.method} takes no argument")
    if spec.wants_arg is True and not request.arg:
        raise ProtocolError(f"{request.method} needs an argument")
    if not spec.wants_payload and request.payload:
        raise ProtocolError(f"{request.method} takes no payload")
    try:
        dest = app.domains[request.dest]
    except QubesVMNotFoundError:
        raise QubesVMNotFoundError(request.dest) from None
    if spec.dest_adminvm is True and not isinstance(dest, AdminVM):
        raise ProtocolError(f"{request.method} must be called on dom0")
    if spec.dest_adminvm is False and isinstance(dest, AdminVM):
        raise ProtocolError(f"{request.method} cannot be called on dom0")
    return spec, Call(app, request, dest, suffix, permits=permits)
