"""``python -m hostbatch``: the umbrella command."""

from hostbatch.cli.scripts import hostbatch

hostbatch()
