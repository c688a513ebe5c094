"""The SSH layer: the only package that imports paramiko.

It runs inside worker processes (the parent imports it only to read ssh_config files and to
check key passphrases). :mod:`.connect` opens sessions; a :class:`.session.Session` is the
whole interface the engine sees (``run``, ``put``, ``get``, ``scan_key``, ``close``), driven
by a :class:`.context.HostContext`. :mod:`.shell` holds every piece of shell text sent to a
host.
"""
