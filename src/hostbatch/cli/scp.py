"""``batch_scp``: the put or get to perform, checked on the local side before connecting."""

from __future__ import annotations

import argparse
import posixpath

from hostbatch.actions import GetFiles, PutFiles, SyncOptions
from hostbatch.errors import UsageError, excerpt
from hostbatch.local_files import prepare_get_dir, scan_source


def _check_remote(remote: str | None) -> str:
    if not remote:
        raise UsageError("no remote path given: use -remote PATH")
    if remote.startswith("~") and remote != "~" and not remote.startswith("~/"):
        raise UsageError(f"remote path {excerpt(remote)}: only ~ and ~/ (the login user's "
                         "home) are supported")
    return remote


#: Both ways of saying what to copy, for the errors that cannot tell which was meant.
FORMS = ("batch_scp [selection] SRC... DEST, batch_scp [selection] :REMOTE... LOCALDIR, or "
         "batch_scp [selection] -action put|get -local PATH -remote PATH")


def _scp_shape(args: argparse.Namespace) -> None:
    """Turn ``SRC... DEST`` / ``:REMOTE... LOCALDIR`` into ``-action/-local/-remote``, in
    place; sources after the first go to ``args.more_paths``."""
    paths: list[str] = list(args.paths)
    if not paths:
        return
    if args.action is not None or args.local is not None or args.remote is not None:
        raise UsageError(f"give the paths one way, not both: {FORMS}")
    if len(paths) < 2:
        raise UsageError(f"a copy needs a source and a destination: {FORMS}")
    *sources, destination = paths
    args.paths = []  # converted: a second check must not see both forms
    remote = [source.startswith(":") for source in sources]
    if all(remote) and not destination.startswith(":"):
        args.action, args.local = "get", destination
        args.remote, *args.more_paths = (source[1:] for source in sources)
    elif not any(remote):
        args.action, (args.local, *args.more_paths) = "put", sources
        args.remote = destination[1:] if destination.startswith(":") else destination
    elif len(sources) > 1 and not all(remote):
        raise UsageError(f"the sources must all be local (put) or all start with ':' (get): "
                         f"{FORMS}")
    else:
        raise UsageError(f"which side is remote? only one side may start with ':': {FORMS}")
    _refuse_same_names([args.remote if args.action == "get" else args.local, *args.more_paths])


def _refuse_same_names(sources: list[str]) -> None:
    """Two sources with one base name would land on the same path, the second replacing the
    first: refused, as it is never what was meant."""
    seen: dict[str, str] = {}
    for path in sources:
        name = posixpath.basename(path.rstrip("/")) or path
        if name in seen:
            raise UsageError(f"{excerpt(seen[name])} and {excerpt(path)} would both land as "
                             f"{excerpt(name)}: copy them one at a time")
        seen[name] = path


def check_arguments(args: argparse.Namespace) -> None:
    """Cheap checks that need no file system access (done before reading the inventory)."""
    _scp_shape(args)
    if args.action is None:
        raise UsageError(f"nothing to copy: {FORMS}")
    if not args.local:
        raise UsageError("no local path given: use -local PATH")
    _check_remote(args.remote)
    for flag, given in (("--checksum", args.checksum), ("--delete", args.delete),
                        ("--dry-run", args.dry_run)):
        if given and not args.sync:
            raise UsageError(f"{flag} works only with --sync")


def action_from(args: argparse.Namespace) -> PutFiles | GetFiles:
    """The action of a ``batch_scp`` invocation; local problems raise :class:`UsageError`."""
    check_arguments(args)
    remote = _check_remote(args.remote)
    sync = SyncOptions(enabled=args.sync, checksum=args.checksum, delete=args.delete,
                       dry_run=args.dry_run)
    more: list[str] = getattr(args, "more_paths", [])
    if args.action == "put":
        verify = args.verify or args.checksum
        entries = scan_source(args.local, recursive=args.recursive, verify=verify)
        return PutFiles(args.local, remote, entries, recursive=args.recursive,
                        preserve_times=args.preserve, verify=args.verify, mkdir=args.mkdir,
                        sync=sync, limit_rate=args.limit_rate,
                        more_sources=tuple((path, scan_source(path, recursive=args.recursive,
                                                              verify=verify))
                                           for path in more))
    return GetFiles(remote, prepare_get_dir(args.local), recursive=args.recursive,
                    preserve_times=args.preserve, verify=args.verify, sync=sync,
                    limit_rate=args.limit_rate,
                    more_remotes=tuple(_check_remote(path) for path in more))
