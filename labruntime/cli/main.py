"""The two command groups: ``labruntime --app X ...`` and ``flask --app X weblab ...``.

Both hold the same lab commands, each defined once in its group's module (see
:mod:`labruntime.cli`); the ``weblab`` group is defined in :mod:`.weblab` (``init_app`` adds it
to ``app.cli``), ``labruntime`` adds ``demo``. Errors end as one line on stderr and a non-zero
exit, never a traceback (:mod:`.app`).
"""

from __future__ import annotations

import sys

import click
from flask.cli import ScriptInfo

from .demo import demo
from .logs import configure_logging
from .weblab import LAB_COMMANDS, weblab_group

__all__ = ["COMMANDS", "main", "weblab_group"]

COMMANDS: tuple[click.Command, ...] = (*LAB_COMMANDS, demo)


@click.group("labruntime", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--app",
    "app_path",
    envvar="FLASK_APP",
    help="The lab: module:app, module, or a file (mylab.py). Default: $FLASK_APP.",
)
@click.version_option(package_name="labruntime", prog_name="labruntime")
@click.pass_context
def main(ctx: click.Context, app_path: str | None) -> None:
    """labruntime: run and operate a remote laboratory.

    Logs go to stderr at INFO (LABRUNTIME_LOG_LEVEL changes it); under systemd, journald
    keeps them: journalctl -u UNIT.
    """
    configure_logging()
    ctx.obj = ScriptInfo(app_import_path=app_path)


for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
