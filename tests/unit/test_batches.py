"""hostbatch.engine.batches and engine.memory: the parent's reading of workers' messages."""

from __future__ import annotations

import multiprocessing
import pickle
import threading

import pytest

from hostbatch.engine.batches import BatchReader
from hostbatch.engine.events import HostExited, OutputLines
from hostbatch.engine.memory import keep_output_blocks


def _batch(host: str, size: int) -> list[object]:
    data = (b"x" * 76 + b"\n") * (size // 77)
    return [OutputLines(host, "stdout", data), HostExited(host, 0, 0.5)]


def test_reads_what_send_bytes_sent_small_large_and_over_the_buffer() -> None:
    reader_end, writer_end = multiprocessing.Pipe(duplex=False)
    batches = [_batch("a", 100), _batch("b", 300_000), _batch("c", 5_000), _batch("d", 2_000_000)]

    def send() -> None:  # a thread: a pipe holds less than the largest message
        for batch in batches:
            writer_end.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        writer_end.close()

    sender = threading.Thread(target=send)
    sender.start()
    reader = BatchReader(size=64 * 1024)
    received = [reader.read(reader_end) for _ in batches]
    with pytest.raises(EOFError):
        reader.read(reader_end)
    sender.join()
    assert received == batches
    # the unpickled output is bytes of its own, not a view of the reused buffer
    assert all(type(batch[0].data) is bytes for batch in received)  # type: ignore[attr-defined]


def test_a_message_cut_short_is_the_end_of_the_pipe() -> None:
    reader_end, writer_end = multiprocessing.Pipe(duplex=False)
    message = pickle.dumps(_batch("a", 1000))
    with open(writer_end.fileno(), "wb", closefd=False) as raw:
        raw.write(len(message).to_bytes(4, "big") + message[:100])
    writer_end.close()
    with pytest.raises(EOFError):
        BatchReader().read(reader_end)


def test_allocator_settings_are_accepted_or_skipped() -> None:
    assert keep_output_blocks() in (True, False)
