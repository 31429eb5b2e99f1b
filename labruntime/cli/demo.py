"""``demo``: serve the demo lab on the embedded store and print a student's link."""

from __future__ import annotations

import click

from labruntime.errors import WebLabError

__all__ = ["demo"]


@click.command("demo")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on: 0.0.0.0 for every address (a headless Pi opened from another "
    "machine: the link printed then uses this machine's address).",
)
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(1, 65535),
    envvar="LABRUNTIME_DEMO_PORT",
    show_envvar=True,
    help="TCP port; checked first: a port in use is refused naming who uses it.",
)
@click.option(
    "--instance",
    default=None,
    help="Folder of the demo's data (its embedded Redis, secrets, build cache). "
    "Default: ~/.labruntime-demo.",
)
@click.option(
    "--dont-open-browser", is_flag=True, help="Only print the student's link (no browser)."
)
def demo(host: str, port: int, instance: str | None, dont_open_browser: bool) -> None:
    """Serve the demo lab on the embedded store and print a student's link.

    \b
    The demo's devices are simulated. Ctrl-C (or SIGTERM) stops it: devices driven safe,
    and the embedded Redis it started is stopped unless another process uses it (its data
    stays in the instance folder for next time). Logs: stderr.
    """
    from labruntime.demo import run_demo  # the demo's views and templates load only here

    try:
        run_demo(host, port, instance, open_browser=not dont_open_browser, echo=click.echo)
    except (WebLabError, OSError) as error:
        raise click.ClickException(str(error)) from None
