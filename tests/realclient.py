"""Run the unmodified Qubes 4.3 admin client (``qubesadmin`` and its qvm-* tools) against
a septad under test.

The client talks to the fixed path /var/run/qubesd.sock, and only when /etc/qubes-release
exists. So each tool runs in a private mount namespace: an overlay on /etc holding a
``qubes-release`` file (and a ``qubes`` group, which the client's qvm-clone looks up), a
tmpfs on /run, and our socket bind-mounted onto /run/qubesd.sock. The host's own paths
are never touched. ``/usr/lib`` gets an overlay too, holding
``/usr/lib/qubes/qrexec-client`` (which the real qvm-run runs) pointing at Septa's.
The client is not part of Septa: it is found at ``$SEPTA_QUBESADMIN``
(a source checkout of qubes-core-admin-client 4.3 with ``egg-info`` generated and a
``venv/`` beside it), by default /opt/qubesadmin-4.3; tests skip when it is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CLIENT_DIR = Path(os.environ.get("SEPTA_QUBESADMIN", "/opt/qubesadmin-4.3"))

NAMESPACE_SCRIPT = r"""
set -e
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$NS_DIR/etc-upper,workdir=$NS_DIR/etc-work" /etc
echo "Qubes release 4.3 (R4.3)" > /etc/qubes-release
grep -q '^qubes:' /etc/group || echo "qubes:x:9999:root" >> /etc/group
mount -t overlay overlay \
    -o "lowerdir=/usr/lib,upperdir=$NS_DIR/lib-upper,workdir=$NS_DIR/lib-work" /usr/lib
mkdir -p /usr/lib/qubes
printf '#!/bin/sh\nexec %s -m septa.tools.qrexec_client "$@"\n' "$NS_SEPTA_PYTHON" \
    > /usr/lib/qubes/qrexec-client
chmod 755 /usr/lib/qubes/qrexec-client
mount -t tmpfs tmpfs /run
touch /run/qubesd.sock
mount --bind "$NS_SOCKET" /run/qubesd.sock
export PATH="$NS_DIR/bin:$PATH"
exec "$@"
"""


def available() -> str | None:
    """None when the real client can be run here, else the reason it cannot."""
    python = CLIENT_DIR / "venv" / "bin" / "python"
    if not python.exists() or not (CLIENT_DIR / "qubesadmin").is_dir():
        return f"the Qubes 4.3 admin client is not installed at {CLIENT_DIR}"
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return "running the real client needs root and unshare (mount namespace)"
    return None


class RealClient:
    """Runs real qvm-* tools, each in a fresh mount namespace, against one socket."""

    def __init__(self, socket_path: Path, work_dir: Path) -> None:
        self.socket_path = socket_path
        self.dir = work_dir
        for sub in ("etc-upper", "etc-work", "lib-upper", "lib-work", "bin"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def add_program(self, name: str, script: str) -> None:
        """Put a program on the client's PATH (e.g. a desktop tool it calls along the way)."""
        path = self.dir / "bin" / name
        path.write_text(script)
        path.chmod(0o755)

    def run(self, tool: str, *args: str, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        module = tool.replace("-", "_")
        for sub in ("etc-upper", "etc-work", "lib-upper", "lib-work"):
            shutil.rmtree(self.dir / sub)
            (self.dir / sub).mkdir()
        command = [
            "unshare", "-m", "bash", "-c", NAMESPACE_SCRIPT, "ns",
            str(CLIENT_DIR / "venv" / "bin" / "python"), "-c",
            f"import sys; sys.argv[0] = {tool!r}; "
            f"from qubesadmin.tools.{module} import main; sys.exit(main())",
            *args,
        ]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(CLIENT_DIR),
               "NS_DIR": str(self.dir), "NS_SOCKET": str(self.socket_path), "LANG": "C.UTF-8",
               "NS_SEPTA_PYTHON": sys.executable,
               "SEPTA_ROOT": str(self.socket_path.parents[2])}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                                input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result
