"""Questions asked on the user's terminal without echo: passwords and key passphrases.

The terminal is the controlling one (``/dev/tty``), not stdin or stderr, so prompts work
while output is piped or redirected, as with ssh. Without a terminal there is no prompt: the
caller decides what that means (an error for ``--ask-pass``, a key left unused).
"""

from __future__ import annotations

import getpass
import os

from hostbatch.credentials import Prompt


def _ask(text: str) -> str:
    return getpass.getpass(text)


def terminal_prompt() -> Prompt | None:
    """A prompt on the controlling terminal, or None if this process has none."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    os.close(fd)
    return _ask
