"""``hostbatch relay --stdio``: serve one controller on stdin/stdout (see docs/relays.md).

A controller starts this over SSH (``relay_command`` in its inventory); people do not run it
by hand. The protocol owns stdout: this module moves the real stdin and stdout to private
descriptors and points descriptors 0 and 1 at ``/dev/null`` and stderr, so that nothing else
in the process can write into the protocol stream.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import error_line
from hostbatch.cli.parser import Parser
from hostbatch.exit_status import ExitStatus
from hostbatch.render.output import SafeStream

DESCRIPTION = ("Run a shard of a fleet for a controller: read its job as JSON lines on stdin, "
               "run it with the ordinary engine and write every event to stdout as it happens. "
               "A controller starts this over SSH (the relay's relay_command); it stops and "
               "kills its remote commands when stdin ends.")


def build_parser(prog: str = "hostbatch relay") -> Parser:
    """The parser of ``hostbatch relay``."""
    parser = Parser(prog=prog, add_help=False, allow_abbrev=False, description=DESCRIPTION,
                    epilog="Inventory: via = RELAY on the hosts, relay_command and relay_forks "
                           "on the relay; see the Relays page of the documentation.")
    parser.add_argument("--help", action="store_true", help="show this help and exit")
    parser.add_argument("--stdio", action="store_true",
                        help="speak the relay protocol on stdin/stdout (required)")
    return parser


def relay_main(argv: Sequence[str], env: Environment, prog: str = "hostbatch relay", *,
               launcher: object = None) -> int:
    """Parse, then serve one controller; 0 when the job ran (whatever its hosts did), 3 for
    a controller of another protocol, 2 for a usage error."""
    out, err = SafeStream(env.stdout), SafeStream(env.stderr)
    parser = build_parser(prog)
    args = parser.parse_args(list(argv))
    if args.help:
        out.write(parser.format_help().encode())
        out.flush()
        return ExitStatus.OK
    if not args.stdio:
        err.write(error_line(prog, "give --stdio: a controller starts the relay over SSH"))
        err.flush()
        return ExitStatus.USAGE
    from hostbatch.relay.server import serve

    stdin_fd, stdout_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    try:
        return serve(stdin_fd, stdout_fd, env.home)
    finally:
        os.close(stdin_fd)
        os.close(stdout_fd)
