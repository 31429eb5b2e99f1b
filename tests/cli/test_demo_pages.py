"""The demo's forbidden and "session over" pages are styled and lead somewhere: the ``back``
link goes to the demo's laboratory list, which books a new session; no page leads to itself."""

from __future__ import annotations

import re

import pytest

from labruntime.testing import FakeRLMS
from tests._helpers import running_demo


@pytest.fixture
def demo(tmp_path, redis_url, redis_base):
    with running_demo(
        tmp_path,
        redis_url,
        redis_base,
        WEBLAB_AUTOCLEAN_THREAD=False,
        WEBLAB_TASK_THREADS_PROCESS=0,
        WEBLAB_DEVICES={},
    ) as app:
        yield app


def test_a_browser_without_a_session_gets_a_styled_page_with_a_way_in(demo):
    page = demo.test_client().get("/")
    body = page.data.decode()
    assert page.status_code == 403 and "demo.css" in body and "No session in this lab" in body
    assert 'action="/rlms/start"' in body


def test_the_session_over_page_leads_to_a_new_session_not_to_itself(demo):
    rlms = FakeRLMS.for_app(demo)
    started = rlms.start(back="http://localhost/rlms/", username="ada", style="labsland")
    student = rlms.client
    assert student.get(started.url).status_code == 302
    assert student.post("/leave").status_code == 200
    over = student.get("/").data.decode()
    assert "Your session is over" in over and "demo.css" in over
    back = re.search(r'id="back-link"[^>]*href="([^"]+)"', over) or re.search(
        r'href="([^"]+)"[^>]*id="back-link"', over
    )
    assert back and back.group(1) == "http://localhost/rlms/"
    listing = student.get("/rlms/")
    assert listing.status_code == 200 and "Start a new session" in listing.data.decode()
    again = student.post("/rlms/start", headers={"Sec-Fetch-Site": "same-origin"})
    assert again.status_code == 303 and "/callback/" in again.headers["Location"]
    assert student.get(again.headers["Location"]).status_code == 302
    assert "Hello" in student.get("/").data.decode()  # in, with the new session


def test_another_site_cannot_book_sessions(demo):
    client = demo.test_client()
    refused = client.post("/rlms/start", headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
