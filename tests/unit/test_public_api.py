"""The library's public names (``hostbatch.__all__``) all resolve, lazily, and importing
``hostbatch`` with its whole API loaded never imports paramiko (that happens in workers)."""

from __future__ import annotations

import subprocess
import sys

import hostbatch


def test_every_public_name_resolves() -> None:
    for name in hostbatch.__all__:
        assert getattr(hostbatch, name) is not None, name


def test_public_api_does_not_import_paramiko() -> None:
    code = ("import sys, hostbatch\n"
            "for name in hostbatch.__all__: getattr(hostbatch, name)\n"
            "print('paramiko' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "False"
