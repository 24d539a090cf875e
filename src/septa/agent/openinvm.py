"""``qvm-open-in-vm [--view-only] TARGET FILE|URL`` and ``qvm-open-in-dvm [--view-only]
FILE|URL`` (in qubes), as Qubes' script of these names.

A file goes to ``qubes.OpenInVM`` in ``TARGET`` (``@dispvm`` for ``qvm-open-in-dvm``),
with :mod:`septa.agent.open_sender` as the local program of ``qrexec-client-vm``: the
target opens it with its handler and, if it was edited there, sends it back and the
file here is replaced (not with ``--view-only``). Something that is not a file but
looks like a URL (``scheme://...``) goes to ``qubes.OpenURL`` as one line. A directory
or anything else is refused with the usage. Unlike Qubes' script (meant for menus),
stderr is kept, so the reason of a failure is seen.

A service of ``OpenInVM``/``OpenURL`` that itself opens in a new disposable refuses,
as Qubes does when it cannot ask the user, to avoid an endless chain of disposables.
"""

from __future__ import annotations

import os
import re
import sys

from . import client_vm

URL = re.compile(r"[A-Za-z][A-Za-z0-9+]*://")
#: The local program that sends a URL and waits for the service to end.
URL_SENDER = ["/bin/sh", "-c", 'printf %s\\\\n "$1"; exec cat >/dev/null', "sh"]


def usage(prog: str, status: int = 2) -> int:
    """Print the usage on stderr; ``status``."""
    target = "" if prog == "qvm-open-in-dvm" else "vmname "
    sys.stderr.write(f"Usage: {prog} [--view-only] [--] {target}filename\n")
    return status


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point; the exit status."""
    prog = prog or os.path.basename(sys.argv[0])
    if prog not in ("qvm-open-in-vm", "qvm-open-in-dvm"):
        sys.stderr.write("Must be invoked as qvm-open-in-vm or qvm-open-in-dvm, not as "
                         f"{prog}\n")
        return 2
    words: list[str] = ["@dispvm"] if prog == "qvm-open-in-dvm" else []
    view_only = False
    options = True
    for arg in sys.argv[1:] if argv is None else argv:
        if options and arg == "--":
            options = False
        elif options and arg == "--help":
            return usage(prog, 0)
        elif options and arg == "--view-only":
            view_only = True
        elif options and arg.startswith("-"):
            return usage(prog)
        else:
            words.append(arg)
    if len(words) != 2 or not all(words):
        return usage(prog)
    target, filename = words
    is_url = False
    if os.path.isdir(filename):
        sys.stderr.write(f'Error! "{filename}" is a directory.\n')
        return usage(prog)
    if not os.path.isfile(filename):
        if not URL.match(filename):
            sys.stderr.write(f'Error! "{filename}" is not a valid file or URL.\n')
            return usage(prog)
        is_url = True
    if target.startswith("@dispvm") and os.environ.get(
            "QREXEC_SERVICE_FULL_NAME", "").startswith(("qubes.OpenInVM+", "qubes.OpenURL+")):
        sys.stderr.write("Cannot prompt user, exiting to avoid possible infinite VM "
                         "creation loop.\n")
        return 1
    if is_url:
        service, program = "qubes.OpenURL", [*URL_SENDER, filename]
    else:
        options_out = ["--view-only"] if view_only else []
        service = "qubes.OpenInVM"
        program = client_vm.agent_program("open_sender", [*options_out, "--", filename])
    return client_vm.main(["--filter-escape-chars-stderr", "--", target, service, *program])
