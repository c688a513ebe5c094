"""Renderers: turn engine events into what the user sees. They never reach into the engine."""

from __future__ import annotations

from typing import Protocol

from hostbatch.engine.events import Event


class Renderer(Protocol):
    """Receives every event in arrival order, then ``close`` once at the end."""

    def handle(self, event: Event) -> None:
        """Show one event."""

    def close(self) -> None:
        """Flush whatever is buffered."""
