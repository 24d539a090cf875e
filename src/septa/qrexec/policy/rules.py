"""One policy rule, and its construction (with every check) from the columns of a line.

Both the current format (:mod:`.parser`) and the 4.0 format (:mod:`.legacy`) end up
here, so a rule means the same whichever file it came from.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from . import names
from .errors import PolicySyntaxError
from .tokens import Kind, Place, Token, parse_token


class Action(enum.Enum):
    """What a matching rule decides."""

    ALLOW = "allow"
    DENY = "deny"
    ASK = "ask"


_PARAMS: dict[Action, frozenset[str]] = {
    Action.ALLOW: frozenset({"target", "user", "notify", "autostart"}),
    Action.ASK: frozenset({"target", "default_target", "user", "notify", "autostart"}),
    Action.DENY: frozenset({"notify"}),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """A policy line. ``service`` / ``argument`` None stand for ``*``; ``argument``
    is kept without its leading ``+``."""

    service: str | None
    argument: str | None
    source: Token
    target: Token
    action: Action
    redirect: Token | None = None
    default_target: Token | None = None
    user: str | None = None
    notify: bool = False
    autostart: bool = True
    path: str = "<policy>"
    lineno: int | None = None

    @property
    def origin(self) -> str:
        """``FILE:LINE`` (just ``FILE`` for rules 4.0 compatibility adds)."""
        return self.path if self.lineno is None else f"{self.path}:{self.lineno}"


def parse_service_column(
    service: str, argument: str, path: str, lineno: int | None
) -> tuple[str | None, str | None]:
    """The service and argument columns as (service or None, argument or None)."""
    svc: str | None = None
    if service != "*":
        problem = names.service_problem(service)
        if problem:
            raise PolicySyntaxError(path, lineno, problem)
        svc = service
    if argument == "*":
        return svc, None
    if not argument.startswith("+"):
        raise PolicySyntaxError(path, lineno, f"argument {argument!r} does not start with '+'")
    if svc is None:
        raise PolicySyntaxError(path, lineno, "only * argument allowed for * service")
    problem = names.argument_problem(argument[1:])
    if problem:
        raise PolicySyntaxError(path, lineno, problem)
    return svc, argument[1:]


def build_rule(
    service: str,
    argument: str,
    source: str,
    target: str,
    action: str,
    params: Sequence[str],
    *,
    path: str,
    lineno: int | None,
) -> Rule:
    """Check every column of a rule and build it; PolicySyntaxError names the problem."""
    svc, arg = parse_service_column(service, argument, path, lineno)
    src = _token(source, Place.SOURCE, path, lineno)
    tgt = _token(target, Place.TARGET, path, lineno)
    try:
        act = Action(action)
    except ValueError:
        raise PolicySyntaxError(path, lineno, f"invalid action {action!r}") from None
    values = _params(act, params, path, lineno)

    redirect = _optional_token(values.get("target"), path, lineno)
    default_target = _optional_token(values.get("default_target"), path, lineno)
    user = values.get("user")
    if user is not None and not names.is_user_name(user):
        raise PolicySyntaxError(path, lineno, f"invalid user name {user!r}")
    if act is Action.ALLOW and tgt.kind is Kind.DEFAULT and redirect is None:
        raise PolicySyntaxError(
            path, lineno, "allow action for @default target must specify target= option"
        )
    return Rule(
        service=svc,
        argument=arg,
        source=src,
        target=tgt,
        action=act,
        redirect=redirect,
        default_target=default_target,
        user=user,
        notify=_flag(values, "notify", act is Action.DENY, path, lineno),
        autostart=_flag(values, "autostart", True, path, lineno),
        path=path,
        lineno=lineno,
    )


def _token(text: str, place: Place, path: str, lineno: int | None) -> Token:
    try:
        return parse_token(text, place)
    except ValueError as e:
        raise PolicySyntaxError(path, lineno, str(e)) from None


def _optional_token(text: str | None, path: str, lineno: int | None) -> Token | None:
    return None if text is None else _token(text, Place.REDIRECT, path, lineno)


def _params(
    action: Action, params: Sequence[str], path: str, lineno: int | None
) -> dict[str, str]:
    values: dict[str, str] = {}
    for param in params:
        key, eq, value = param.partition("=")
        if not eq:
            raise PolicySyntaxError(path, lineno, f"invalid action parameter {param!r}")
        if key not in _PARAMS[action]:
            raise PolicySyntaxError(
                path, lineno, f"invalid parameter {key!r} for action {action.value}"
            )
        if key in values:
            raise PolicySyntaxError(path, lineno, f"parameter given twice: {key!r}")
        if not value:
            raise PolicySyntaxError(path, lineno, f"empty value for parameter {key!r}")
        values[key] = value
    return values


def _flag(
    values: dict[str, str], key: str, default: bool, path: str, lineno: int | None
) -> bool:
    value = values.get(key)
    if value is None:
        return default
    if value not in ("yes", "no"):
        raise PolicySyntaxError(path, lineno, f"{key}={value!r} must be 'yes' or 'no'")
    return value == "yes"
