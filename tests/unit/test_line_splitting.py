"""hostbatch.ssh.command: LineSplitter (bounded line buffering) and _MarkerFilter.

Both work on blocks of complete lines; the adapters below turn blocks into line lists so each
test states its expectation line by line.
"""

from __future__ import annotations

import pytest

from hostbatch.ssh import command
from hostbatch.ssh.command import MARKER_SEARCH_LINES, MAX_LINE


def _lines(block: bytes) -> list[bytes]:
    assert not block or block.endswith(b"\n"), "a block holds complete lines only"
    return block[:-1].split(b"\n") if block else []


def _block(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


class LineSplitter:
    """The block splitter, seen line by line."""

    def __init__(self) -> None:
        self._splitter = command.LineSplitter()

    def feed(self, data: bytes) -> list[bytes]:
        return _lines(self._splitter.feed(data))

    def flush(self) -> list[bytes]:
        return _lines(self._splitter.flush())

    @property
    def _partial(self) -> bytes:
        return self._splitter._partial


class _MarkerFilter:
    """The block marker filter, seen line by line."""

    def __init__(self, marker: str) -> None:
        self._filter = command._MarkerFilter(marker)

    @property
    def pgid(self) -> int | None:
        return self._filter.pgid

    def filter(self, lines: list[bytes]) -> list[bytes]:
        return _lines(self._filter.filter(_block(lines)))


def split(chunks: list[bytes]) -> list[bytes]:
    splitter = LineSplitter()
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(splitter.feed(chunk))
    return lines + splitter.flush()


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], [b"a", b"b"]),
        ([b"a\n", b"b\n"], [b"a", b"b"]),
        ([b"hel", b"lo\nwor", b"ld\n"], [b"hello", b"world"]),
        ([b"h", b"e", b"l", b"l", b"o", b"\n"], [b"hello"]),
        ([b"line1\nline2"], [b"line1", b"line2"]),  # final line without newline
        ([b"no newline at all"], [b"no newline at all"]),
        ([b"a\n\nb\n"], [b"a", b"", b"b"]),  # empty lines are kept
        ([b"\n"], [b""]),
        ([b"\n\n", b"\n"], [b"", b"", b""]),
        ([b""], []),
        ([], []),
        ([b"a", b"", b"b\n"], [b"ab"]),
        ([b"crlf\r\n"], [b"crlf\r"]),  # bytes pass through untouched, as ssh does
        ([b"\xff\xfe\n\xc3", b"\xa9\n"], [b"\xff\xfe", b"\xc3\xa9"]),  # split UTF-8 rejoined
    ],
)
def test_split(chunks: list[bytes], expected: list[bytes]) -> None:
    assert split(chunks) == expected


def test_feed_returns_only_complete_lines() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"partial") == []
    assert splitter.feed(b" still") == []
    assert splitter.feed(b" done\nnext") == [b"partial still done"]
    assert splitter.flush() == [b"next"]
    assert splitter.flush() == []  # flush empties the buffer
    assert splitter.feed(b"again\n") == [b"again"]


def test_flush_after_complete_line_is_empty() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"done\n") == [b"done"]
    assert splitter.flush() == []


def test_long_line_is_cut_at_max_line() -> None:
    splitter = LineSplitter()
    data = b"x" * (MAX_LINE * 2 + 10)
    pieces = splitter.feed(data)
    assert pieces == [b"x" * MAX_LINE, b"x" * MAX_LINE]
    assert splitter.flush() == [b"x" * 10]


