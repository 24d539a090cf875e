"""``qrexec-client-vm [OPTIONS] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]``: call a
service in another qube, or in dom0.

Runs in the qube (standard library only). It connects to the agent's socket
(:mod:`septa.agent.outgoing`), sends the call, then relays its stdin to the remote
service and the service's stdout and stderr to its own, and exits with the service's
exit status. dom0's policy decides whether the call runs at all: a refused call prints
``Request refused`` on stderr and exits 126, as Qubes' ``qrexec-client-vm`` does.

With a ``LOCAL_PROGRAM`` (an executable's path, run without a ``PATH`` search), the
program's stdin and stdout are connected to the service's stdout and stdin instead (its
stderr is ours, and so is the service's stderr), and the exit status is the program's
(128 + the signal for one a signal killed; when the call is refused, 126, and the
program is killed). The program starts before dom0 has decided; what it writes
waits within the call's initial window until then.

Qubes' options: ``--buffer-size=N`` (accepted and checked; the windows are fixed
here), ``-t``/``--filter-escape-chars-stdout`` and ``-T``/``--filter-escape-chars-stderr``
(bytes other than printable ASCII, tab, newline, CR, backspace and bell become ``_``;
on by default for a terminal, except stdout with a local program), their
``--no-...`` forms, ``-a``/``--agent-socket=PATH`` (also ``--socket PATH``, and the
``SEPTA_AGENT_SOCKET`` environment variable, for tests), ``-p``/``--prefix-data=DATA``
(sent before stdin) and ``-h``/``--help``. A ``$`` in the target is read as ``@``
(``$dispvm`` is ``@dispvm``).

Flow control is end to end: at most :data:`~septa.agent.wire.INITIAL_WINDOW` bytes of
stdin are in flight until dom0 grants more, and the remote's output is granted again
only once written out.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading

from . import wire

SOCKET_PATH = "/run/septa/qrexec-agent.sock"
USAGE = ("usage: qrexec-client-vm [options] target_vmname program_ident "
         "[local_program [local program arguments]]")
HELP = """Options:
  -h, --help - print this message
  --buffer-size=BUFFER_SIZE - minimum buffer size (accepted; Septa's windows are fixed)
  -t, --filter-escape-chars-stdout - filter non-ASCII and control characters on stdout \
(default if stdout is a terminal)
  -T, --filter-escape-chars-stderr - filter non-ASCII and control characters on stderr \
(default if stderr is a terminal)
  --no-filter-escape-chars-stdout - opposite to --filter-escape-chars-stdout
  --no-filter-escape-chars-stderr - opposite to --filter-escape-chars-stderr
  -a PATH, --agent-socket=PATH - path to connect to, default: /run/septa/qrexec-agent.sock
  -p PREFIX-DATA, --prefix-data=PREFIX-DATA - send the given data before the provided stdin
"""
STATUS_REFUSED = 126
STATUS_BROKEN = 255
STATUS_USAGE = 2
_GRANT_THRESHOLD = wire.INITIAL_WINDOW // 4
#: Bytes that survive the escape filter; every other byte becomes ``_``.
_KEPT = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D, 0x08, 0x07}
FILTER = bytes(b if b in _KEPT else 0x5F for b in range(256))


class Client:
    """One call over a connected socket; ``fds`` are stdin, stdout and stderr.

    With ``drain``, stdin is read to its end even after the call has ended (a local
    program must not block on a full pipe)."""

    def __init__(self, sock: socket.socket, fds: tuple[int, int, int] = (0, 1, 2),
                 filter_stdout: bool = False, filter_stderr: bool = False,
                 prefix: bytes = b"", drain: bool = False) -> None:
        self.sock = sock
        self.stdin, self.stdout, self.stderr = fds
        self.filters = {self.stdout: filter_stdout, self.stderr: filter_stderr}
        self.prefix = prefix
        self.drain = drain
        self.send_lock = threading.Lock()
        self.window = wire.INITIAL_WINDOW
        self.window_changed = threading.Condition()
        self.ended = False
        self.consumed = {wire.FrameType.WINDOW: 0, wire.FrameType.WINDOW_ERR: 0}
        self.broken_out: set[int] = set()
        self.closed: set[int] = set()
        self.feeder: threading.Thread | None = None

    def send(self, frame: wire.Frame) -> None:
        """Send one frame (from either thread)."""
        with self.send_lock:
            self.sock.sendall(frame.encode())

    def _read_input(self, size: int) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix[:size], self.prefix[size:]
            return data
        try:
            return os.read(self.stdin, size)
        except OSError:
            return b""

    def feed(self) -> None:
        """Send stdin as the window allows, then EOF (a thread of its own)."""
        try:
            while True:
                with self.window_changed:
                    while self.window <= 0 and not self.ended:
                        self.window_changed.wait()
                    if self.ended:
                        break
                    size = min(self.window, wire.MAX_PAYLOAD)
                data = self._read_input(size)
                if not data:
                    self.send(wire.Frame(wire.FrameType.EOF))
                    return
                with self.window_changed:
                    self.window -= len(data)
                self.send(wire.Frame(wire.FrameType.DATA, 0, data))
        except OSError:
            pass  # the call has ended
        while self.drain and self._read_input(wire.MAX_PAYLOAD):
            pass

    def _output(self, fd: int, data: bytes, grant_type: int) -> None:
        if fd not in self.broken_out:
            if self.filters.get(fd):
                data = data.translate(FILTER)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                self.broken_out.add(fd)  # nobody reads it any more: discard the rest
        self.consumed[grant_type] += len(data)
        if self.consumed[grant_type] >= _GRANT_THRESHOLD:
            try:
                self.send(wire.window(0, self.consumed[grant_type], grant_type))
            except OSError:
                pass  # the call has ended: its EXIT is on the way
            self.consumed[grant_type] = 0

    def end_output(self, fd: int) -> None:
        """Close ``fd`` (stdout at the remote's EOF), once."""
        if fd in self.closed:
            return
        self.closed.add(fd)
        self.broken_out.add(fd)
        try:
            os.close(fd)
        except OSError:
            pass

    def receive(self) -> tuple[int, bool]:
        """Serve the frames of the call until it ends: (exit status, whether the call
        ran, i.e. ended with EXIT)."""
        decoder = wire.FrameDecoder()
        while True:
            data = self.sock.recv(wire.MAX_PAYLOAD + wire.HEADER_SIZE)
            if not data:
                self._message("qrexec-client-vm: the agent closed the connection")
                return STATUS_BROKEN, False
            for frame in decoder.feed(data):
                kind = frame.type
                if kind == wire.FrameType.DATA:
                    self._output(self.stdout, frame.payload, wire.FrameType.WINDOW)
                elif kind == wire.FrameType.DATA_ERR:
                    self._output(self.stderr, frame.payload, wire.FrameType.WINDOW_ERR)
                elif kind == wire.FrameType.EOF:
                    self.end_output(self.stdout)
                elif kind == wire.FrameType.WINDOW:
                    with self.window_changed:
                        self.window += wire.window_grant(frame)
                        self.window_changed.notify()
                elif kind == wire.FrameType.EXIT:
                    status = frame.json().get("status")
                    return (status if isinstance(status, int) else STATUS_BROKEN), True
                elif kind == wire.FrameType.ERROR:
                    answer = frame.json()
                    if answer.get("refused"):
                        self._message("Request refused")
                        return STATUS_REFUSED, False
                    self._message(f"qrexec-client-vm: {answer.get('message', 'error')}")
                    return STATUS_BROKEN, False

    def _message(self, text: str) -> None:
        try:
            os.write(2, (text + "\n").encode("utf-8", "replace"))
        except OSError:
            pass

    def start(self, target: str, service: str, arg: str) -> None:
        """Send the call and start feeding stdin."""
        self.send(wire.json_frame(wire.FrameType.CALL,
                                  {"target": target, "service": service, "arg": arg}))
        self.feeder = threading.Thread(target=self.feed, daemon=True)
        self.feeder.start()

    def finish(self) -> None:
        """Stop feeding (the call has ended)."""
        with self.window_changed:
            self.ended = True
            self.window_changed.notify()

    def run(self, target: str, service: str, arg: str) -> int:
        """Make the call; the exit status."""
        self.start(target, service, arg)
        try:
            return self.receive()[0]
        finally:
            self.finish()


class LocalProgram:
    """A local program whose stdin and stdout are the ends of two pipes."""

    def __init__(self, argv: list[str]) -> None:
        path = argv[0]
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        try:
            self.pid = os.posix_spawn(
                path, [os.path.basename(path), *argv[1:]], os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, to_child_r, 0),
                              (os.POSIX_SPAWN_DUP2, from_child_w, 1)])
        except BaseException:
            for fd in (self.to_child, self.from_child):
                os.close(fd)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)

    def kill(self) -> None:
        """End the program at once (the call was refused, or failed)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass

    def wait(self) -> int:
        """The program's exit status (128 + the signal if a signal killed it)."""
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code


