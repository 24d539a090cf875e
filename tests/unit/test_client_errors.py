"""The client's exception classes: wire names, hierarchy, readable messages."""

from __future__ import annotations

import pytest

from septa.client import errors


@pytest.mark.parametrize(
    "name",
    [
        "QubesVMNotFoundError",
        "QubesVMError",
        "QubesVMNotHaltedError",
        "QubesVMNotStartedError",
        "QubesValueError",
        "QubesNoSuchPropertyError",
        "QubesPropertyValueError",
        "QubesFeatureNotFoundError",
        "QubesTagNotFoundError",
        "QubesLabelNotFoundError",
        "QubesPermissionDenied",
        "ProtocolError",
        "QubesDaemonCommunicationError",
        "QubesVMInUseError",
        "QubesNotImplementedError",
        "BackupCancelledError",
        "QubesMemoryError",
        "QubesPoolInUseError",
        "StoragePoolException",
    ],
)
def test_every_wire_name_has_its_own_class(name: str) -> None:
    cls = errors.error_class(name)
    assert cls.__name__ == name
    assert issubclass(cls, errors.QubesException)


def test_hierarchy_matches_qubesadmin() -> None:
    assert issubclass(errors.QubesVMNotRunningError, errors.QubesVMNotStartedError)
    assert issubclass(errors.QubesVMInUseError, errors.QubesVMError)
    assert issubclass(errors.QubesMemoryError, errors.QubesVMError)
    assert issubclass(errors.QubesPropertyValueError, errors.QubesValueError)
    assert issubclass(errors.QubesValueError, ValueError)
    assert issubclass(errors.QubesNoSuchPropertyError, AttributeError)
    assert issubclass(errors.QubesFeatureNotFoundError, KeyError)
    assert issubclass(errors.QubesDaemonAccessError, errors.QubesDaemonCommunicationError)
    assert errors.error_class("QubesVMShutdownTimeout") is errors.QubesVMShutdownTimeoutError


def test_keyerror_subclasses_print_the_plain_message() -> None:
    exc = errors.QubesFeatureNotFoundError("Feature not set: %s", "os")
    assert str(exc) == "Feature not set: os"


def test_unknown_name_is_the_base_class() -> None:
    assert errors.error_class("NoSuchThing") is errors.QubesException
