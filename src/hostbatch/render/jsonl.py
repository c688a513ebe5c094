"""``--json``: JSON Lines on stdout, one object per output line and one terminal event per host."""

from __future__ import annotations

import json
from collections.abc import Callable

from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    OutputLines,
    TransferDone,
    TransferPlanned,
    TransferProgress,
)
from hostbatch.render.output import SafeStream

#: JSON-encode one string (the C-accelerated encoder that json.dumps itself uses).
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


#: Bytes that JSON writes as they are inside a string (``ensure_ascii=False``): printable
#: ASCII but the quote and the backslash; and the newline, which only separates lines here.
_VERBATIM = bytes(b for b in range(0x20, 0x80) if b not in b'"\\') + b"\n"


def _output_lines_json(event: OutputLines) -> bytes:
    """The same objects as ``event.to_json()``, built many times faster: output lines are the
    bulk of a chatty run. When every byte is one JSON writes verbatim (the usual case), the
    objects are made by one replace over the whole block; otherwise each line is encoded."""
    head = (f'{{"host": {json.dumps(event.host, ensure_ascii=False)}, '
            f'"event": "{event.stream}", "data": ').encode()
    data = event.data
    if data.isascii() and not data.translate(None, _VERBATIM):
        return head + b'"' + data[:-1].replace(b"\n", b'"}\n' + head + b'"') + b'"}\n'
    lines = data.decode("utf-8", "replace")[:-1].split("\n")
    text = head.decode("utf-8")
    return "".join([f"{text}{_encode_string(line)}}}\n" for line in lines]).encode("utf-8")


class JsonRenderer:
    """Writes the ``--json`` event stream; diagnostics stay on stderr, so stdout is pure JSON."""

    def __init__(self, stdout: SafeStream) -> None:
        self.stdout = stdout

    def handle(self, event: Event) -> None:
        """Write the objects for one event, if it has any."""
        if isinstance(event, OutputLines):
            data = _output_lines_json(event)
        elif isinstance(event, HostExited | HostFailed | TransferDone | TransferProgress
                        | FileTransferred | TransferPlanned):
            text = json.dumps(event.to_json(), ensure_ascii=False) + "\n"
            # A file name that is not UTF-8 holds surrogate escapes (U+DC80-U+DCFF for its
            # stray bytes); backslashreplace writes each as the JSON escape "\udcXX", which
            # decodes back to the same code point: lossless, and still valid UTF-8 JSON.
            data = text.encode("utf-8", "backslashreplace")
        else:
            return
        self.stdout.write(data)
        self.stdout.flush()

    def close(self) -> None:
        """Flush stdout."""
        self.stdout.flush()
