"""``python -m labruntime.cli ...``: the ``labruntime`` command."""

from labruntime.cli.main import main

main()
