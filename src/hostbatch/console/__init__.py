"""``hostbatch console``: an interactive prompt that keeps one connection per host open.

:mod:`.specials` parses what is typed (special commands, ``!CMD``, remote commands) and
completes it; :mod:`.terminal` holds the readline side (history file, completion, idle
timeout); :mod:`.command` runs one remote command through the standing workers
(:mod:`hostbatch.engine.standing`) with ``batch_run``'s renderers, summary and history; and
:mod:`.session` is the loop that ties them together. The command line lives in
:mod:`hostbatch.cli.console`.
"""
