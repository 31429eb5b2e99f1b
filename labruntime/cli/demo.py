"""``demo``: serve the demo lab on the embedded store and print a student's link."""

from __future__ import annotations

import click

from labruntime.errors import WebLabError

__all__ = ["demo"]


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--instance", default=None, help="Instance folder (default: ~/.labruntime-demo).")
@click.option("--dont-open-browser", is_flag=True)
def demo(host: str, port: int, instance: str | None, dont_open_browser: bool) -> None:
    """Serve the demo lab on the embedded store and print a student's link."""
    from labruntime.demo import run_demo  # the demo's views and templates load only here

    try:
        run_demo(host, port, instance, open_browser=not dont_open_browser, echo=click.echo)
    except (WebLabError, OSError) as error:
        raise click.ClickException(str(error)) from None
