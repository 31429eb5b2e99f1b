"""What the benchmarks of bench/ share: the lab's config and views, the Redis, the table.

Imported on both sides of a side-by-side benchmark (this venv, and weblablib's venv where
labruntime is not installed), so only :func:`redis_url` imports labruntime, and only when run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from session_workload import PASSWORD, USER


def lab_config(redis_url: str, redis_base: str, **extra: Any) -> dict[str, Any]:
    """The Flask config of a benchmark lab (either library): no background thread."""
    return {
        "SECRET_KEY": "bench",
        "WEBLAB_USERNAME": USER,
        "WEBLAB_PASSWORD": PASSWORD,
        "WEBLAB_REDIS_URL": redis_url,
        "WEBLAB_REDIS_BASE": redis_base,
        "WEBLAB_NO_THREAD": True,
        **extra,
    }


def add_session_views(app: Any, weblab: Any, requires_active: Any, weblab_user: Any) -> None:
    """The session workload's lab: ``/lab/read`` and ``/lab/write`` behind ``@requires_active``.

    The library's own ``requires_active`` and ``weblab_user`` are passed in, so labruntime
    and weblablib run the very same views.
    """

    @weblab.initial_url
    def initial_url() -> str:
        return "/lab/read"

    @weblab.on_start
    def on_start(client_data: dict, server_data: dict) -> dict:
        return {"visits": 0}

    @app.route("/lab/read")
    @requires_active
    def read() -> str:
        return f"hello {weblab_user.username}"

    @app.route("/lab/write")
    @requires_active
    def write() -> str:
        weblab_user.data["visits"] = weblab_user.data.get("visits", 0) + 1
        return f"visit {weblab_user.data['visits']}"


@contextmanager
def redis_url() -> Iterator[str]:
    """``$WEBLAB_REDIS_URL``, or an embedded Redis in a temporary folder (stopped at the end)."""
    url = os.environ.get("WEBLAB_REDIS_URL")
    if url:
        yield url
        return
    from labruntime.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="lrbench") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        try:
            yield server.ensure_running()
        finally:
            server.stop()


class Row(NamedTuple):
    """One line of a comparison table: ``figures[section][key]``, labelled."""

    section: str
    key: str
    label: str
    higher_better: bool = False


def comparison_table(
    rows: list[Row], ours: dict[str, Any], theirs: dict[str, Any] | None, *, width: int, digits: int
) -> str:
    """labruntime | weblablib | ratio (how many times better labruntime is; - without both)."""
    lines = [f"{'':{width}} {'labruntime':>11} {'weblablib':>11} {'ratio':>8}"]
    for row in rows:
        a = ours[row.section][row.key]
        b = theirs[row.section][row.key] if theirs else None
        ratio = "       -"
        if b is not None and a and b:
            ratio = f"{(a / b if row.higher_better else b / a):7.1f}x"
        b_text = f"{b:11.{digits}f}" if b is not None else f"{'-':>11}"
        lines.append(f"{row.label:{width}} {a:11.{digits}f} {b_text} {ratio}")
    return "\n".join(lines)
