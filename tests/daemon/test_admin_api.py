"""The Admin API over the real socket of a running septad: formats, errors, persistence."""

from __future__ import annotations

import socket

from tests.wire import Daemon, raw_call, request


def make_qubes(septad: Daemon) -> None:
    septad.ok("admin.vm.Create.TemplateVM", payload=b"name=debian-12 label=black")
    septad.ok("admin.property.Set", arg="default_template", payload=b"debian-12")
    septad.ok("admin.vm.Create.AppVM", payload=b"name=work label=blue")
    septad.ok("admin.vm.Create.AppVM", arg="debian-12", payload=b"name=net label=red")


def test_vm_list_and_classes(septad: Daemon) -> None:
    make_qubes(septad)
    lines = septad.ok("admin.vm.List").splitlines()
    assert lines[0].startswith("dom0 class=AdminVM state=Running uuid=0000")
    assert any(line.startswith("work class=AppVM state=Halted uuid=") for line in lines)
    assert septad.ok("admin.vm.List", dest="work").startswith("work class=AppVM")
    assert septad.ok("admin.vmclass.List").split() == [
        "AdminVM", "AppVM", "DispVM", "StandaloneVM", "TemplateVM"]


def test_property_get_set_reset_and_defaults(septad: Daemon) -> None:
    make_qubes(septad)
    assert septad.ok("admin.vm.property.Get", "work", arg="memory") == "default=True type=int 400"
    septad.ok("admin.vm.property.Set", "debian-12", arg="memory", payload=b"800")
    assert septad.ok("admin.vm.property.Get", "work", arg="memory") == "default=True type=int 800"
    septad.ok("admin.vm.property.Set", "work", arg="memory", payload=b"1200")
    assert septad.ok("admin.vm.property.Get", "work", arg="memory") == "default=False type=int 1200"
    assert septad.ok("admin.vm.property.GetDefault", "work", arg="memory") == "type=int 800"
    septad.ok("admin.vm.property.Reset", "work", arg="memory")
    assert septad.ok("admin.vm.property.Get", "work", arg="memory") == "default=True type=int 800"
    assert septad.ok("admin.vm.property.Get", "work", arg="template") == \
        "default=False type=vm debian-12"
    assert septad.ok("admin.vm.property.Get", "work", arg="label") == \
        "default=False type=label blue"
    assert septad.ok("admin.vm.property.Get", "work", arg="netvm") == "default=True type=vm "
    assert "memory\n" in septad.ok("admin.vm.property.List", "work")
    assert septad.ok("admin.vm.property.Help", "work", arg="memory")


def test_getall_escapes_newlines_and_backslashes(septad: Daemon) -> None:
    make_qubes(septad)
    septad.ok("admin.vm.property.Set", "work", arg="kernelopts", payload=b"a\\b")
    line = next(ln for ln in septad.ok("admin.vm.property.GetAll", "work").splitlines()
                if ln.startswith("kernelopts "))
    assert line == "kernelopts default=False type=str a\\\\b"


def test_global_properties(septad: Daemon) -> None:
    make_qubes(septad)
    assert septad.ok("admin.property.Get", arg="default_template") == \
        "default=False type=vm debian-12"
    assert septad.ok("admin.property.Get", arg="default_qrexec_timeout") == \
        "default=True type=int 60"
    septad.ok("admin.vm.property.Set", "net", arg="provides_network", payload=b"True")
    septad.ok("admin.property.Set", arg="default_netvm", payload=b"net")
    assert septad.ok("admin.vm.property.Get", "work", arg="netvm") == "default=True type=vm net"
    septad.ok("admin.property.Set", arg="default_netvm", payload=b"")
    assert septad.ok("admin.property.Get", arg="default_netvm") == "default=False type=vm "


def test_errors_have_the_client_exception_names(septad: Daemon) -> None:
    make_qubes(septad)
    assert septad.error("admin.vm.property.Get", "work", arg="nope") == "QubesNoSuchPropertyError"
    assert septad.error("admin.vm.property.Set", "work", arg="memory",
                        payload=b"-1") == "QubesPropertyValueError"
    assert septad.error("admin.vm.property.Get", "ghost", arg="memory") == "QubesVMNotFoundError"
    assert septad.error("admin.vm.feature.Get", "work", arg="nope") == "QubesFeatureNotFoundError"
    assert septad.error("admin.label.Get", arg="pink") == "QubesLabelNotFoundError"
    assert septad.error("admin.vm.Remove", "debian-12") == "QubesVMInUseError"
    assert septad.error("admin.vm.Create.AppVM", payload=b"name=work label=red") == \
        "QubesValueError"
    assert septad.error("admin.vm.Create.AppVM", payload=b"name=9lives label=red") == \
        "QubesValueError"
    assert septad.error("admin.vm.Create.Bogus", payload=b"name=x label=red") == "QubesValueError"
    assert septad.error("admin.nothing") == "ProtocolError"
    assert septad.error("admin.vm.List", payload=b"x") == "ProtocolError"
    assert septad.error("admin.vm.Console", "work") == "QubesVMNotRunningError"
    assert septad.error("admin.vm.device.block.Available", "work") == "QubesNotImplementedError"
    assert septad.error("admin.backup.Info", "dom0") == "ProtocolError"  # needs a profile
    assert septad.error("admin.vm.Start", "work") == "QubesVMError"
    assert septad.error("admin.vm.Kill", "work") == "QubesVMNotStartedError"
    assert septad.error("admin.vm.Start", "dom0") == "ProtocolError"


