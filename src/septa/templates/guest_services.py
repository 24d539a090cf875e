"""The optional services of a qube, which dom0 turns on by flag, and the updates proxy.

dom0's ``septa.Configure`` writes ``/run/qubes-service/<name>`` for each service turned
on (removes it for each turned off), then runs ``systemctl --no-block start
septa-services.target``. Every optional unit is enabled into that target at build time
(``WantedBy=``, links in ``septa-services.target.wants``) and runs only while its flag
exists (``ConditionPathExists=``); starting the target again starts the newly turned on.
Nothing starts the target at boot: the flags are written after READY.

The updates proxy (Qubes' names and port):

- ``qubes-updates-proxy`` (the updatevm): ``septa-updates-proxy.service`` runs tinyproxy
  in the foreground as user tinyproxy, on 127.0.0.1:8082, with :data:`TINYPROXY_CONF`
  (log to syslog, no log or pid file); the qrexec service ``qubes.UpdatesProxy``
  (:mod:`septa.agent.services`) connects a call to it.
- ``updates-proxy-setup`` (templates): ``septa-updates-proxy-forwarder.socket`` listens
  on 127.0.0.1:8082 and hands each connection to a
  ``septa-updates-proxy-forwarder@.service``, which makes it a ``qubes.UpdatesProxy``
  call to ``@default`` (the policy picks the updatevm). apt finds the proxy through
  ``Acquire::http(s)::Proxy-Auto-Detect``: :data:`APT_PROXY_DETECT` answers
  ``http://127.0.0.1:8082/`` while the flag exists and ``DIRECT`` otherwise, so no
  apt configuration is ever written or left behind when the flag goes.
"""

from __future__ import annotations

from septa.agent.net_host import SERVICE_FLAGS_DIR, SERVICES_TARGET

PROXY_PORT = 8082
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}/"
TINYPROXY_CONF_PATH = "/etc/septa/updates-proxy.conf"
APT_PROXY_DETECT_PATH = "/usr/lib/septa-agent/septa-apt-proxy"
APT_CONF_PATH = "/etc/apt/apt.conf.d/01septa-updates-proxy"

TARGET_UNIT = f"""\
[Unit]
Description=Septa: the optional services dom0 turned on in {SERVICE_FLAGS_DIR}
"""


def _condition(flag: str) -> str:
    return f"ConditionPathExists={SERVICE_FLAGS_DIR}/{flag}"


TINYPROXY_CONF = f"""\
# The updates proxy of this qube (Septa), for templates' package managers. It serves
# qubes.UpdatesProxy calls only: those come in through socat on the loopback.
Port {PROXY_PORT}
Listen 127.0.0.1
Allow 127.0.0.1
# https is tunnelled (CONNECT) to port 443 only; plain http goes to any port.
ConnectPort 443
Timeout 600
MaxClients 100
DisableViaHeader Yes
Syslog On
LogLevel Notice
"""

UPDATES_PROXY_SERVICE = f"""\
[Unit]
Description=Septa updates proxy (tinyproxy on 127.0.0.1:{PROXY_PORT}) for templates
{_condition("qubes-updates-proxy")}
After=network.target

[Service]
Type=exec
User=tinyproxy
Group=tinyproxy
ExecStart=/usr/bin/tinyproxy -d -c {TINYPROXY_CONF_PATH}
Restart=on-failure
RestartSec=2

[Install]
WantedBy={SERVICES_TARGET}
"""

FORWARDER_SOCKET = f"""\
[Unit]
Description=Septa updates proxy forwarder: 127.0.0.1:{PROXY_PORT} to qubes.UpdatesProxy
{_condition("updates-proxy-setup")}

[Socket]
ListenStream=127.0.0.1:{PROXY_PORT}
Accept=yes

[Install]
WantedBy={SERVICES_TARGET}
"""

FORWARDER_SERVICE = """\
[Unit]
Description=Septa updates proxy forwarder: one connection as a qubes.UpdatesProxy call

[Service]
DynamicUser=yes
ExecStart=/usr/bin/qrexec-client-vm @default qubes.UpdatesProxy
StandardInput=socket
StandardOutput=socket
StandardError=journal
"""

APT_PROXY_DETECT = f"""\
#!/bin/sh
# apt's Proxy-Auto-Detect (run by apt's http method for each host): the updates proxy
# while dom0 turns on updates-proxy-setup for this qube, else a direct connection.
if [ -e {SERVICE_FLAGS_DIR}/updates-proxy-setup ]; then
    echo {PROXY_URL}
else
    echo DIRECT
fi
"""

APT_CONF = f"""\
// Septa: the updates proxy while updates-proxy-setup is on ({APT_PROXY_DETECT_PATH}).
Acquire::http::Proxy-Auto-Detect "{APT_PROXY_DETECT_PATH}";
Acquire::https::Proxy-Auto-Detect "{APT_PROXY_DETECT_PATH}";
"""

#: Units enabled into :data:`SERVICES_TARGET` at build time.
OPTIONAL_UNITS = ("septa-updates-proxy.service", "septa-updates-proxy-forwarder.socket")


def unit_files() -> dict[str, str]:
    """The systemd units by file name (for ``/usr/lib/systemd/system``)."""
    return {
        SERVICES_TARGET: TARGET_UNIT,
        "septa-updates-proxy.service": UPDATES_PROXY_SERVICE,
        "septa-updates-proxy-forwarder.socket": FORWARDER_SOCKET,
        "septa-updates-proxy-forwarder@.service": FORWARDER_SERVICE,
    }


def other_files() -> dict[str, tuple[str, int]]:
    """The other files by path in the image: (content, mode)."""
    return {
        TINYPROXY_CONF_PATH: (TINYPROXY_CONF, 0o644),
        APT_PROXY_DETECT_PATH: (APT_PROXY_DETECT, 0o755),
        APT_CONF_PATH: (APT_CONF, 0o644),
    }
