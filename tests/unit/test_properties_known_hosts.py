"""Properties of the known_hosts reader (``hostbatch.known_hosts``): any file loads and answers
``check`` and ``key_types`` quickly; patterns (plain, wildcard, negated, hashed) mean what they
mean to OpenSSH; comments, markers other than ``@revoked`` and garbage lines change nothing;
and a pattern of many ``*`` cannot make a lookup backtrack for minutes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostbatch.known_hosts import KeyStatus, KnownHosts

from .properties import (
    LONG,
    fast,
    forget_secrets,  # noqa: F401  (autouse fixture)
    junk,
    long_token,
    time_limit,
)

ED = "ssh-ed25519"
KEY_A = base64.b64encode(b"key-a" * 8).decode()
KEY_B = base64.b64encode(b"key-b" * 8).decode()
#: Host names a lookup asks about: short, port forms, upper case, and a long one.
NAMES = ["web1", "WEB1", "db", "[web1]:2222", "a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "x" * 300, "127.0.0.21"]
#: Characters of generated patterns: wildcards, negation and the bracket of ``[host]:port``.
_PATTERN_CHARS = "ab*?![]:.1"


def hashed(name: str, salt: bytes) -> str:
    """A hashed host pattern as ``ssh-keygen -H`` writes it."""
    digest = hmac.new(salt, name.lower().encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _pattern() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NAMES), st.text(_PATTERN_CHARS, min_size=1, max_size=12),
        st.builds(lambda n: "*a" * n + "b", st.integers(1, 60)),
        st.builds(lambda n, c: "*" * n + c, st.integers(1, LONG), st.sampled_from("ab")),
        st.builds(hashed, st.sampled_from(NAMES), st.binary(max_size=20)),
        st.sampled_from(["|1|", "|1|x", "|1|!!|??", "|1|YQ==|YQ==|YQ==", "|2|a|b"]),
        junk(12), long_token())


@st.composite
def known_hosts_lines(draw: st.DrawFn) -> list[str]:
    """Lines of a known_hosts file: entries of every kind, markers, comments and garbage."""
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["entry", "entry", "marker", "comment", "junk", "blank"]))
        if kind in ("entry", "marker"):
            patterns = ",".join(draw(st.lists(_pattern().map(
                lambda p: p if draw(st.booleans()) else "!" + p), min_size=1, max_size=4)))
            marker = draw(st.sampled_from(["@revoked ", "@cert-authority ", "@", "@x "]))
            key = draw(st.sampled_from([KEY_A, KEY_B, "!!", "A" * LONG]))
            line = f"{marker if kind == 'marker' else ''}{patterns} {ED} {key}"
        elif kind == "comment":
            line = "#" + draw(junk(40))
        elif kind == "junk":
            line = draw(junk(60) | long_token())
        else:
            line = draw(st.sampled_from(["", " ", "\t", "\r"]))
        lines.append(line)
    return lines


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("known_hosts")


def load(workdir: Path, lines: list[str], name: str = "known_hosts") -> KnownHosts:
    path = workdir / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return KnownHosts.load([str(path)])


def verdicts(known: KnownHosts) -> list[tuple[KeyStatus, KeyStatus, list[str]]]:
    """What the file says about every name of :data:`NAMES`."""
    return [(known.check(name, ED, KEY_A), known.check(name, ED, KEY_B), known.key_types(name))
            for name in NAMES]


@given(known_hosts_lines())
@example(["*a" * 30 + "b ssh-ed25519 " + KEY_A])
@example(["*" * 100_000 + "b,!" + "?" * 100_000 + " ssh-ed25519 " + KEY_A])
@example(["web1 ssh-ed25519 " + KEY_A * 50_000])
@example(["|1|" + "A" * 100_000 + "|x ssh-ed25519 " + KEY_A])
@fast(120, seconds=2)
def test_any_file_loads_and_answers_quickly(workdir: Path, lines: list[str]) -> None:
    with time_limit(4):
        known = load(workdir, lines)
        for status_a, status_b, types in verdicts(known):
            assert isinstance(status_a, KeyStatus) and isinstance(status_b, KeyStatus)
            assert all(isinstance(key_type, str) for key_type in types)


@given(known_hosts_lines(), st.lists(st.one_of(
    junk(60).map(lambda text: "#" + text),
    st.sampled_from(["# a\u2028web1 ssh-ed25519 " + KEY_B, "# a\x1cweb1 ssh-ed25519 " + KEY_B,
                     "# a\x0cdb ssh-ed25519 " + KEY_B, "@cert-authority * ssh-ed25519 " + KEY_B,
                     "@revoked", "web1", "web1 ssh-ed25519", "\x0bweb1\x0bssh-ed25519\x0b" + KEY_B,
                     "*\u2029ssh-ed25519 " + KEY_B])), max_size=4), st.integers(0, 8))
@example([f"web1 {ED} {KEY_A}"], ["# moved\u2028web1 ssh-ed25519 " + KEY_B], 0)
@fast(100)
def test_comments_markers_and_garbage_change_nothing(workdir: Path, lines: list[str],
                                                     noise: list[str], where: int) -> None:
    """ssh ends a line only at a newline and splits fields only at spaces and tabs: a comment
    holding a Unicode line separator, or a line held together by vertical tabs, is no entry."""
    with time_limit(4):
        before = verdicts(load(workdir, lines))
        spot = min(where, len(lines))
        after = verdicts(load(workdir, lines[:spot] + noise + lines[spot:]))
    assert after == before


def _reference(pattern: str, name: str) -> bool:
    """OpenSSH's ``match_pattern`` for short inputs only (a ``.*`` regular expression is
    exponential in the number of ``*``): ``*`` any run, ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


