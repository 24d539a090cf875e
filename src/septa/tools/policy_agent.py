"""septa-policy-agent: answers septad's questions about calls that "ask" rules allow.

``septa-policy-agent [--socket PATH] [--terminal | --answer TARGET|@default|deny]``

Connects to septad's policy agent socket (``policy_agent_socket`` of ``SEPTA_ROOT``,
root only) and asks the user, for each call, whether to allow it and in which of the
targets the policy allows: in a small window when ``$DISPLAY`` is set and tkinter is
there (:mod:`~septa.tools.policy_agent_tk`), else on the terminal
(:mod:`~septa.tools.policy_agent_tty`). septad asks the agent that connected last.

``--answer`` answers every question without asking (for scripts and tests): with that
target (septad refuses it when it is not among the allowed ones), with the default
target (``@default``; refused when there is none), or refuses (``deny``); it prints one
line per answer. The agent ends when septad closes the connection (exit status 0);
status 1 when it cannot connect.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from septa.client.errors import QubesException
from septa.client.policy_agent import PolicyAgentClient, Question, answer_all

from .policy_agent_tty import TerminalPrompt, safe

PROG = "septa-policy-agent"
DEFAULT = "@default"
DENY = "deny"


def get_parser() -> argparse.ArgumentParser:
    """The command line of septa-policy-agent."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Confirm the qrexec calls that 'ask' policy rules allow.")
    parser.add_argument("--socket", type=Path, metavar="PATH",
                        help="septad's policy agent socket (default: from SEPTA_ROOT)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--terminal", action="store_true",
                     help="ask on the terminal even when there is a display")
    how.add_argument("--answer", metavar="TARGET|@default|deny",
                     help="answer every question this way, without asking")
    return parser


def answer_automatically(client: PolicyAgentClient, answer: str) -> int:
    """Answer every question with ``answer`` (a target, ``@default`` or ``deny``)."""
    def choose(question: Question) -> str | None:
        target = {DENY: None, DEFAULT: question.default_target}.get(answer, answer)
        what = f"allowed in {safe(target)}" if target else "refused"
        print(f"question {question.id}: {safe(question.source)} -> {safe(question.call)}: "
              f"{what}", flush=True)
        return target

    print(f"{PROG}: answering every question with {answer}", flush=True)
    answer_all(client, choose)
    return 0


def ask_in_windows(client: PolicyAgentClient) -> int | None:
    """Ask in windows; None when there is no display or no tkinter."""
    if not os.environ.get("DISPLAY"):
        return None
    try:
        import tkinter

        from .policy_agent_tk import WindowPrompts
    except ImportError:
        return None
    try:
        root = tkinter.Tk(className=PROG)
    except tkinter.TclError as e:
        print(f"{PROG}: no window ({e}); asking on the terminal", file=sys.stderr)
        return None
    return WindowPrompts(client, root, sys.stdout).run()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = get_parser().parse_args(argv)
    try:
        client = PolicyAgentClient.connect(args.socket)
    except QubesException as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    try:
        with client:
            if args.answer is not None:
                return answer_automatically(client, args.answer)
            status = None if args.terminal else ask_in_windows(client)
            if status is None:
                status = TerminalPrompt(client, sys.stdin.fileno(), sys.stdout).run()
            return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