def test_percent_in_messages_is_escaped(septad: Daemon) -> None:
    answer = septad.call("admin.vm.Create.AppVM", payload=b"x%s label=red")
    assert answer.startswith(b"2\0ProtocolError\0")
    message = answer.split(b"\0")[3].decode()
    assert "%%" in message
    assert (message % ()) == "Invalid create parameter 'x%s': expected key=value"


def test_features_tags_notes(septad: Daemon) -> None:
    make_qubes(septad)
    septad.ok("admin.vm.feature.Set", "debian-12", arg="os", payload=b"Linux")
    assert septad.ok("admin.vm.feature.CheckWithTemplate", "work", arg="os") == "Linux"
    assert septad.error("admin.vm.feature.Get", "work", arg="os") == "QubesFeatureNotFoundError"
    septad.ok("admin.vm.feature.Set", "work", arg="service.cups", payload=b"1")
    assert septad.ok("admin.vm.feature.List", "work") == "service.cups\n"
    septad.ok("admin.vm.feature.Remove", "work", arg="service.cups")
    assert septad.ok("admin.vm.feature.List", "work") == ""
    septad.ok("admin.vm.tag.Set", "work", arg="managed")
    assert septad.ok("admin.vm.tag.Get", "work", arg="managed") == "1"
    assert septad.ok("admin.vm.tag.Get", "work", arg="other") == "0"
    assert "managed" in septad.ok("admin.vm.tag.List", "work").split()
    assert "created-by-dom0" in septad.ok("admin.vm.tag.List", "work").split()
    septad.ok("admin.vm.notes.Set", "work", payload="Ünïcode notes\nline 2".encode())
    assert septad.ok("admin.vm.notes.Get", "work") == "Ünïcode notes\nline 2"


def test_labels(septad: Daemon) -> None:
    assert septad.ok("admin.label.Get", arg="orange") == "0xf57900"
    assert septad.ok("admin.label.Index", arg="black") == "8"
    septad.ok("admin.label.Create", arg="pink", payload=b"0xff88cc")
    assert septad.ok("admin.label.List").split()[-1] == "pink"
    septad.ok("admin.vm.Create.TemplateVM", payload=b"name=t label=pink")
    assert septad.error("admin.label.Remove", arg="pink") == "QubesException"
    septad.ok("admin.vm.Remove", "t")
    septad.ok("admin.label.Remove", arg="pink")


def test_firewall_rules_round_trip(septad: Daemon) -> None:
    make_qubes(septad)
    assert septad.ok("admin.vm.firewall.Get", "work") == "action=accept\n"
    rules = (b"action=accept dst4=10.1.0.0/16 proto=tcp dstports=443 comment=web and more\n"
             b"action=accept specialtarget=dns\naction=drop\n")
    septad.ok("admin.vm.firewall.Set", "work", payload=rules)
    assert septad.ok("admin.vm.firewall.Get", "work") == (
        "action=accept dst4=10.1.0.0/16 proto=tcp dstports=443-443 comment=web and more\n"
        "action=accept specialtarget=dns\naction=drop\n")
    assert septad.error("admin.vm.firewall.Set", "work",
                        payload=b"action=maybe\n") == "QubesValueError"


def test_events_stream(septad: Daemon) -> None:
    make_qubes(septad)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(septad.paths.admin_socket))
    sock.sendall(request("admin.Events"))
    sock.shutdown(socket.SHUT_WR)
    buf = b""
    while b"connection-established" not in buf:
        buf += sock.recv(4096)
    assert buf.startswith(b"1\0\0connection-established\0\0")
    septad.ok("admin.vm.property.Set", "work", arg="vcpus", payload=b"3")
    while b"property-set:vcpus" not in buf:
        buf += sock.recv(4096)
    frame = buf[buf.index(b"1\0work\0property-set:vcpus"):]
    assert b"\0newvalue\x003\0" in frame
    sock.close()
    assert septad.ok("admin.vm.List")


def test_everything_survives_a_restart(septad: Daemon) -> None:
    make_qubes(septad)
    septad.ok("admin.vm.property.Set", "work", arg="vcpus", payload=b"3")
    septad.ok("admin.vm.feature.Set", "work", arg="f", payload=b"v")
    septad.ok("admin.vm.tag.Set", "work", arg="tg")
    septad.ok("admin.vm.notes.Set", "work", payload=b"remember")
    before = {dest: septad.ok("admin.vm.property.GetAll", dest) for dest in ("work", "net")}
    septad.stop()
    septad.start()
    after = {dest: septad.ok("admin.vm.property.GetAll", dest) for dest in ("work", "net")}
    assert before == after
    assert septad.ok("admin.vm.feature.Get", "work", arg="f") == "v"
    assert septad.ok("admin.vm.tag.Get", "work", arg="tg") == "1"
    assert septad.ok("admin.vm.notes.Get", "work") == "remember"


def test_second_daemon_on_the_same_root_refuses(septad: Daemon) -> None:
    import subprocess

    from tests.wire import SEPTAD

    proc = subprocess.run(SEPTAD, env=septad.env, capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"already running" in proc.stderr
    assert septad.ok("admin.vm.List")


def test_oversized_request_is_refused(septad: Daemon) -> None:
    answer = raw_call(septad.paths.admin_socket,
                      request("admin.vm.notes.Set", "dom0", b"x" * 70000))
    assert answer.startswith(b"2\0ProtocolError\0")
    assert b"too large" in answer
    assert septad.ok("admin.vm.List")