def run_with_program(sock: socket.socket, argv: list[str], target: str, service: str,
                     arg: str, filter_stderr: bool, prefix: bytes) -> int:
    """The call with a local program connected to it; the program's exit status."""
    try:
        program = LocalProgram(argv)
    except OSError as exc:
        os.write(2, f"qrexec-client-vm: cannot run {argv[0]}: {exc.strerror}\n".encode())
        return 127
    client = Client(sock, (program.from_child, program.to_child, 2),
                    filter_stderr=filter_stderr, prefix=prefix, drain=True)
    remote_status, ran = STATUS_BROKEN, False
    try:
        client.start(target, service, arg)
        remote_status, ran = client.receive()
    finally:
        client.finish()
        if not ran:
            program.kill()  # before its stdin ends: it must not act on the end
        client.end_output(program.to_child)
    status = program.wait()
    if client.feeder is not None:
        client.feeder.join(5.0)
    os.close(program.from_child)
    return status if ran else remote_status


def agent_program(module: str, args: list[str]) -> list[str]:
    """A local program that runs ``main()`` of an agent module (``septa.agent.<module>``)
    with ``args``, in this interpreter without site or environment."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            f"from septa.agent.{module} import main; sys.exit(main())")
    return [sys.executable, "-I", "-S", "-c", code, *args]


class Options:
    """The command line, parsed."""

    def __init__(self) -> None:
        self.socket = os.environ.get("SEPTA_AGENT_SOCKET") or SOCKET_PATH
        self.filter_stdout: bool | None = None
        self.filter_stderr: bool | None = None
        self.prefix: bytes | None = None
        self.words: list[str] = []


class UsageError(Exception):
    """A command line to answer with the usage (exit status in ``args[0]``)."""


_FLAGS = {
    "-t": ("filter_stdout", True), "--filter-escape-chars-stdout": ("filter_stdout", True),
    "-T": ("filter_stderr", True), "--filter-escape-chars-stderr": ("filter_stderr", True),
    "--no-filter-escape-chars-stdout": ("filter_stdout", False),
    "--no-filter-escape-chars-stderr": ("filter_stderr", False),
}
_VALUED = {"--buffer-size": "buffer", "-a": "socket", "--agent-socket": "socket",
           "--socket": "socket", "-p": "prefix", "--prefix-data": "prefix"}


def _strtoul(text: str) -> int:
    """A number as C's ``strtoul(text, &end, 0)`` reads it (``0x`` hex, ``0`` octal)."""
    if text[:2].lower() == "0x":
        return int(text[2:], 16)
    if text.startswith("0") and len(text) > 1:
        return int(text[1:], 8)
    return int(text, 10)


