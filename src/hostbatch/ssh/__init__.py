"""The SSH layer: the only package that imports paramiko.

It runs inside worker processes. :mod:`.session` opens an authenticated, host-key-verified
connection; :mod:`.command` runs one command on it and streams its output.
"""
