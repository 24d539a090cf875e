"""OPEN requests: what a call runs, as which user, with which environment (agent side).

The payload of OPEN is a JSON object of one of two forms::

    {"service": "qubes.VMShell", "arg": "", "source": "dom0", "user": "user",
     "requested_target": "work"}
    {"command": "ls -l /home", "user": "root", "source": "dom0"}

A service runs the executable file ``<dir>/<service>+<arg>``, or else ``<dir>/<service>``,
from the first of the service directories (``/etc/qubes-rpc``) that has it, with the
argument (when not empty) as its only command line argument, as Qubes does. A command
runs ``/bin/sh -c <command>`` (Qubes' ``user:command`` form). Either runs as ``user``
(default ``user``, Qubes' default user) in its home directory with an environment built
from the passwd entry, plus ``QREXEC_REMOTE_DOMAIN`` (``source``, default ``dom0``),
``QREXEC_REQUESTED_TARGET`` and, for services, ``QREXEC_SERVICE_FULL_NAME``
(``<service>+<arg>``, or ``<service>`` when the argument is empty) and
``QREXEC_SERVICE_ARGUMENT`` (only when the argument is not empty). Unknown keys are
ignored.

:func:`parse_request` validates a request; a request it refuses
(:class:`RequestError`) gets an ERROR frame. A service that does not exist is not an
error of the request: the call runs and ends with a message on stderr and status 127.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: Where services live, searched in order.
RPC_DIRS = ("/etc/qubes-rpc",)
DEFAULT_USER = "user"
DEFAULT_SOURCE = "dom0"
SHELL = "/bin/sh"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Exit status of a call whose service or command cannot be run / does not exist.
STATUS_CANNOT_RUN = 126
STATUS_NOT_FOUND = 127

#: Characters of service names; arguments may also contain ``+``. No ``/``: the names
#: become file names in the service directories.
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
ARG_CHARS = NAME_CHARS | {"+"}
MAX_SERVICE = 64
#: ``<service>+<arg>`` is a file name: at most NAME_MAX bytes.
MAX_FULL_NAME = 255


class RequestError(ValueError):
    """An OPEN request the agent refuses (it answers ERROR on the call's channel)."""


class User:
    """What the agent needs of a passwd entry."""

    __slots__ = ("name", "uid", "gid", "groups", "home", "shell")

    def __init__(
        self, name: str, uid: int, gid: int, groups: list[int], home: str, shell: str,
    ) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home
        self.shell = shell


def lookup_user(name: str) -> User:
    """The user ``name`` from the system's passwd and group databases."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise RequestError(f"no user {name!r} in this qube") from None
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, groups,
                entry.pw_dir or "/", entry.pw_shell or SHELL)


class CallConfig:
    """Where the agent finds services and users (tests point them at a temp dir and the
    current user), and the stdin window it grants each call."""

    def __init__(
        self,
        rpc_dirs: Sequence[str] = RPC_DIRS,
        lookup_user: Callable[[str], User] = lookup_user,
        stdin_window: int | None = None,
    ) -> None:
        from . import wire

        self.rpc_dirs = tuple(rpc_dirs)
        self.lookup_user = lookup_user
        self.stdin_window = wire.INITIAL_WINDOW if stdin_window is None else stdin_window
        if self.stdin_window < wire.INITIAL_WINDOW:
            raise ValueError("the stdin window cannot be smaller than the initial window")


class Request:
    """A valid request, ready to run: ``argv`` with ``env`` in ``cwd`` as ``user``, or,
    when ``argv`` is None, a call that fails at once with ``status`` and ``message``."""

    __slots__ = ("label", "argv", "user", "env", "cwd", "status", "message")

    def __init__(self, label: str, argv: list[str] | None, user: User, env: dict[str, str],
                 cwd: str, status: int = 0, message: str = "") -> None:
        self.label = label
        self.argv = argv
        self.user = user
        self.env = env
        self.cwd = cwd
        self.status = status
        self.message = message


def _text(request: dict[str, object], key: str, default: str | None = None) -> str:
    value = request.get(key, default)
    if value is None:
        raise RequestError(f"the request has no {key!r}")
    if not isinstance(value, str):
        raise RequestError(f"{key!r} must be a string")
    if "\0" in value:
        raise RequestError(f"{key!r} contains a NUL character")
    return value


def _check_name(what: str, value: str, chars: frozenset[str], empty_ok: bool) -> None:
    if not value and not empty_ok:
        raise RequestError(f"empty {what}")
    if value.startswith("."):
        raise RequestError(f"{what} {value!r} starts with a dot")
    bad = sorted(set(value) - chars)
    if bad:
        raise RequestError(f"{what} {value!r} contains {''.join(bad)!r}")


def find_service(service: str, arg: str, rpc_dirs: Sequence[str]) -> tuple[str | None, bool]:
    """The file that serves ``service`` with ``arg`` (``<service>+<arg>`` wins over
    ``<service>``, in any directory), and whether one exists that is not executable."""
    names = [f"{service}+{arg}", service] if arg else [service]
    unexecutable = False
    for name in names:
        for directory in rpc_dirs:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                if os.access(path, os.X_OK):
                    return path, False
                unexecutable = True
    return None, unexecutable


def user_env(user: User) -> dict[str, str]:
    """The login environment of ``user``."""
    return {
        "HOME": user.home, "USER": user.name, "LOGNAME": user.name, "SHELL": user.shell,
        "PATH": ROOT_PATH if user.uid == 0 else USER_PATH,
    }


def parse_request(payload: bytes, config: CallConfig) -> Request:
    """Validate an OPEN payload and resolve what it runs; :class:`RequestError` if refused."""
    import json

    try:
        request = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"the request is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError("the request is not a JSON object")
    if ("service" in request) == ("command" in request):
        raise RequestError("the request must name either a service or a command")
    user = config.lookup_user(_text(request, "user", DEFAULT_USER))
    if os.geteuid() != 0 and user.uid != os.geteuid():
        raise RequestError(f"cannot run as {user.name}: the agent does not run as root")
    env = user_env(user)
    env["QREXEC_REMOTE_DOMAIN"] = _text(request, "source", DEFAULT_SOURCE)
    target = _text(request, "requested_target", "")
    cwd = user.home if os.path.isdir(user.home) else "/"
    if "command" in request:
        command = _text(request, "command")
        if not command:
            raise RequestError("empty command")
        if target:
            env["QREXEC_REQUESTED_TARGET"] = target
        return Request(f"command of {user.name}", [SHELL, "-c", command], user, env, cwd)
    service = _text(request, "service")
    arg = _text(request, "arg", "")
    _check_name("service name", service, NAME_CHARS, empty_ok=False)
    _check_name("service argument", arg, ARG_CHARS, empty_ok=True)
    full_name = f"{service}+{arg}" if arg else service
    if len(service) > MAX_SERVICE or len(full_name) > MAX_FULL_NAME:
        raise RequestError(f"service name {full_name!r} is too long")
    env["QREXEC_SERVICE_FULL_NAME"] = full_name
    if arg:
        env["QREXEC_SERVICE_ARGUMENT"] = arg
    env["QREXEC_REQUESTED_TARGET"] = target
    label = f"service {full_name}"
    path, unexecutable = find_service(service, arg, config.rpc_dirs)
    if path is None:
        if unexecutable:
            return Request(label, None, user, env, cwd, STATUS_CANNOT_RUN,
                           f"septa-agent: the file of {label} is not executable")
        return Request(label, None, user, env, cwd, STATUS_NOT_FOUND,
                       f"septa-agent: no {label} in {':'.join(config.rpc_dirs)}")
    return Request(label, [path, arg] if arg else [path], user, env, cwd)