def _set_value(options: Options, key: str, value: str) -> None:
    if key == "buffer":
        if not value[:1].isdigit():
            raise UsageError(1, "Bad buffer size: does not begin with a number")
        try:
            size = _strtoul(value)
        except ValueError:
            raise UsageError(1, "Bad buffer size: trailing junk") from None
        if size > 2**31 - 1:
            raise UsageError(1, "Bad buffer size: out of range")
    elif key == "socket":
        options.socket = value
    elif options.prefix is not None:
        raise UsageError(STATUS_USAGE, "--prefix-data can be given only once")
    else:
        options.prefix = os.fsencode(value)


def parse_args(args: list[str]) -> Options:
    """Options up to the first word that is not one (getopt's ``+`` mode)."""
    options = Options()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg in ("-h", "--help"):
            raise UsageError(0)
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if not eq and arg[1] != "-" and len(arg) > 2:
            if arg[:2] in _VALUED:  # -aPATH
                name, eq, value = arg[:2], "=", arg[2:]
            elif all(f"-{c}" in _FLAGS for c in arg[1:]):  # -tT
                for c in arg[1:]:
                    attr, flag = _FLAGS[f"-{c}"]
                    setattr(options, attr, flag)
                i += 1
                continue
        if name in _FLAGS and not eq:
            attr, flag = _FLAGS[name]
            setattr(options, attr, flag)
        elif name in _VALUED:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(STATUS_USAGE, f"option {name} needs a value")
                value = args[i]
            _set_value(options, _VALUED[name], value)
        else:
            raise UsageError(STATUS_USAGE, f"unknown option {arg}")
        i += 1
    options.words = args[i:]
    if len(options.words) < 2 or not options.words[1]:
        raise UsageError(STATUS_USAGE)
    return options


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status."""
    try:
        options = parse_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        status = exc.args[0]
        message = exc.args[1] + "\n" if len(exc.args) > 1 else ""
        os.write(1 if status == 0 else 2, (message + USAGE + "\n" + HELP).encode())
        return int(status)
    target, call, *program = options.words
    target = target.replace("$", "@") or "@default"
    service, _, arg = call.partition("+")
    filter_stderr = os.isatty(2) if options.filter_stderr is None else options.filter_stderr
    filter_stdout = (os.isatty(1) if options.filter_stdout is None else options.filter_stdout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(options.socket)
    except OSError as exc:
        os.write(2, f"qrexec-client-vm: cannot connect to the agent ({options.socket}): "
                    f"{exc}\n".encode())
        sock.close()
        return STATUS_BROKEN
    try:
        if program:
            return run_with_program(sock, program, target, service, arg, filter_stderr,
                                    options.prefix or b"")
        return Client(sock, filter_stdout=filter_stdout, filter_stderr=filter_stderr,
                      prefix=options.prefix or b"").run(target, service, arg)
    except (OSError, wire.FrameError) as exc:
        os.write(2, f"qrexec-client-vm: {exc}\n".encode())
        return STATUS_BROKEN
    finally:
        sock.close()
