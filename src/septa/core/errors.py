"""Typed errors of the registry; the class name is the exception name sent on the wire.

The names match those of Qubes' ``qubes.exc`` / ``qubesadmin.exc`` so that the real
Qubes admin client raises the matching exception class.
"""

from __future__ import annotations


class QubesException(Exception):
    """Base of every error that is reported to a client instead of crashing the daemon."""

    @property
    def wire_name(self) -> str:
        return type(self).__name__


class ProtocolError(QubesException):
    """The request broke the wire protocol (framing, size, unknown method, bad argument)."""


class PermissionDenied(QubesException):
    """A policy refused the call; the wire name is Qubes' ``QubesPermissionDenied``."""

    @property
    def wire_name(self) -> str:
        return "QubesPermissionDenied"


class QubesValueError(QubesException, ValueError):
    """A value is not acceptable."""


class QubesPropertyValueError(QubesValueError):
    """A value is not acceptable for one property."""

    def __init__(self, holder: object, prop: str, value: object, msg: str | None = None) -> None:
        super().__init__(msg or f"Invalid value {value!r} for property {prop!r} of {holder}")
        self.holder, self.prop, self.value = holder, prop, value


class QubesNoSuchPropertyError(QubesException, AttributeError):
    """The qube (or the global registry) has no property of that name."""

    def __init__(self, holder: object, prop: str) -> None:
        super().__init__(f"Invalid property {prop!r} of {holder}")
        self.prop = prop


class QubesVMNotFoundError(QubesException, KeyError):
    """No qube of that name, qid or uuid."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No such domain: {name!r}")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class QubesVMError(QubesException):
    """An operation on one qube failed."""


class QubesVMInUseError(QubesVMError):
    """The qube is still used by others (as template, netvm, default_dispvm, ...)."""


class QubesVMNotHaltedError(QubesVMError):
    """The operation needs the qube halted."""


class QubesVMNotStartedError(QubesVMError):
    """The operation needs the qube running."""


class QubesVMNotRunningError(QubesVMNotStartedError):
    """The qube is not running."""


class QubesVMShutdownTimeout(QubesVMError):
    """The qube did not shut down within its shutdown_timeout."""


class QubesFeatureNotFoundError(QubesException, KeyError):
    """The qube has no such feature (nor its template / netvm / dom0 where asked)."""

    def __init__(self, vm: object, feature: str) -> None:
        super().__init__(f"Feature not set for domain {vm}: {feature}")

    def __str__(self) -> str:
        return str(self.args[0])


class QubesTagNotFoundError(QubesException, KeyError):
    """The qube has no such tag."""

    def __init__(self, vm: object, tag: str) -> None:
        super().__init__(f"Tag not set for domain {vm}: {tag}")

    def __str__(self) -> str:
        return str(self.args[0])


class QubesLabelNotFoundError(QubesException, KeyError):
    """No label of that name or index."""

    def __init__(self, label: object) -> None:
        super().__init__(f"Label does not exist: {label}")

    def __str__(self) -> str:
        return str(self.args[0])


class QubesNotImplementedError(QubesException, NotImplementedError):
    """A feature that a later part of Septa brings; refused cleanly until then."""


class StoragePoolException(QubesException):
    """A storage pool or volume operation failed."""


class BackupCancelledError(QubesException):
    """The backup was cancelled (``admin.backup.Cancel``)."""


class BackupAlreadyRunningError(QubesException):
    """A backup of this profile is running already."""
