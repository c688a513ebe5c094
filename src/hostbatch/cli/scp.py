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


def check_arguments(args: argparse.Namespace) -> None:
    """Cheap checks that need no file system access (done before reading the inventory)."""
    if args.action is None:
        raise UsageError("no action given: use -action put or -action get")
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
