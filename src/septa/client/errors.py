"""Exceptions of the Admin API client, named after the classes the daemon sends on the wire.

The daemon reports a failure as an exception *name* plus a message. The client turns
that name back into one of the classes below (see :func:`error_class`), so callers can
catch e.g. :class:`QubesVMNotFoundError` or, more broadly, :class:`QubesException`.
Every class here derives from :class:`QubesException`, so a tool needs one ``except``
clause to report any Admin API failure cleanly. Names the client does not know map to
:class:`QubesException` itself.
"""

from __future__ import annotations


class QubesException(Exception):
    """Base of every error the Admin API (or this client) reports."""

    def __init__(self, message: str = "", *args: str) -> None:
        super().__init__(_format_message(message, args))

    def __str__(self) -> str:
        # KeyError-derived subclasses would otherwise show repr() of the message.
        return str(self.args[0]) if self.args else ""


def _format_message(message: str, args: tuple[str, ...]) -> str:
    """Apply %-formatting the way the wire protocol defines it (digit strings become ints)."""
    values = tuple(int(a) if a.isdigit() else a for a in args)
    try:
        return message % values
    except (TypeError, ValueError, KeyError):
        # A daemon that forgot to escape a bare '%': show the text as it came.
        return message if not args else " ".join((message, *args))


class QubesVMNotFoundError(QubesException, KeyError):
    """No qube of that name (or uuid) exists."""


class QubesVMInvalidUUIDError(QubesException):
    """A qube was addressed with a malformed uuid."""


class QubesVMError(QubesException):
    """A problem with the state of a qube."""


class QubesVMInUseError(QubesVMError):
    """The qube is referenced by another qube or a global property."""


class QubesVMNotStartedError(QubesVMError):
    """The qube is halted but should be running or paused."""


class QubesVMNotRunningError(QubesVMNotStartedError):
    """The qube should be running but is halted or paused."""


class QubesVMNotPausedError(QubesVMNotStartedError):
    """The qube should be paused but is not."""


class QubesVMNotSuspendedError(QubesVMError):
    """The qube should be suspended but is not."""


class QubesVMNotHaltedError(QubesVMError):
    """The qube should be halted but is running or paused."""


class QubesVMShutdownTimeoutError(QubesVMError):
    """The qube did not shut down in time."""


#: Older wire name of :class:`QubesVMShutdownTimeoutError`.
QubesVMShutdownTimeout = QubesVMShutdownTimeoutError


class QubesNoTemplateError(QubesVMError):
    """The qube cannot start because it has no template."""


class QubesPoolInUseError(QubesException):
    """The storage pool still holds volumes and cannot be removed."""


class QubesValueError(QubesException, ValueError):
    """A value is invalid or out of bounds."""


class QubesPropertyValueError(QubesValueError):
    """A value given for a property is not acceptable."""


class QubesNoSuchPropertyError(QubesException, AttributeError):
    """The property does not exist."""


class QubesNotImplementedError(QubesException, NotImplementedError):
    """The operation is not implemented (yet)."""


class BackupCancelledError(QubesException):
    """The backup was cancelled."""


class BackupAlreadyRunningError(QubesException):
    """The same backup is already running."""


class QubesMemoryError(QubesVMError, MemoryError):
    """Not enough memory to start the qube."""


class QubesFeatureNotFoundError(QubesException, KeyError):
    """The feature is not set on the qube."""


class QubesTagNotFoundError(QubesException, KeyError):
    """The tag is not set on the qube."""


class QubesLabelNotFoundError(QubesException, KeyError):
    """No label of that name or index exists."""


class ProtocolError(QubesException):
    """The daemon refused a malformed request, or the client got malformed data."""


class PermissionDenied(QubesException):
    """The call was refused by policy."""


class QubesPermissionDenied(PermissionDenied):
    """The call was refused by policy (alternative wire name)."""


class DeviceNotAssigned(QubesException, KeyError):
    """The device is not assigned to the qube."""


class DeviceAlreadyAttached(QubesException, KeyError):
    """The device is already attached."""


class DeviceAlreadyAssigned(QubesException, KeyError):
    """The device is already assigned."""


class UnrecognizedDevice(QubesException, ValueError):
    """The device identity is not what was expected."""


class UnexpectedDeviceProperty(QubesException, ValueError):
    """A device property (backend, class...) has an unexpected value."""


class StoragePoolException(QubesException):
    """A storage pool or volume operation failed."""


class QubesNotesError(QubesException):
    """Reading or writing the notes of a qube failed."""


class BackupRestoreError(QubesException):
    """Restoring a backup failed."""


class QubesDaemonCommunicationError(QubesException):
    """The daemon could not be reached or answered something unreadable."""


class QubesDaemonAccessError(QubesDaemonCommunicationError):
    """The daemon closed the connection without an answer (often: refused by policy)."""


#: Older name of :class:`QubesDaemonAccessError`.
QubesDaemonNoResponseError = QubesDaemonAccessError


class QubesPropertyAccessError(QubesDaemonAccessError, AttributeError):
    """A property could not be read or written, for an unknown reason."""

    def __init__(self, prop: str) -> None:
        super().__init__("Failed to access '%s' property", prop)


class QubesPropertyUnsetError(QubesException, AttributeError):
    """A property of type int or bool currently has no value (client-side condition)."""


_ALL: tuple[type[QubesException], ...] = (
    QubesException,
    QubesVMNotFoundError,
    QubesVMInvalidUUIDError,
    QubesVMError,
    QubesVMInUseError,
    QubesVMNotStartedError,
    QubesVMNotRunningError,
    QubesVMNotPausedError,
    QubesVMNotSuspendedError,
    QubesVMNotHaltedError,
    QubesVMShutdownTimeoutError,
    QubesNoTemplateError,
    QubesPoolInUseError,
    QubesValueError,
    QubesPropertyValueError,
    QubesNoSuchPropertyError,
    QubesNotImplementedError,
    BackupCancelledError,
    BackupAlreadyRunningError,
    QubesMemoryError,
    QubesFeatureNotFoundError,
    QubesTagNotFoundError,
    QubesLabelNotFoundError,
    ProtocolError,
    PermissionDenied,
    QubesPermissionDenied,
    DeviceNotAssigned,
    DeviceAlreadyAttached,
    DeviceAlreadyAssigned,
    UnrecognizedDevice,
    UnexpectedDeviceProperty,
    StoragePoolException,
    QubesNotesError,
    BackupRestoreError,
    QubesDaemonCommunicationError,
    QubesDaemonAccessError,
)

_BY_NAME: dict[str, type[QubesException]] = {cls.__name__: cls for cls in _ALL}
_BY_NAME["QubesVMShutdownTimeout"] = QubesVMShutdownTimeoutError
_BY_NAME["QubesDaemonNoResponseError"] = QubesDaemonAccessError


def error_class(wire_name: str) -> type[QubesException]:
    """The exception class for an exception name received from the daemon."""
    return _BY_NAME.get(wire_name, QubesException)
