"""The local side of a copy, checked and scanned once in the parent before anything connects.

``put``: the source must exist and be readable (a directory only with ``-r``); its tree is
scanned once here, not once per host. ``get``: the local directory must be writable (it is
created when only it is missing). Problems raise :class:`UsageError` (exit 2).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from hostbatch.actions import LocalEntry
from hostbatch.errors import UsageError


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _entry(path: str, relpath: str, *, verify: bool) -> LocalEntry:
    """Describe ``path``; below the top item, symlinks are kept as links (as ``cp -r``)."""
    info = os.lstat(path) if relpath else os.stat(path)
    if stat.S_ISLNK(info.st_mode):
        return LocalEntry(relpath, "link", mode=stat.S_IMODE(info.st_mode),
                          link_target=os.readlink(path), mtime=info.st_mtime,
                          atime=info.st_atime)
    if stat.S_ISDIR(info.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise UsageError(f"cannot read directory {path}: permission denied")
        return LocalEntry(relpath, "dir", mode=info.st_mode, mtime=info.st_mtime,
                          atime=info.st_atime)
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a regular file, directory or symlink")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {path}: permission denied")
    return LocalEntry(relpath, "file", mode=info.st_mode, size=info.st_size,
                      mtime=info.st_mtime, atime=info.st_atime,
                      sha256=_sha256(path) if verify else "")


def scan_source(source: str, *, recursive: bool, verify: bool) -> tuple[LocalEntry, ...]:
    """The entries to put: the top item first, then (``recursive``) the tree, parents first."""
    if not os.path.lexists(source):
        raise UsageError(f"local path {source} does not exist")
    if not os.path.exists(source):
        raise UsageError(f"local path {source} is a dangling symlink")
    top = os.stat(source)
    if stat.S_ISDIR(top.st_mode) and not recursive:
        raise UsageError(f"local path {source} is a directory (use -r to copy a tree)")
    try:
        if not stat.S_ISDIR(top.st_mode):
            return (_entry(source, "", verify=verify),)
        entries = [_entry(source, "", verify=verify)]
        for root, dirs, files in os.walk(source, onerror=_raise):
            dirs.sort()
            base = os.path.relpath(root, source)
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                relpath = name if base == "." else f"{base}/{name}".replace(os.sep, "/")
                entries.append(_entry(path, relpath, verify=verify))
            # os.walk does not descend into symlinked directories: they are copied as links.
        return tuple(entries)
    except PermissionError as exc:
        raise UsageError(f"cannot read {exc.filename}: permission denied") from None
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename or source}: {exc.strerror}") from None


def _raise(error: OSError) -> None:
    raise error


def prepare_get_dir(local_dir: str) -> str:
    """Check (or create) the directory that receives ``HOST/BASENAME`` for each host."""
    path = Path(local_dir)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"local path {local_dir} is not a directory")
    else:
        parent = path.parent
        if not parent.is_dir():
            raise UsageError(f"local directory {parent} does not exist")
        try:
            path.mkdir()
        except OSError as exc:
            raise UsageError(f"cannot create local directory {local_dir}: {exc.strerror}") \
                from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"local directory {local_dir} is not writable")
    return str(path.resolve())
