"""The demo lab's state-changing routes (``/program``, ``/leave``) refuse another site's page,
and its "session over" page links only to an http(s) ``back``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labruntime.testing import FakeRLMS
from tests._helpers import running_demo

EVIL = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
OWN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
BACK = "https://rlms.example/labs"


@pytest.fixture
def demo(tmp_path: Path, redis_url: str, redis_base: str) -> Iterator[Any]:
    with running_demo(
        tmp_path,
        redis_url,
        redis_base,
        WEBLAB_AUTOCLEAN_THREAD=False,
        WEBLAB_TASK_THREADS_PROCESS=0,  # nothing is programmed: the refusal comes first
    ) as app:
        yield app


def test_cross_site_program_and_leave_are_refused(demo: Any) -> None:
    rlms = FakeRLMS.for_app(demo)
    started = rlms.start(username="ada", back=BACK)
    client = rlms.client
    assert client.get(started.url).status_code == 302
    assert client.post("/program", data={"example": "blink"}, headers=EVIL).status_code == 403
    assert client.post("/leave", headers=EVIL).status_code == 403
    assert client.get("/state").get_json()["active"] is True  # still in the session
    left = client.post("/leave", headers=OWN)
    assert left.status_code == 200 and left.get_json()["back"] == BACK
    page = client.get("/").get_data(as_text=True)
    assert f'href="{BACK}"' in page and "Your session is over" in page


def test_the_demo_is_refused_a_hostile_back(demo: Any) -> None:
    rlms = FakeRLMS.for_app(demo)
    reply = rlms.request(
        "POST",
        "",
        {"server_initial_data": FakeRLMS.server_initial_data(), "back": "javascript:alert(1)"},
    )
    assert reply.status == 400 and "back" in reply.json()["message"]
