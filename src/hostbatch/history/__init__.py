"""The memory of every run: a SQLite history of what ran where, and how it ended.

* :mod:`~hostbatch.history.store`: where the database lives, reads and writes;
* :mod:`~hostbatch.history.schema`: its tables, and the upgrade of older databases;
* :mod:`~hostbatch.history.blobs`: each run's output bytes, in a file of its own;
* :mod:`~hostbatch.history.recorder`: records a live run from its events, scrubbing secrets;
* :mod:`~hostbatch.history.replay`: turns a recorded run back into the same events;
* :mod:`~hostbatch.history.selectors`: the ``@failed`` / ``@ok`` host-list shortcuts;
* :mod:`~hostbatch.history.diff`: what changed per host between two runs.

Importing this package is cheap; ``sqlite3`` is loaded only by the modules that need it.
"""

#: Stored output per host (stdout and stderr together) before the rest is cut.
DEFAULT_OUTPUT_CAP = 1 << 20
