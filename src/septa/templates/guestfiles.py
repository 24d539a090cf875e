"""Files the builder puts into every template, whatever the distribution.

The agent (copied from :mod:`septa.agent` to ``/usr/lib/septa-agent``) with its systemd
unit, started early in sysinit (and by udev when its port is hot-plugged), and the unit
that tells it when the boot is complete (it sends READY then); the
``septa-mount-private`` script and unit (private volume ``/dev/vdb`` on ``/rw``, formatted
on first boot, ``/rw/home`` bound on ``/home``, as Qubes lays out its private volume);
host name, fstab and the console login; the qrexec services of
:mod:`septa.agent.services` in ``/etc/qubes-rpc``; ``qrexec-client-vm``
(:mod:`septa.agent.client_vm`) and the file tools of :data:`GUEST_TOOLS` (``qvm-copy``,
``qvm-open-in-vm``...) in ``/usr/bin``; the optional services dom0 turns on by flag, and
the updates proxy (:mod:`septa.templates.guest_services`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from septa.agent.services import RPC_DIR, service_files

from . import guest_services
from .recipe import Recipe, agent_files

AGENT_DIR = "/usr/lib/septa-agent"
UNIT_DIR = "/usr/lib/systemd/system"
UDEV_RULES_DIR = "/usr/lib/udev/rules.d"
AGENT_PORT = "org.septa.agent.0"

AGENT_SERVICE = f"""\
[Unit]
Description=Septa guest agent on virtio-serial port {AGENT_PORT}
# As early as possible: the port's device node exists as soon as the kernel is up (the
# initrd loads virtio_console) and the agent finds it through sysfs, without udev.
DefaultDependencies=no
After=systemd-journald.socket
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=exec
ExecStart=/usr/bin/python3 -I -S {AGENT_DIR}/septa-agent --name {AGENT_PORT}
SyslogIdentifier=septa-agent
# Boot priority, so the host gets READY early; the agent drops it after READY.
Nice=-15
Restart=always
RestartSec=1

[Install]
WantedBy=sysinit.target
"""

AGENT_UDEV_RULE = f"""\
# Start the Septa agent when its virtio-serial port is hot-plugged (at boot, sysinit.target
# starts it already).
SUBSYSTEM=="virtio-ports", ATTR{{name}}=="{AGENT_PORT}", TAG+="systemd", \\
  ENV{{SYSTEMD_WANTS}}+="septa-agent.service"
"""

# -I -S: no environment, no site (and its imports): the agent needs the stdlib only.
AGENT_LAUNCHER = f"""\
#!/usr/bin/python3 -I -S
\"\"\"Start the Septa guest agent (installed by the template builder).\"\"\"
import sys

sys.path.insert(0, "{AGENT_DIR}")
from septa.agent.main import main  # noqa: E402

sys.exit(main())
"""

CLIENT_VM = "/usr/bin/qrexec-client-vm"
CLIENT_VM_LAUNCHER = f"""\
#!/usr/bin/python3 -IS
\"\"\"qrexec-client-vm TARGET SERVICE[+ARG]: call a service elsewhere (Septa).\"\"\"
import sys

sys.path.insert(0, "{AGENT_DIR}")
from septa.agent.client_vm import main  # noqa: E402

sys.exit(main())
"""

#: The tools in qubes, by name: (module of ``septa.agent``, what it does). Each runs
#: ``main()`` of its module, which tells the variants apart by the name it is run under.
GUEST_TOOLS = {
    "qvm-copy": ("filecopy", "copy files to the qube the policy picks"),
    "qvm-move": ("filecopy", "move files to the qube the policy picks"),
    "qvm-copy-to-vm": ("filecopy", "copy files to a qube"),
    "qvm-move-to-vm": ("filecopy", "move files to a qube"),
    "qvm-open-in-vm": ("openinvm", "open a file or URL in another qube"),
    "qvm-open-in-dvm": ("openinvm", "open a file or URL in a disposable"),
}


def tool_launcher(name: str, module: str, what: str) -> str:
    """The ``/usr/bin`` file of a guest tool."""
    return (
        "#!/usr/bin/python3 -IS\n"
        f'"""{name}: {what} (Septa)."""\n'
        "import sys\n\n"
        f'sys.path.insert(0, "{AGENT_DIR}")\n'
        f"from septa.agent.{module} import main  # noqa: E402\n\n"
        "sys.exit(main())\n"
    )


AGENT_INIT = '''"""Septa's guest side: only the agent package is installed in qubes."""\n'''

BOOT_COMPLETE_SERVICE = """\
[Unit]
Description=Septa: the qube has booted (the agent sends READY)
After=basic.target septa-mount-private.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/install -D -m 0644 /dev/null /run/septa/boot-complete
ExecStop=/usr/bin/rm -f /run/septa/boot-complete

[Install]
WantedBy=multi-user.target
"""

MOUNT_PRIVATE_SERVICE = f"""\
[Unit]
Description=Septa private volume: /dev/vdb on /rw, /rw/home on /home
DefaultDependencies=no
ConditionPathExists=/dev/vdb
After=systemd-remount-fs.service
Before=local-fs.target umount.target
Conflicts=umount.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={AGENT_DIR}/septa-mount-private /dev/vdb

[Install]
WantedBy=local-fs.target
"""

