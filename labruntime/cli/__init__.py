"""The command line: ``labruntime --app LAB ...`` and ``flask --app LAB weblab ...``.

- :mod:`.weblab`: the ``weblab`` group (``init_app`` adds it to ``app.cli``); :mod:`.main`:
  the ``labruntime`` group (the same commands, and ``demo``);
- :mod:`.app`: the one way a command loads the lab and turns errors into one line;
- one module per command group: :mod:`.sessions` (``fake``, ``clean-expired-users``),
  :mod:`.tasks` (``run-tasks``, ``loop``), :mod:`.devices` (``device check|program|status``,
  ``sim arduino``), :mod:`.redis_server` (``redis start|status|stop``), :mod:`.demo`.
"""
