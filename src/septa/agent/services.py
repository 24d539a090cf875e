"""The qrexec services every template ships, as the files of ``/etc/qubes-rpc``.

A service is an executable file ``/etc/qubes-rpc/<service>`` (or ``<service>+<arg>`` for
one argument only), so a user adds a service by adding a file. The template builder
writes :func:`service_files` into the image (see :mod:`septa.templates.guestfiles`).

- ``qubes.VMShell``: a shell that reads its commands from stdin.
- ``qubes.VMExec``: runs the command its argument encodes (:mod:`septa.agent.vmexec`).
- ``qubes.WaitForSession``: returns at once (there is no GUI session to wait for yet).
- ``qubes.GetDate``: prints the qube's time, ``date -u -Iseconds``.
- ``qubes.Filecopy``: receives files into ``~/QubesIncoming/<source>``
  (:mod:`septa.agent.qfile_unpack`); ``+allow-all-names`` lifts the character rules.
- ``qubes.OpenInVM``: opens a file with the qube's handler and sends it back if edited
  (:mod:`septa.agent.file_editor`).
- ``qubes.OpenURL``: opens a URL with the qube's handler (:mod:`septa.agent.open_url`).
- ``qubes.Backup``: keeps the backup dom0 streams (first line: where): a folder (a new
  ``qubes-backup-<date>`` in it), a file (named so only once complete), or a command
  that reads the stream.
- ``qubes.Restore``: sends a backup back (first line: a file, or a command that prints
  the stream; the second line, the members dom0 wants, is read and not used).
- ``qubes.UpdatesProxy``: connects the call to the updates proxy on 127.0.0.1:8082
  (tinyproxy, running where dom0 turned on ``qubes-updates-proxy``).
- ``septa.Configure``, ``septa.NetAttach``, ``septa.NetDetach``, ``septa.FirewallSet``:
  the qube's services and network, a client link added or removed, a client's firewall
  (:mod:`septa.agent.net_services`; dom0 calls them as root, qubes may not).
"""

from __future__ import annotations

#: Where the template builder installs the services.
RPC_DIR = "/etc/qubes-rpc"
#: Where the template builder installs the agent (the ``septa`` package's parent).
AGENT_DIR = "/usr/lib/septa-agent"
PYTHON = "/usr/bin/python3"


BACKUP_SERVICE = r"""#!/bin/bash
# qubes.Backup: keep the backup on stdin where its first line says (Septa).
IFS= read -r dest || exit 1
if [ -d "$dest" ]; then
    dest="${dest%/}/qubes-backup-$(date +%Y-%m-%dT%H%M%S)"
elif [[ "$dest" == *[[:space:]\|\;\&\$\<\>\`\(\)]* || ! -d "$(dirname -- "$dest")" ]]; then
    exec /bin/sh -c "$dest"
fi
part="$(dirname -- "$dest")/.$(basename -- "$dest").part"
trap 'rm -f -- "$part"' EXIT
cat > "$part" && mv -- "$part" "$dest" && trap - EXIT
"""

RESTORE_SERVICE = r"""#!/bin/bash
# qubes.Restore: send the backup the first line names, a file or a command (Septa).
IFS= read -r src || exit 1
IFS= read -r _members
if [ -f "$src" ]; then
    exec cat -- "$src"
fi
exec /bin/sh -c "$src" </dev/null
"""


def python_service(doc: str, module: str, call: str, agent_dir: str, python: str) -> str:
    """A service file that runs ``call`` of ``septa.agent.<module>``."""
    name = call.split("(", 1)[0]
    return (
        f"#!{python} -IS\n"
        f'"""{doc} (Septa)."""\n'
        "import sys\n"
        f"sys.path.insert(0, {agent_dir!r})\n"
        f"from septa.agent.{module} import {name}  # noqa: E402\n"
        f"sys.exit({call})\n"
    )


def service_files(agent_dir: str = AGENT_DIR, python: str = PYTHON) -> dict[str, str]:
    """The services' file contents by file name; ``agent_dir`` and ``python`` are those
    of the image (tests run the files on the host with theirs)."""
    def service(doc: str, module: str, call: str = "main()") -> str:
        return python_service(doc, module, call, agent_dir, python)

    vmexec = service("qubes.VMExec: run the command that the argument encodes", "vmexec")
    return {
        # bash, not dash: bash reads a pipe one byte at a time, so the data that follows
        # the command line on stdin is left to the command (dash would read ahead).
        "qubes.VMShell": "#!/bin/sh\n# qubes.VMShell: run the commands read from stdin.\n"
                         "exec /bin/bash\n",
        "qubes.VMExec": vmexec,
        "qubes.WaitForSession": "#!/bin/sh\n# qubes.WaitForSession: no GUI session "
                                "to wait for (yet).\nexit 0\n",
        "qubes.GetDate": "#!/bin/sh\n# qubes.GetDate: the qube's time.\n"
                         "exec date -u -Iseconds\n",
        "qubes.Filecopy": service("qubes.Filecopy: receive files into ~/QubesIncoming",
                                  "qfile_unpack", "service_main()"),
        "qubes.OpenInVM": service("qubes.OpenInVM: open a file, send it back if edited",
                                  "file_editor"),
        "qubes.OpenURL": service("qubes.OpenURL: open a URL", "open_url"),
        "qubes.Backup": BACKUP_SERVICE,
        "qubes.Restore": RESTORE_SERVICE,
        "qubes.UpdatesProxy": "#!/bin/sh\n# qubes.UpdatesProxy: a connection to the updates "
                              "proxy of this qube.\nexec socat STDIO TCP:127.0.0.1:8082\n",
        "septa.Configure": service("septa.Configure: this qube's services and network",
                                   "net_services", "configure_main()"),
        "septa.NetAttach": service("septa.NetAttach: serve a client's new link",
                                   "net_services", "attach_main()"),
        "septa.NetDetach": service("septa.NetDetach: forget a client's link",
                                   "net_services", "detach_main()"),
        "septa.FirewallSet": service("septa.FirewallSet: replace a client's firewall",
                                     "net_services", "firewall_main()"),
    }
