"""A wrapper that keeps passwords out of reprs, logs, tracebacks and JSON."""

from __future__ import annotations


class Secret:
    """Holds a secret string; every way of printing it shows ``***``.

    Only the SSH layer calls :meth:`reveal`, at the moment the value goes on the wire.
    Pickling keeps the value (workers need it), which is safe because only the parent and
    its own worker processes ever exchange pickles, over private pipes.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself; for the SSH layer only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))
