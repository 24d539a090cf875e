"""Open a file or a URL with the qube's handler, and wait for it (Qubes' ``qubes-open``).

The first that applies:

1. ``xdg-open``, when it is installed and there is a display (``DISPLAY`` or
   ``WAYLAND_DISPLAY``);
2. files: ``run-mailcap --action=view``, when installed;
3. the mailcap entry for the file's MIME type (guessed from its name) or for the URL's
   ``x-scheme-handler/<scheme>`` (:mod:`septa.agent.mailcaps`; e.g. in ``~/.mailcap``),
   which works headless;
4. files: ``mimeopen -n``, when installed;
5. URLs: the first command of ``$BROWSER`` (``:``-separated; ``%s`` is the URL, which
   is otherwise appended) that is installed.

The handler runs with stdin from ``/dev/null`` (or the file, for a mailcap command
without ``%s``) and its stdout on our stderr, so a service's stdout stays its own.
"""

from __future__ import annotations

import os
import subprocess

from . import mailcaps

#: The exit status when no handler is found.
STATUS_NO_HANDLER = 127


def which(name: str) -> str | None:
    """The path of the command ``name`` on ``$PATH``, or None."""
    for directory in os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def mime_type(path: str) -> str:
    """The MIME type of a file, from its name."""
    import mimetypes

    guessed, _ = mimetypes.guess_type(os.path.basename(path), strict=False)
    return guessed or "application/octet-stream"


class Handler:
    """A command to run: argv, and the file to give it on stdin (if any)."""

    def __init__(self, argv: list[str], stdin_path: str | None = None) -> None:
        self.argv = argv
        self.stdin_path = stdin_path

    def run(self) -> int:
        """Run it to its end; the exit status."""
        stdin = open(self.stdin_path, "rb") if self.stdin_path else subprocess.DEVNULL
        try:
            return subprocess.run(self.argv, stdin=stdin, stdout=2).returncode
        except OSError as exc:
            os.write(2, f"cannot run {self.argv[0]}: {exc.strerror}\n".encode())
            return STATUS_NO_HANDLER
        finally:
            if not isinstance(stdin, int):
                stdin.close()


def file_handler(path: str) -> Handler | None:
    """The handler of the file ``path``, or None."""
    if _has_display() and (xdg := which("xdg-open")):
        return Handler([xdg, path])
    if run_mailcap := which("run-mailcap"):
        return Handler([run_mailcap, "--action=view", path])
    found = mailcaps.find(mime_type(path), path)
    if found is not None:
        command, on_stdin = found
        return Handler(["/bin/sh", "-c", command], path if on_stdin else None)
    if mimeopen := which("mimeopen"):
        return Handler([mimeopen, "-n", path])
    return None


def url_handler(url: str) -> Handler | None:
    """The handler of ``url``, or None."""
    if _has_display() and (xdg := which("xdg-open")):
        return Handler([xdg, url])
    scheme = url.split(":", 1)[0].lower()
    found = mailcaps.find(f"x-scheme-handler/{scheme}", url)
    if found is not None and not found[1]:
        return Handler(["/bin/sh", "-c", found[0]])
    for command in os.environ.get("BROWSER", "").split(":"):
        words = command.split()
        if words and which(words[0]):
            if "%s" in command:
                return Handler(["/bin/sh", "-c", mailcaps.expand(command, url, "")])
            return Handler([*words, url])
    return None


def open_path(path: str) -> int:
    """Open the file with its handler and wait; the handler's exit status."""
    handler = file_handler(path)
    if handler is None:
        os.write(2, f"no handler for {mime_type(path)} files in this qube (install "
                    "xdg-utils or mailcap, or add an entry to ~/.mailcap)\n".encode())
        return STATUS_NO_HANDLER
    return handler.run()


def open_url(url: str) -> int:
    """Open the URL with its handler and wait; the handler's exit status."""
    handler = url_handler(url)
    if handler is None:
        os.write(2, b"no handler for URLs in this qube (set BROWSER, or add an "
                    b"x-scheme-handler entry to ~/.mailcap)\n")
        return STATUS_NO_HANDLER
    return handler.run()
