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


def _output_lines_json(event: OutputLines) -> str:
    """The same objects as ``event.to_json()``, built several times faster: output lines are
    the bulk of a chatty run, so only the data is encoded per line."""
    head = (f'{{"host": {json.dumps(event.host, ensure_ascii=False)}, '
            f'"event": "{event.stream}", "data": ')
    lines = event.data.decode("utf-8", "replace")[:-1].split("\n")
    return "".join([f"{head}{_encode_string(line)}}}\n" for line in lines])


class JsonRenderer:
    """Writes the ``--json`` event stream; diagnostics stay on stderr, so stdout is pure JSON."""

    def __init__(self, stdout: SafeStream) -> None:
        self.stdout = stdout

    def handle(self, event: Event) -> None:
        """Write the objects for one event, if it has any."""
        if isinstance(event, OutputLines):
            text = _output_lines_json(event)
        elif isinstance(event, HostExited | HostFailed | TransferDone | TransferProgress
                        | FileTransferred | TransferPlanned):
            text = json.dumps(event.to_json(), ensure_ascii=False) + "\n"
        else:
            return
        # A file name that is not UTF-8 holds surrogate escapes (U+DC80-U+DCFF for its stray
        # bytes); backslashreplace writes each as the JSON escape "\udcXX", which decodes
        # back to the same code point: lossless, and still valid UTF-8 JSON.
        self.stdout.write(text.encode("utf-8", "backslashreplace"))
        self.stdout.flush()

    def close(self) -> None:
        """Flush stdout."""
        self.stdout.flush()
