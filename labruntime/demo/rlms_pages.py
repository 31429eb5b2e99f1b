"""The demo's stand-in for the RLMS's own pages, styled like the lab, so that a student is
never sent in circles: ``GET /rlms/`` is where the ``back`` link leads (the "laboratory list":
a button that books a new ten-minute session), and the forbidden page (a browser without a
session, or with one that has ended) offers the same button. ``POST /rlms/start`` books it
the way an RLMS does (a start request with the lab's credentials) and sends the browser to the
new session's link; a POST another site's page sends is refused.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from flask import Flask, abort, redirect, render_template, request, url_for

from labruntime.testing import FakeRLMS

__all__ = ["FORBIDDEN_TEMPLATE", "register_rlms_pages"]

FORBIDDEN_TEMPLATE = "demo_forbidden.html"


def _same_site() -> bool:
    """The POST comes from this demo's own page (what browsers say), or from no browser."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site.lower() in ("same-origin", "none")
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin:
        return True
    return urllib.parse.urlsplit(origin).netloc == request.host


def register_rlms_pages(app: Flask) -> None:
    """Add ``/rlms/`` and ``/rlms/start`` to the demo app."""

    @app.route("/rlms/")
    def rlms_list() -> Any:
        return render_template("demo_rlms.html")

    @app.route("/rlms/start", methods=["POST"])
    def rlms_start() -> Any:
        if not _same_site():
            abort(403)
        rlms = FakeRLMS.for_app(app)
        started = rlms.start(
            back=url_for("rlms_list", _external=True),
            username="student",
            full_name="Demo Student",
            assigned_time=600,
            style="labsland",
        )
        return redirect(started.url, code=303)
