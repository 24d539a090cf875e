"""Call names: service names and arguments are checked before the policy is consulted."""

from __future__ import annotations

import pytest

from septa.qrexec.policy import Policy, Request, RequestError
from septa.qrexec.policy.names import check_call, is_qube_name, split_call
from tests.unit.test_policy_evaluate import INFO


@pytest.mark.parametrize(
    ("call", "service", "argument"),
    [
        ("qubes.Filecopy", "qubes.Filecopy", ""),
        ("qubes.Filecopy+", "qubes.Filecopy", ""),
        ("admin.vm.volume.Info+private", "admin.vm.volume.Info", "private"),
        ("a.B+c+d", "a.B", "c+d"),
        ("A-b_c.9+x-Y_z.0", "A-b_c.9", "x-Y_z.0"),
    ],
)
def test_split_and_accept(call: str, service: str, argument: str) -> None:
    request = Request.parse("work", "vault", call)
    assert (request.service, request.argument) == (service, argument)
    assert split_call(call) == (service, argument)
    assert request.call == f"{service}+{argument}"


@pytest.mark.parametrize(
    ("service", "argument"),
    [
        ("", ""),
        ("a b", ""),
        ("a/b", ""),
        ("a:b", ""),
        ("qubes.Ünicode", ""),
        ("a.B", "x y"),
        ("a.B", "../etc"),
        ("a.B", "a\0b"),
        ("a.B", "a\nb"),
        ("a.B", "a=b"),
        ("a.B", "a,b"),
        ("x" * 65, ""),
        ("a.B", "x" * 65),
        ("a+B", ""),
    ],
)
def test_malformed_calls_are_refused(service: str, argument: str) -> None:
    with pytest.raises(RequestError):
        check_call(service, argument)
    with pytest.raises(RequestError):
        Request("work", "vault", service, argument)


def test_length_limit_is_64_bytes_each() -> None:
    Request("work", "vault", "s" * 64, "a" * 64)
    with pytest.raises(RequestError, match="64 bytes"):
        Request("work", "vault", "s" * 65, "")
    with pytest.raises(RequestError, match="64 bytes"):
        Request("work", "vault", "s", "a" * 65)


def test_refused_before_the_policy_is_consulted() -> None:
    """Even a policy allowing everything never sees a malformed call."""
    policy = Policy.from_text("* * * * allow")
    with pytest.raises(RequestError):
        policy.evaluate(Request.parse("work", "vault", "a.B+bad arg"), INFO)


def test_empty_target_means_default() -> None:
    assert Request.parse("work", "", "a.B").target == "@default"


@pytest.mark.parametrize(
    ("name", "ok"),
    [("work", True), ("sys-net", True), ("a.b_c-1", True), ("W" * 31, True), ("W" * 32, False),
     ("1work", False), ("-x", False), ("", False), ("a b", False)],
)
def test_qube_names(name: str, ok: bool) -> None:
    assert is_qube_name(name) is ok
