"""``python -m hostbatch``: the umbrella command."""

from hostbatch.cli.main import hostbatch

hostbatch()
