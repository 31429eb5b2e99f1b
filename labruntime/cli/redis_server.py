"""``redis start|status|stop``: the lab's embedded Redis server (when WEBLAB_REDIS_URL is
unset)."""

from __future__ import annotations

import click

from labruntime.state import LabState
from labruntime.store.embedded import EmbeddedRedis, EmbeddedRedisError, embedded_redis_directory

from .app import app_command

__all__ = ["redis_group"]


@click.group("redis")
def redis_group() -> None:
    """The embedded Redis server of the lab (when WEBLAB_REDIS_URL is unset)."""


def _embedded(state: LabState) -> EmbeddedRedis:
    if state.config.redis_url:
        raise click.ClickException("WEBLAB_REDIS_URL is set: that server is not labruntime's")
    try:
        return EmbeddedRedis(embedded_redis_directory(state.app.instance_path))
    except EmbeddedRedisError as error:
        raise click.ClickException(str(error)) from None


@redis_group.command("start")
@app_command
def redis_start(state: LabState) -> None:
    """Start the embedded Redis server (no-op when it runs); print its URL."""
    try:
        click.echo(_embedded(state).ensure_running())
    except EmbeddedRedisError as error:
        raise click.ClickException(str(error)) from None


@redis_group.command("status")
@app_command
def redis_status(state: LabState) -> None:
    """Say whether the embedded Redis server runs (exit 1 when it does not)."""
    server = _embedded(state)
    if not server.running:
        click.echo(f"not running ({server.directory})")
        raise SystemExit(1)
    click.echo(f"running, pid {server.pid}, {server.url}")


@redis_group.command("stop")
@app_command
def redis_stop(state: LabState) -> None:
    """Stop the embedded Redis server (data is kept; the next use starts it again)."""
    stopped = _embedded(state).stop()
    click.echo("stopped" if stopped else "it was not running")
