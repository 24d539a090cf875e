"""Shared fixtures: every test runs under its own SEPTA_ROOT, never the host's real paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wire import Daemon


@pytest.fixture(autouse=True)
def septa_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("SEPTA_ROOT", str(root))
    return root


@pytest.fixture
def septad(septa_root: Path) -> Iterator[Daemon]:
    daemon = Daemon(septa_root).start()
    yield daemon
    daemon.stop()
