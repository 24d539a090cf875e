"""The window prompt of ``septa-policy-agent``: a small tkinter window per question.

The window names the calling qube and the service with its argument, lists the
targets the policy allows (the default one selected) and counts down the seconds left;
closing it, Escape, or the time running out refuse the call. As in Qubes' agent, Allow
(and Enter) only works once the window has been shown for :data:`GUARD_MS`, so that a
click or a key meant for another window cannot allow a call.
"""

from __future__ import annotations

import queue
import signal
import threading
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import TextIO

from septa.client.policy_agent import Message, PolicyAgentClient, Question, Withdrawn

GUARD_MS = 1000
TICK_MS = 250
POLL_MS = 100

Reply = Callable[[int, str | None], None]


class PromptWindow:
    """The window of one question; ``reply(question id, target or None)`` gets the answer."""

    def __init__(self, root: tk.Misc, question: Question, reply: Reply) -> None:
        self.question = question
        self.reply = reply
        self.done = False
        self.armed = False
        self.window = tk.Toplevel(root)
        self.window.title(f"Allow {question.service}?")
        frame = ttk.Frame(self.window, padding=12)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=f"{question.source} wants to call {question.call}",
                  font=("TkDefaultFont", 11, "bold")).pack(anchor="w")
        if question.requested_target:
            ttk.Label(frame, text=f"Requested target: {question.requested_target}"
                      ).pack(anchor="w")
        ttk.Label(frame, text="Run it in:").pack(anchor="w", pady=(8, 0))
        self.choice = tk.StringVar(self.window, value=question.default_target or "")
        self.buttons: dict[str, ttk.Radiobutton] = {}
        for target in question.targets:
            text = f"{target} (default)" if target == question.default_target else target
            button = ttk.Radiobutton(frame, text=text, value=target, variable=self.choice,
                                     command=self._update)
            button.pack(anchor="w", padx=12)
            self.buttons[target] = button
        self.countdown = ttk.Label(frame)
        self.countdown.pack(anchor="w", pady=(8, 0))
        buttons = ttk.Frame(frame)
        buttons.pack(fill="x", pady=(8, 0))
        self.deny_button = ttk.Button(buttons, text="Deny", command=self.deny)
        self.deny_button.pack(side="right")
        self.allow_button = ttk.Button(buttons, text="Allow", command=self.allow,
                                       state="disabled")
        self.allow_button.pack(side="right", padx=(0, 8))
        self.window.protocol("WM_DELETE_WINDOW", self.deny)
        self.window.bind("<Escape>", lambda _event: self.deny())
        self.window.bind("<Return>", lambda _event: self.allow())
        self.window.after(GUARD_MS, self._arm)
        self._tick()

    @property
    def selected(self) -> str | None:
        """The target selected now (None: none yet)."""
        return self.choice.get() or None

    def allow(self) -> None:
        """Run the call in the selected target (once the guard time has passed)."""
        target = self.selected
        if self.armed and target is not None:
            self._finish(target)

    def deny(self) -> None:
        """Refuse the call."""
        self._finish(None)

    def close(self) -> None:
        """Close the window without answering (septad withdrew the question)."""
        self.done = True
        self.window.destroy()

    def _finish(self, target: str | None) -> None:
        if not self.done:
            self.reply(self.question.id, target)
            self.close()

    def _arm(self) -> None:
        self.armed = True
        self._update()

    def _update(self) -> None:
        if not self.done:
            ready = self.armed and self.selected is not None
            self.allow_button.configure(state="normal" if ready else "disabled")

    def _tick(self) -> None:
        if self.done:
            return
        left = self.question.remaining()
        if left <= 0:
            self.deny()
            return
        self.countdown.configure(text=f"Refused automatically in {left:.0f} s")
        self.window.after(TICK_MS, self._tick)


class WindowPrompts:
    """Opens a :class:`PromptWindow` for each question of ``client``."""

    def __init__(self, client: PolicyAgentClient, root: tk.Tk, out: TextIO) -> None:
        self.client = client
        self.root = root
        self.out = out
        self.windows: dict[int, PromptWindow] = {}
        self.inbox: queue.Queue[Message | None] = queue.Queue()

    def start(self) -> None:
        """Read the questions and open their windows as Tk's loop runs."""
        self.root.withdraw()
        threading.Thread(target=self._read, daemon=True).start()
        self._say("septa-policy-agent: waiting for questions (windows)")
        self.root.after(POLL_MS, self._poll)

    def run(self) -> int:
        """Serve until septad disconnects or SIGINT."""
        self.start()
        signal.signal(signal.SIGINT, lambda _signum, _frame: self.root.quit())
        self.root.mainloop()
        return 0

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def _read(self) -> None:
        for message in self.client.messages():
            self.inbox.put(message)
        self.inbox.put(None)

    def _poll(self) -> None:
        while not self.inbox.empty():
            message = self.inbox.get_nowait()
            if message is None:
                self._say("septad closed the connection")
                self.root.quit()
                return
            if isinstance(message, Question):
                self.windows[message.id] = PromptWindow(self.root, message, self._reply)
            elif isinstance(message, Withdrawn) and message.id in self.windows:
                self.windows.pop(message.id).close()
        self.root.after(POLL_MS, self._poll)

    def _reply(self, question_id: int, target: str | None) -> None:
        self.windows.pop(question_id, None)
        self.client.answer(question_id, target)
        self._say(f"question {question_id}: "
                  + (f"allowed in {target}" if target else "refused"))
