"""``septad``: load the registry and serve the admin, internal and misc sockets."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from septa import paths as septa_paths
from septa.api import (  # noqa: F401 - importing registers the methods
    methods_backup,
    methods_dispvm,
    methods_events,
    methods_features,
    methods_firewall,
    methods_labels,
    methods_later,
    methods_power,
    methods_properties,
    methods_storage,
    methods_vm,
)
from septa.api.ask_broker import AskBroker
from septa.api.dispatch import TABLE, MethodTable
from septa.api.methods_internal import INTERNAL
from septa.api.qrexec_admin import AdminBridge
from septa.api.qrexec_relay import QrexecRelay
from septa.api.qrexec_server import QrexecServer
from septa.api.server import ApiServer, socket_in_use
from septa.core import store
from septa.core.errors import QubesException
from septa.core.lifecycle import Runtime
from septa.hypervisor.libvirt_engine import Engine

log = logging.getLogger("septad")
MISC = MethodTable()


DOM0_SERVICES = {
    "admin.vm.volume.ImportWithSize": "septa.tools.volume_import_service --with-size",
    "admin.vm.volume.Import": "septa.tools.volume_import_service",
}


def install_dom0_services(paths: septa_paths.Paths) -> None:
    """The dom0 programs that clients run by path (volume import), pointing at this Python."""
    paths.rpc_dir.mkdir(parents=True, exist_ok=True)
    for name, module in DOM0_SERVICES.items():
        script = f'#!/bin/sh\nexec {sys.executable} -m {module} "$@"\n'
        target = paths.rpc_dir / name
        if not target.exists() or target.read_text() != script:
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_text(script)
            tmp.chmod(0o755)
            tmp.replace(target)


async def serve(stop: asyncio.Event | None = None) -> None:
    paths = septa_paths.current()
    if socket_in_use(paths.admin_socket):
        raise QubesException(f"septad is already running (socket {paths.admin_socket})")
    app = store.load(paths)
    app.load_extensions()
    install_dom0_services(paths)
    engine = Engine(paths.root)
    engine.enable_events(asyncio.get_running_loop())
    app.runtime = Runtime(app, engine, save=store.save)
    ask_broker = AskBroker()
    await ask_broker.start(paths.policy_agent_socket)
    relay = QrexecRelay.for_app(app)
    relay.confirm = ask_broker.confirm
    app.runtime.on_mux = relay.attach
    await app.runtime.recover()
    admin = ApiServer(app, TABLE, store.save)
    relay.admin = AdminBridge(admin, relay.policy, relay.system_info)
    servers = [
        (admin, paths.admin_socket),
        (ApiServer(app, INTERNAL, store.save), paths.internal_socket),
        (ApiServer(app, MISC, store.save), paths.misc_socket),
    ]
    for server, path in servers:
        await server.start(path)
    qrexec = QrexecServer(app)
    await qrexec.start(paths.qrexec_socket)
    log.info("septad serving on %s (%d qubes)", paths.admin_socket, len(app.domains))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await qrexec.close()
        await relay.close()
        await ask_broker.close()
        await app.runtime.disposables.close()
        for server, path in servers:
            await server.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="septad", description="Septa Admin API daemon. "
                                     "Set SEPTA_ROOT=DIR to keep all state under DIR.")
    parser.add_argument("--debug", action="store_true", help="log every refused call")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve())
    except QubesException as exc:
        print(f"septad: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
