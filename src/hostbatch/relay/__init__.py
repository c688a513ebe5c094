"""Relays: the same engine run on a machine near a shard of the fleet, driven over SSH.

* :mod:`.protocol`: the versioned line protocol of JSON objects between controller and relay.
* :mod:`.server`: ``hostbatch relay --stdio``, the relay's side.
* :mod:`.shard`: the controller's side, one worker thread per shard.
* :mod:`.hostkeys`: the known_hosts lines a shard's relay needs.
"""