@given(st.text("ab*?[", max_size=8), st.text("abAB[", max_size=8), st.booleans())
@fast(300)
def test_wildcards_negation_and_case_follow_openssh(workdir: Path, pattern: str, name: str,
                                                    negate: bool) -> None:
    if not name or not pattern or pattern.startswith("!"):
        return
    with time_limit(2):
        # Negated, the entry matches only "zz" (never generated) and never what it negates.
        known = load(workdir, [f"!{pattern},zz {ED} {KEY_A}" if negate
                               else f"{pattern} {ED} {KEY_A}"])
        status = known.check(name, ED, KEY_A)
    expected = False if negate else _reference(pattern.lower(), name.lower())
    assert (status is KeyStatus.KNOWN) == expected, (pattern, name)
    assert status in (KeyStatus.KNOWN, KeyStatus.UNKNOWN)


@given(st.sampled_from(NAMES), st.sampled_from(NAMES), st.binary(max_size=24), st.booleans())
@fast(80)
def test_hashed_pattern_matches_its_name_only(workdir: Path, name: str, other: str,
                                              salt: bytes, revoked: bool) -> None:
    """``|1|salt|hash`` matches the name it hashes, in any case, and only that name; under
    ``@revoked`` the key is refused for that name."""
    prefix = "@revoked " if revoked else ""
    known = load(workdir, [f"{prefix}{hashed(name, salt)} {ED} {KEY_A}"])
    expected = KeyStatus.REVOKED if revoked else KeyStatus.KNOWN
    assert known.check(name.upper(), ED, KEY_A) is expected
    if other.lower() != name.lower():
        assert known.check(other, ED, KEY_A) is KeyStatus.UNKNOWN
    negated = load(workdir, [f"*,!{hashed(name, salt)} {ED} {KEY_A}"])
    assert negated.check(name, ED, KEY_A) is KeyStatus.UNKNOWN


def test_many_stars_do_not_backtrack() -> None:
    """Regression: ``*a*a...*b`` against ``aaa...`` took seconds at 10 stars and minutes at 12
    (a ``.*`` regular expression backtracking); now a lookup is linear in practice."""
    known = KnownHosts()
    known._add_line("*a" * 200 + "b " + ED + " " + KEY_A)
    with time_limit(1):
        for length in (20, 40, 399, 400, 401, 1000):
            assert known.check("a" * length, ED, KEY_A) is KeyStatus.UNKNOWN
        assert known.check("a" * 199 + "b", ED, KEY_A) is KeyStatus.UNKNOWN
        assert known.check("a" * 200 + "b", ED, KEY_A) is KeyStatus.KNOWN


def test_a_unicode_line_separator_in_a_comment_adds_no_entry(workdir: Path) -> None:
    """Regression: ``splitlines`` broke a comment at U+2028 or ``\\x1c`` and read its tail as
    an entry that ssh never sees."""
    known = load(workdir, ["# old\u2028web1 ssh-ed25519 " + KEY_A,
                           "# old\x1cdb ssh-ed25519 " + KEY_A, "\x0cweb1 ssh-ed25519 " + KEY_A])
    assert known.check("web1", ED, KEY_A) is KeyStatus.UNKNOWN
    assert known.check("db", ED, KEY_A) is KeyStatus.UNKNOWN
