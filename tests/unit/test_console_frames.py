"""The resident shell's frame scanner (hostbatch.ssh.frames): frames found wherever the
network splits the stream, and nothing else taken from the command's output."""

from __future__ import annotations

import os

import pytest

from hostbatch.ssh.frames import FrameScanner

PREFIX = "hostbatch-end-0123456789abcdef"
FRAME = f"{PREFIX} 42\n".encode()


def scan(pieces: list[bytes]) -> tuple[bytes, int | None, bytes]:
    """Feed ``pieces``; what passed before the frame (with what was held at the end), the
    frame's number, and what came after it."""
    scanner = FrameScanner(PREFIX)
    before = after = b""
    for piece in pieces:
        if scanner.found:
            after += scanner.feed(piece)
        else:
            before += scanner.feed(piece)
            after = scanner.rest
    if not scanner.found:
        before += scanner.flush()
    return before, scanner.number, after


def every_split(data: bytes) -> list[list[bytes]]:
    """``data`` cut in two at every position, and in single bytes."""
    return [[data[:cut], data[cut:]] for cut in range(len(data) + 1)] + [
        [data[n:n + 1] for n in range(len(data))]]


@pytest.mark.parametrize("output", [b"", b"line\n", b"no newline", b"a\nb\nlast-no-nl",
                                    b"hostbatch-end-", b"x" * 70000])
def test_the_frame_is_found_at_every_split(output: bytes) -> None:
    for pieces in every_split(output + FRAME + b"after") if len(output) < 100 else [
            [output + FRAME[:7], FRAME[7:] + b"after"]]:
        assert scan(pieces) == (output, 42, b"after"), pieces


def test_output_without_a_trailing_newline_keeps_its_last_bytes() -> None:
    assert scan([b"abc" + FRAME]) == (b"abc", 42, b"")


def test_a_frame_of_another_nonce_is_output() -> None:
    other = b"hostbatch-end-ffffffffffffffff 0\nhostbatch-end-0123456789abcdeg 1\n"
    passed, number, _ = scan([other[:20], other[20:], FRAME])
    assert (passed, number) == (other, 42)


def test_a_lookalike_without_its_number_passes_on() -> None:
    lookalike = f"{PREFIX} \n{PREFIX}x 1\n".encode()
    passed, number, _ = scan([lookalike, FRAME])
    assert (passed, number) == (lookalike, 42)


def test_binary_output_passes_unchanged() -> None:
    data = os.urandom(200000)
    passed, number, _ = scan([data[:4096], data[4096:], FRAME])
    assert passed == data and number == 42


def test_only_a_possible_frame_start_is_held_back() -> None:
    scanner = FrameScanner(PREFIX)
    assert scanner.feed(b"progress 10%\n") == b"progress 10%\n"  # streamed at once
    assert scanner.feed(b"hostbat") == b""
    assert scanner.feed(b"ch is here\n") == b"hostbatch is here\n"
    assert scanner.feed(f"{PREFIX} 1".encode()) == b""  # the number may go on
    assert scanner.feed(b"7\n") == b"" and scanner.number == 17


def test_a_stream_that_ends_without_the_frame_gives_back_what_was_held() -> None:
    scanner = FrameScanner(PREFIX)
    assert scanner.feed(b"tail hostbatch-e") == b"tail "
    assert scanner.flush() == b"hostbatch-e" and not scanner.found


def test_after_the_frame_everything_passes() -> None:
    scanner = FrameScanner(PREFIX)
    assert scanner.feed(FRAME) == b"" and scanner.found
    assert scanner.feed(FRAME) == FRAME
