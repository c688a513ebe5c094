"""The command-line layer: a thin shell over :mod:`hostbatch.api`."""
