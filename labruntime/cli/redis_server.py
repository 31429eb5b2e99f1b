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
        server = EmbeddedRedis(embedded_redis_directory(state.app.instance_path))
        server.check_owner()
        return server
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
    """Say whether the embedded Redis server runs (exit 1 when it does not); never starts it."""
    server = _embedded(state)
    if not server.running:
        click.echo(f"not running ({server.directory})")
        raise SystemExit(1)
    clients = server.clients()
    click.echo(f"running, pid {server.pid}, {server.url}, {clients} client connection(s)")


@redis_group.command("stop")
@app_command
def redis_stop(state: LabState) -> None:
    """Stop the embedded Redis server (data is kept; the next use starts it again)."""
    server = _embedded(state)
    clients = server.clients()
    if clients:
        click.echo(
            f"Warning: {clients} connection(s) of the lab's processes use it; they fail "
            "until it runs again",
            err=True,
        )
    stopped = server.stop()
    click.echo("stopped" if stopped else "it was not running")
