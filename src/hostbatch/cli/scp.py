"""``batch_scp``: the put or get to perform, checked on the local side before connecting."""

from __future__ import annotations

import argparse

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
FORMS = ("batch_scp [selection] SRC DEST, batch_scp [selection] :REMOTE LOCALDIR, or "
         "batch_scp [selection] -action put|get -local PATH -remote PATH")


def _scp_shape(args: argparse.Namespace) -> None:
    """Turn ``SRC DEST`` / ``:REMOTE LOCALDIR`` into ``-action/-local/-remote``, in place."""
    paths: list[str] = list(args.paths)
    if not paths:
        return
    if args.action is not None or args.local is not None or args.remote is not None:
        raise UsageError(f"give the paths one way, not both: {FORMS}")
    if len(paths) < 2:
        raise UsageError(f"a copy needs a source and a destination: {FORMS}")
    *sources, destination = paths
    if len(sources) > 1:
        raise UsageError("one source per copy: put the files in a directory and copy it "
                         "with -r, or run once per source")
    (source,) = sources
    args.paths = []  # converted: a second check must not see both forms
    if source.startswith(":") and not destination.startswith(":"):
        args.action, args.remote, args.local = "get", source[1:], destination
    elif not source.startswith(":"):
        args.action, args.local = "put", source
        args.remote = destination[1:] if destination.startswith(":") else destination
    else:
        raise UsageError(f"which side is remote? only one path may start with ':': {FORMS}")


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
    if args.action == "put":
        entries = scan_source(args.local, recursive=args.recursive,
                              verify=args.verify or args.checksum)
        return PutFiles(args.local, remote, entries, recursive=args.recursive,
                        preserve_times=args.preserve, verify=args.verify, mkdir=args.mkdir,
                        sync=sync, limit_rate=args.limit_rate)
    return GetFiles(remote, prepare_get_dir(args.local), recursive=args.recursive,
                    preserve_times=args.preserve, verify=args.verify, sync=sync,
                    limit_rate=args.limit_rate)
