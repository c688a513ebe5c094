"""Shared helpers for the unit tests: writing inventory files, collecting warnings."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteInventory = Callable[..., Path]


@pytest.fixture
def write_inventory(tmp_path: Path) -> WriteInventory:
    """Write dedented INI text to ``tmp_path/name`` (mode 0600 unless given) and return the path."""

    def write(text: str, name: str = "hosts.ini", mode: int = 0o600) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        path.chmod(mode)
        return path

    return write


@pytest.fixture
def warnings_seen() -> list[str]:
    """A list that a ``warn=warnings_seen.append`` callback fills."""
    return []


class Answers:
    """A prompt that answers from a list and records every question (EOF when none is left)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    def __call__(self, question: str) -> str:
        self.questions.append(question)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)
