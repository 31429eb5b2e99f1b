"""Fixtures of the security suite: a lab on the test's Redis prefix with a state-changing view.

``lab`` is a :class:`SecLab` on Flask's test client (headers and bodies as a client sends
them); tests that need real sockets serve it with ``labruntime.testing.serve_app``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, render_template_string, request, url_for

from labruntime import WebLab, requires_active, weblab_user
from tests._labs import PASSWORD, USER, lab_app

S = "/weblab/sessions/"
BACK = "https://rlms.example/back"


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def server_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "priority.queue.slot.length": "300",
        "request.username": "ana",
        "request.username.unique": "ana@uni",
        "request.full_name": "Ana",
        "request.locale": "es",
    }
    data.update(extra)
    return data


class SecLab:
    """The app, its WebLab and helpers speaking the RLMS protocol through the test client."""

    def __init__(self, app: Flask, weblab: WebLab) -> None:
        self.app = app
        self.weblab = weblab
        self.client = app.test_client()
        self.changes: list[str] = []  # who reached the state-changing view

    def start(self, back: Any = BACK, **body: Any) -> Any:
        payload = {"client_initial_data": {}, "server_initial_data": server_data(), "back": back}
        payload.update(body)
        return self.client.post(S, json=payload, headers={"Authorization": basic()})

    def new_session(self, username: str = "ana", client: Any = None) -> str:
        payload = {
            "client_initial_data": {},
            "server_initial_data": server_data(
                **{"request.username": username, "request.full_name": username.title()}
            ),
            "back": BACK,
        }
        reply = (client or self.client).post(S, json=payload, headers={"Authorization": basic()})
        assert reply.status_code == 200 and "session_id" in reply.get_json(), reply.data
        return str(reply.get_json()["session_id"])


def build_lab(redis_url: str, redis_base: str, instance: str) -> SecLab:
    """The security suite's lab: ``/lab/`` (a page with the poll script; ``?close=1``: it
    logs out when the page closes; ``?bare=1``: no script) and ``POST /lab/change`` (records
    who reached it), both behind ``@requires_active``."""
    app = lab_app("seclab", redis_url, redis_base, instance)
    weblab = WebLab(app)
    secure = SecLab(app, weblab)

    @weblab.initial_url
    def initial() -> str:
        return url_for("page")

    @app.route("/lab/")
    @requires_active
    def page() -> str:
        close = bool(request.args.get("close"))  # ?close=1: log out when the page closes
        script = render_template_string("{{ weblab_poll_script(logout_on_close=c) }}", c=close)
        return f"hello {weblab_user.username}" + ("" if request.args.get("bare") else script)

    @app.route("/lab/change", methods=["POST"])
    @requires_active
    def change() -> Any:
        secure.changes.append(str(weblab_user.username))
        return {"changed": True}

    return secure


@pytest.fixture
def lab(redis_url: str, redis_base: str, tmp_path: Any) -> Iterator[SecLab]:
    secure = build_lab(redis_url, redis_base, str(tmp_path / "instance"))
    yield secure
    secure.weblab.shutdown(secure.app)