def test_long_line_fed_in_small_chunks_stays_bounded() -> None:
    splitter = LineSplitter()
    chunk = b"y" * 65536
    out: list[bytes] = []
    for _ in range((MAX_LINE * 3) // len(chunk)):
        out.extend(splitter.feed(chunk))
        assert len(splitter._partial) <= MAX_LINE
    out.extend(splitter.feed(b"tail\nnext\n"))
    assert out[-1] == b"next"
    assert b"".join(out[:-1]) == b"y" * (MAX_LINE * 3) + b"tail"


def test_long_complete_line_is_cut_at_max_line() -> None:
    """A long line that arrives with its newline in the same chunk is cut too."""
    data = b"x" * (MAX_LINE * 2 + 10) + b"\nshort\n"
    assert split([data]) == [b"x" * MAX_LINE, b"x" * MAX_LINE, b"x" * 10, b"short"]


@pytest.mark.parametrize("chunk_size", [65536, MAX_LINE + 1])
def test_long_line_pieces_do_not_depend_on_chunking(chunk_size: int) -> None:
    data = b"q" * (MAX_LINE * 2 + 5) + b"\n" + b"r" * (MAX_LINE + 1) + b"\nend"
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    assert split(chunks) == [b"q" * MAX_LINE, b"q" * MAX_LINE, b"q" * 5, b"r" * MAX_LINE,
                             b"r", b"end"]


def test_line_of_exactly_max_line_is_one_piece() -> None:
    assert split([b"z" * MAX_LINE + b"\n"]) == [b"z" * MAX_LINE]
    assert split([b"z" * MAX_LINE]) == [b"z" * MAX_LINE]


def test_total_bytes_are_preserved() -> None:
    data = b"".join(bytes([65 + i % 26]) * (i * 37 % 5000) + b"\n" for i in range(500))
    chunks = [data[i:i + 1021] for i in range(0, len(data), 1021)]
    assert b"\n".join(split(chunks)) + b"\n" == data


# --------------------------------------------------------------------------- marker filter

MARKER = "HBM-0123456789abcdef"


@pytest.mark.parametrize(
    ("lines", "kept", "pgid"),
    [
        ([f"{MARKER} 4242".encode(), b"out1", b"out2"], [b"out1", b"out2"], 4242),
        ([b"motd", b"rc says hi", f"{MARKER} 77".encode(), b"out"], [b"motd", b"rc says hi",
                                                                      b"out"], 77),
        ([f"{MARKER} 5".encode()], [], 5),
        # not exact: kept as output, no pgid
        ([f"{MARKER} 12 extra".encode(), b"x"], [f"{MARKER} 12 extra".encode(), b"x"], None),
        ([f"x{MARKER} 12".encode()], [f"x{MARKER} 12".encode()], None),
        ([f"{MARKER}  12".encode()], [f"{MARKER}  12".encode()], None),
        ([f"{MARKER} ".encode()], [f"{MARKER} ".encode()], None),
        ([f"{MARKER} abc".encode()], [f"{MARKER} abc".encode()], None),
        ([f"{MARKER[:-1]} 12".encode()], [f"{MARKER[:-1]} 12".encode()], None),
        ([f"{MARKER} 12\r".encode()], [f"{MARKER} 12\r".encode()], None),
        ([b"plain"], [b"plain"], None),
    ],
)
def test_marker_filter(lines: list[bytes], kept: list[bytes], pgid: int | None) -> None:
    markers = _MarkerFilter(MARKER)
    assert markers.filter(list(lines)) == kept
    assert markers.pgid == pgid


def test_marker_is_removed_once_then_later_copies_are_output() -> None:
    markers = _MarkerFilter(MARKER)
    line = f"{MARKER} 99".encode()
    assert markers.filter([b"a", line, b"b", line]) == [b"a", b"b", line]
    assert markers.filter([line]) == [line]
    assert markers.pgid == 99


def test_marker_found_in_a_later_batch() -> None:
    markers = _MarkerFilter(MARKER)
    assert markers.filter([b"rc1"]) == [b"rc1"]
    assert markers.filter([]) == []
    assert markers.filter([b"rc2", f"{MARKER} 31337".encode(), b"out"]) == [b"rc2", b"out"]
    assert markers.pgid == 31337


def test_marker_regex_metacharacters_are_literal() -> None:
    markers = _MarkerFilter("M.K+")
    assert markers.filter([b"MxKK 1"]) == [b"MxKK 1"]
    assert markers.filter([b"M.K+ 2"]) == []
    assert markers.pgid == 2


def test_marker_search_stops_after_the_limit() -> None:
    markers = _MarkerFilter(MARKER)
    noise = [b"rc"] * MARKER_SEARCH_LINES
    assert markers.filter(noise) == noise
    late = [f"{MARKER} 1".encode()]
    assert markers.filter(late) == late
    assert markers.pgid is None


def test_marker_split_across_chunks_is_found_after_line_splitting() -> None:
    splitter, markers = LineSplitter(), _MarkerFilter(MARKER)
    wire = f"{MARKER} 123\nhello\n".encode()
    out: list[bytes] = []
    for i in range(0, len(wire), 3):
        out.extend(markers.filter(splitter.feed(wire[i:i + 3])))
    out.extend(markers.filter(splitter.flush()))
    assert out == [b"hello"]
    assert markers.pgid == 123
