"""Relays: the same engine run on a machine near a shard of the fleet, driven over SSH.

* :mod:`.protocol`: the versioned line protocol of JSON objects between controller and relay.
* :mod:`.server`: ``hostbatch relay --stdio``, the relay's side.
* :mod:`.shard`: the controller's side, one worker thread per shard.
* :mod:`.hostkeys`: the known_hosts lines a shard's relay needs.
* :mod:`.staging`: a put's source, sent to the relay once.
* :mod:`.fetch` and :mod:`.landing`: a get's files, sent back by the relay and landed by the
  controller.
"""