MOUNT_PRIVATE_SCRIPT = """\
#!/bin/sh
# septa-mount-private [DEVICE]: mount the qube's private volume (default /dev/vdb) on /rw
# and bind /rw/home on /home, the layout of Qubes' private volume. An empty volume (no
# file system, first MiB all zero) is formatted ext4 on first boot and gets a copy of the
# template's /home; a volume with unknown data is never formatted.
set -eu
dev=${1:-/dev/vdb}
say() { echo "septa-mount-private: $*" >&2; }

if [ ! -b "$dev" ]; then
    say "no $dev: nothing to mount"
    exit 0
fi
rc=0
blkid -p "$dev" >/dev/null 2>&1 || rc=$?
if [ "$rc" = 2 ]; then
    if ! cmp -s -n 1048576 "$dev" /dev/zero; then
        say "$dev holds data but no file system that blkid knows: not formatting it"
        exit 1
    fi
    say "formatting the empty private volume $dev"
    mkfs.ext4 -q -F -m 0 -L private -E nodiscard "$dev"
elif [ "$rc" != 0 ]; then
    say "blkid cannot probe $dev (exit status $rc)"
    exit 1
fi
rc=0
e2fsck -p "$dev" >&2 || rc=$?
if [ "$rc" -ge 4 ]; then
    say "e2fsck found errors it cannot repair on $dev (exit status $rc)"
    exit 1
fi
mkdir -p /rw
mount -o noatime "$dev" /rw
if [ ! -d /rw/home ]; then
    say "first boot: copying /home to /rw/home"
    mkdir -p /rw/home
    cp -a /home/. /rw/home/
fi
mkdir -p /rw/config
mount --bind /rw/home /home
"""


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    target.chmod(mode)


def console_autologin_dropin(console: str) -> tuple[str, str]:
    """The drop-in that logs root in on the serial console (path, content)."""
    path = f"/etc/systemd/system/serial-getty@{console}.service.d/septa-autologin.conf"
    text = (
        "[Service]\n"
        "# The console is reachable from the host only (dom0 is trusted).\n"
        "ExecStart=\n"
        "ExecStart=-/sbin/agetty -o '-p -f -- \\\\u' --keep-baud --autologin root "
        "115200,57600,38400,9600 - $TERM\n"
    )
    return path, text


def install_agent(root: Path) -> None:
    """Copy the agent package's Python files to ``/usr/lib/septa-agent`` in ``root``."""
    target = root / AGENT_DIR.lstrip("/")
    package = target / "septa" / "agent"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    _write(root, f"{AGENT_DIR}/septa/__init__.py", AGENT_INIT)
    for rel, path in agent_files():
        dest = package / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        dest.chmod(0o644)
    if not (package / "wire.py").is_file():
        raise FileNotFoundError(f"agent package incomplete: no wire.py in {package}")


def install(root: Path, recipe: Recipe) -> None:
    """Write the guest files into the root file system tree ``root``."""
    _write(root, "/etc/hostname", recipe.hostname + "\n")
    _write(
        root,
        "/etc/hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{recipe.hostname}\n"
        "::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    )
    _write(root, "/etc/fstab", "# <device> <mount point> <type> <options> <dump> <pass>\n"
           "/dev/vda\t/\text4\tdefaults,noatime\t0\t1\n")
    install_agent(root)
    _write(root, f"{AGENT_DIR}/septa-agent", AGENT_LAUNCHER, 0o755)
    _write(root, CLIENT_VM, CLIENT_VM_LAUNCHER, 0o755)
    for name, (module, what) in GUEST_TOOLS.items():
        _write(root, f"/usr/bin/{name}", tool_launcher(name, module, what), 0o755)
    _write(root, f"{AGENT_DIR}/septa-mount-private", MOUNT_PRIVATE_SCRIPT, 0o755)
    _write(root, f"{UNIT_DIR}/septa-agent.service", AGENT_SERVICE)
    _write(root, f"{UNIT_DIR}/septa-mount-private.service", MOUNT_PRIVATE_SERVICE)
    _write(root, f"{UNIT_DIR}/septa-boot-complete.service", BOOT_COMPLETE_SERVICE)
    _write(root, f"{UDEV_RULES_DIR}/90-septa-agent.rules", AGENT_UDEV_RULE)
    for name, text in service_files(AGENT_DIR).items():
        _write(root, f"{RPC_DIR}/{name}", text, 0o755)
    for name, text in guest_services.unit_files().items():
        _write(root, f"{UNIT_DIR}/{name}", text)
    for path, (text, mode) in guest_services.other_files().items():
        _write(root, path, text, mode)
    (root / "rw").mkdir(exist_ok=True)
    if recipe.console_autologin:
        _write(root, *console_autologin_dropin(recipe.console))


def chroot_commands(recipe: Recipe) -> list[list[str]]:
    """Commands to run inside the new root after :func:`install` (user, units, bytecode)."""
    return [
        ["useradd", "--create-home", "--uid", str(recipe.uid), "--user-group",
         "--shell", "/bin/bash", "--comment", "", recipe.user],
        ["systemctl", "enable", "septa-agent.service", "septa-mount-private.service",
         "septa-boot-complete.service", *guest_services.OPTIONAL_UNITS],
        ["python3", "-m", "compileall", "-q", AGENT_DIR],
    ]
