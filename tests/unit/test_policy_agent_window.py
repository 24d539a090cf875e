"""The window prompt of ``septa-policy-agent`` on a virtual X display (Xvfb): the default
target pre-selected, Allow guarded for a moment, refusal on timeout, and the windows
opened and closed for a broker's questions. Skipped without tkinter or Xvfb."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from septa.client.policy_agent import PolicyAgentClient, Question
from septa.qrexec.policy import Allow, Deny
from tests.askbroker import ASK, RULE, TIMEOUT, BrokerThread

tk = pytest.importorskip("tkinter")
window_ui = pytest.importorskip("septa.tools.policy_agent_tk")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    if shutil.which("Xvfb") is None:
        pytest.skip("no Xvfb")
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-nolisten", "tcp"],
                            pass_fds=(write_end,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as numbers:
        number = numbers.readline().strip()
    try:
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


@pytest.fixture
def root(display: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(window_ui, "GUARD_MS", 200)
    tk_root = tk.Tk(screenName=display)
    tk_root.withdraw()
    yield tk_root
    tk_root.destroy()


def pump_until(root: Any, condition: Callable[[], object]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        root.update()
        time.sleep(0.01)


def question(default: str | None = "personal", timeout: float = 60.0) -> Question:
    return Question(1, "work", "qubes.Filecopy", "a.txt", ("personal", "vault"), default,
                    "@default", timeout, time.monotonic() + timeout)


def test_default_selected_and_allow_guarded(root: Any) -> None:
    replies: list[tuple[int, str | None]] = []
    window = window_ui.PromptWindow(root, question(), lambda *reply: replies.append(reply))
    root.update()
    assert window.selected == "personal"
    assert "personal (default)" in window.buttons["personal"].cget("text")
    assert str(window.allow_button.cget("state")) == "disabled"
    window.allow_button.invoke()
    window.allow()
    assert replies == []
    pump_until(root, lambda: window.armed)
    assert str(window.allow_button.cget("state")) == "normal"
    window.buttons["vault"].invoke()
    window.allow_button.invoke()
    assert replies == [(1, "vault")]
    assert window.done


def test_no_default_needs_a_choice(root: Any) -> None:
    replies: list[tuple[int, str | None]] = []
    window = window_ui.PromptWindow(root, question(default=None),
                                    lambda *reply: replies.append(reply))
    pump_until(root, lambda: window.armed)
    assert window.selected is None
    assert str(window.allow_button.cget("state")) == "disabled"
    window.buttons["personal"].invoke()
    assert str(window.allow_button.cget("state")) == "normal"
    window.deny_button.invoke()
    assert replies == [(1, None)]


def test_no_answer_in_time_refuses(root: Any) -> None:
    replies: list[tuple[int, str | None]] = []
    window_ui.PromptWindow(root, question(timeout=0.3), lambda *reply: replies.append(reply))
    pump_until(root, lambda: replies)
    assert replies == [(1, None)]


def test_windows_for_a_brokers_questions(root: Any, tmp_path: Path) -> None:
    broker = BrokerThread(tmp_path / "policy-agent.sock")
    out = io.StringIO()
    try:
        prompts = window_ui.WindowPrompts(PolicyAgentClient.connect(broker.path), root, out)
        prompts.start()
        pending = broker.ask(ASK)
        pump_until(root, lambda: prompts.windows)
        [window] = prompts.windows.values()
        assert window.selected == "personal"
        pump_until(root, lambda: window.armed)
        window.buttons["@dispvm:work"].invoke()
        window.allow_button.invoke()
        assert pending.result(TIMEOUT) == Allow(target="@dispvm:work",
                                                requested_target="@default", rule=RULE)
        assert not prompts.windows

        pending = broker.ask(ASK, timeout=0.3)
        pump_until(root, lambda: prompts.windows)
        pump_until(root, lambda: not prompts.windows)
        assert isinstance(pending.result(TIMEOUT), Deny)
    finally:
        broker.close()
    pump_until(root, lambda: "septad closed the connection" in out.getvalue())
    assert "allowed in @dispvm:work" in out.getvalue()
