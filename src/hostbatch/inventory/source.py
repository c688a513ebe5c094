"""Read an inventory file's text, with one-line errors for every way that can fail.

Shared by both formats (:mod:`.loader` for hostbatch INI, :mod:`.ansible` for Ansible INI) and
by :mod:`.lint`, so none of them imports another for it.
"""

from __future__ import annotations

from pathlib import Path

from hostbatch.errors import InventoryError


def read_inventory_text(path: Path) -> str:
    """The file's text; a missing, unreadable or non-UTF-8 file raises InventoryError."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError("inventory file not found", path=str(path)) from None
    except IsADirectoryError:
        raise InventoryError("inventory path is a directory, not a file (for an Ansible "
                             "inventory directory, give its INI file: -i DIR/hosts)",
                             path=str(path)) from None
    except PermissionError:
        raise InventoryError("inventory file is not readable (permission denied)",
                             path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InventoryError(f"inventory is not UTF-8 text ({exc.reason})",
                             path=str(path)) from None


def line_of(path: str, section: str | None, key: str | None = None) -> int | None:
    """The line of ``key`` in ``[section]`` (or of the section's header) in the file at
    ``path``, for messages; ``None`` when it cannot be found or read."""
    if not section:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    header = f"[{section}]"
    found: int | None = None
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if text.startswith("["):
            if found is not None:
                break
            if text == header:
                found = number
        elif found is not None and key and text.split("=", 1)[0].strip() == key:
            return number
    return found
