"""The two command groups: ``labruntime --app X ...`` and ``flask --app X weblab ...``.

Both hold the same commands, each defined once in its group's module (see
:mod:`labruntime.cli`) and added here. Errors end as one line on stderr and a non-zero exit,
never a traceback (:mod:`.app`).
"""

from __future__ import annotations

import sys

import click
from flask.cli import ScriptInfo

from .demo import demo
from .devices import device_group, sim_group
from .redis_server import redis_group
from .sessions import clean_expired_users, fake
from .tasks import loop_command, run_tasks_command

__all__ = ["COMMANDS", "main", "weblab_group"]

COMMANDS: tuple[click.Command, ...] = (
    fake,
    clean_expired_users,
    redis_group,
    demo,
    run_tasks_command,
    loop_command,
    device_group,
    sim_group,
)


@click.group("labruntime")
@click.option("--app", "app_path", envvar="FLASK_APP", help="The lab: module:app or module.")
@click.pass_context
def main(ctx: click.Context, app_path: str | None) -> None:
    """labruntime: run and operate a remote laboratory."""
    ctx.obj = ScriptInfo(app_import_path=app_path)


@click.group("weblab")
def weblab_group() -> None:
    """labruntime: sessions, tasks and devices of this lab."""


for _command in COMMANDS:
    main.add_command(_command)
    weblab_group.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
