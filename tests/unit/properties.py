"""Shared pieces of the property-based tests (``test_properties_*.py``).

Every property there says the same thing about a parser or reader: whatever the input, it ends
with a result, a warning, or one short error line (exit 2 for the CLI, a ``HostbatchError`` for
the library); never a traceback, exit 70 or a hang. This module holds the settings that keep
those tests reproducible and fast, the time guard, and the checks of an error line.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hostbatch import secrets
from hostbatch.cli.environment import Environment

#: The longest error or warning line a property accepts. Messages name a file, a section and a
#: key and may list the known keys; what they quote of the input is capped at 80 characters.
MAX_LINE = 600
#: Inputs hold lines much longer than that, so a message echoing a whole line is caught.
LONG = 1200


def fast(max_examples: int, seconds: float = 3.0) -> settings:
    """Settings for one property: derandomized (CI sees the same examples every run), no
    example database, ``max_examples`` examples, each failing past ``seconds``."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=seconds),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


class Hang(Exception):
    """An example ran past its time guard (raised by :func:`time_limit`)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``.

    Hypothesis's ``deadline`` only judges an example once it returns; this guard interrupts
    one that would never return (a read that blocks, a lock never released)."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"example still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_message(message: str) -> None:
    """An error or warning text: one line, short, and not a Python crash."""
    assert "\n" not in message.rstrip("\n"), message
    assert len(message) <= MAX_LINE, f"{len(message)} characters: {message[:300]}..."
    assert "Traceback" not in message and "internal error" not in message, message


@dataclass
class Outcome:
    """What one in-process CLI invocation returned and printed."""

    status: int
    stdout: str
    stderr: str


def run_cli(main: Callable[[list[str], Environment], int], argv: Sequence[str],
            environ: dict[str, str], stdin: bytes = b"", seconds: float = 10.0,
            statuses: tuple[int, ...] = (0, 2)) -> Outcome:
    """Run ``main(argv)`` in-process, bounded by :func:`time_limit`, and check its outcome:
    one of ``statuses`` (``inventory lint`` documents 1 for a file with errors); exit 2 with
    exactly one ``error:`` line, or the usage text when no (sub)command was named; every
    stderr line short."""
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdin=io.BytesIO(stdin), stdout=out, stderr=err, environ=environ,
                      stdout_isatty=False, stderr_isatty=False, stdin_isatty=False)
    with time_limit(seconds):
        status = int(main(list(argv), env))
    outcome = Outcome(status, out.getvalue().decode(errors="replace"),
                      err.getvalue().decode(errors="replace"))
    assert status in statuses, (status, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr + outcome.stdout
    for line in outcome.stderr.splitlines():
        check_message(line)
    if status == 2 and not outcome.stderr.startswith("usage:"):
        # A bare ``hostbatch`` or ``hostbatch inventory`` prints its usage instead. Redaction
        # may mask letters of "error:" when a password is one of them.
        errors = [line for line in outcome.stderr.splitlines()
                  if re.search(r"[e*][r*][r*][o*][r*]:", line)]
        assert len(errors) == 1, outcome.stderr
    return outcome


#: Characters hostile to parsers: brackets, separators, quotes, comment marks, control
#: characters and some non-ASCII.
NASTY = "[]:,=-#;%'\"\\ \t*?!@.|0123456789abczAZ_\x00\x7f\u00e9\u202e\ufeff"


def junk(max_size: int = 40) -> st.SearchStrategy[str]:
    """Short text made mostly of :data:`NASTY` characters, no line breaks."""
    return st.text(st.sampled_from(NASTY) | st.characters(blacklist_categories=["Cs"],
                                                         blacklist_characters="\r\n\x0b\x0c"
                                                         "\x1c\x1d\x1e\x85\u2028\u2029"),
                   max_size=max_size)


def long_token() -> st.SearchStrategy[str]:
    """One token longer than any message may be (a pasted blob, a runaway value)."""
    return st.builds(lambda c, n: c * n, st.sampled_from("xZ9[-"), st.integers(LONG, 3 * LONG))


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    """Run the test with no password registered for redaction, and forget the ones it
    registered: a one-letter password (other tests' or a generated one) masks that letter in
    every message after it."""
    known = set(secrets._known_values)
    secrets._known_values.clear()
    secrets._everything = (-1, secrets._everything[1])  # the masker is cached by count
    yield
    secrets._known_values.clear()
    secrets._known_values.update(known)
    secrets._everything = (-1, secrets._everything[1])
