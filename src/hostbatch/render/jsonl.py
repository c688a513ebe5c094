"""``--json``: JSON Lines on stdout, one object per output line and one terminal event per host."""

from __future__ import annotations

import json

from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    OutputLines,
    TransferDone,
    TransferProgress,
)
from hostbatch.render.output import SafeStream


class JsonRenderer:
    """Writes the ``--json`` event stream; diagnostics stay on stderr, so stdout is pure JSON."""

    def __init__(self, stdout: SafeStream) -> None:
        self.stdout = stdout

    def handle(self, event: Event) -> None:
        """Write the objects for one event, if it has any."""
        if isinstance(event, OutputLines):
            objects = event.to_json()
        elif isinstance(event, HostExited | HostFailed | TransferDone | TransferProgress
                        | FileTransferred):
            objects = [event.to_json()]
        else:
            return
        self.stdout.write("".join(json.dumps(obj, ensure_ascii=False) + "\n"
                                  for obj in objects).encode("utf-8"))
        self.stdout.flush()

    def close(self) -> None:
        """Flush stdout."""
        self.stdout.flush()
