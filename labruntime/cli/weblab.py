"""The ``weblab`` command group: ``flask --app LAB weblab ...``, one object for every app.

``WebLab.init_app`` adds it to ``app.cli`` (as weblablib does, so ``app.test_cli_runner()``
and a lab run from a source tree have it), next to the seed's top-level ``run-tasks`` and
``clean-expired-users``; the ``flask.commands`` entry points name these same objects, so
``flask`` lists each once. The lab's commands only: the ``labruntime`` group (:mod:`.main`)
adds ``demo``, which serves the demo lab whatever ``--app`` says.
"""

from __future__ import annotations

import click

from .devices import device_group, sim_group
from .redis_server import redis_group
from .sessions import clean_expired_users, fake
from .tasks import loop_command, run_tasks_command

__all__ = ["LAB_COMMANDS", "TOP_LEVEL_COMMANDS", "weblab_group"]

#: the commands that act on the lab given by ``--app`` (in both groups)
LAB_COMMANDS: tuple[click.Command, ...] = (
    fake,
    clean_expired_users,
    redis_group,
    run_tasks_command,
    loop_command,
    device_group,
    sim_group,
)
#: the seed's top-level ``flask clean-expired-users`` / ``flask run-tasks`` (cron lines)
TOP_LEVEL_COMMANDS: tuple[click.Command, ...] = (clean_expired_users, run_tasks_command)


@click.group("weblab")
def weblab_group() -> None:
    """labruntime: sessions, tasks and devices of this lab."""


for _command in LAB_COMMANDS:
    weblab_group.add_command(_command)
