"""Issue 11, "Student side": the session cookie, logout, the callback link and state-changing
requests sent by another site's page."""

from __future__ import annotations

import pytest
from flask import Flask

from labruntime import WebLab
from tests._labs import lab_app

from .conftest import BACK, SecLab

LAB = "http://localhost"  # the test client's host


def _cookie_header(reply) -> str:
    cookies = [v for k, v in reply.headers.items() if k.lower() == "set-cookie"]
    assert len(cookies) == 1, cookies
    return cookies[0]


def test_the_session_cookie_is_samesite_lax_by_default(lab: SecLab) -> None:
    session_id = lab.new_session()
    header = _cookie_header(lab.client.get(f"/callback/{session_id}"))
    assert "SameSite=Lax" in header and "HttpOnly" in header and "Secure" not in header


@pytest.mark.parametrize(
    "config,expected,absent",
    [
        ({"SESSION_COOKIE_SAMESITE": "Strict"}, ["SameSite=Strict"], ["Secure"]),
        ({"WEBLAB_SCHEME": "https"}, ["SameSite=Lax", "Secure"], []),
    ],
)
def test_cookie_attributes_follow_the_lab(
    redis_url: str, redis_base: str, tmp_path, config, expected, absent
) -> None:
    app: Flask = lab_app("cookie", redis_url, redis_base, str(tmp_path), **config)
    weblab = WebLab(app)
    weblab.initial_url(lambda: "/lab/")
    try:
        lab = SecLab(app, weblab)
        header = _cookie_header(lab.client.get(f"/callback/{lab.new_session()}"))
        assert all(word in header for word in expected), header
        assert not any(word in header for word in absent), header
    finally:
        weblab.shutdown(app)


def _active(lab: SecLab) -> bool:
    return lab.client.get("/lab/").status_code == 200


def test_logout_needs_a_post(lab: SecLab) -> None:
    session_id = lab.new_session()
    lab.client.get(f"/callback/{session_id}")
    reply = lab.client.get(f"/callback/{session_id}/logout")  # an <img src=...> on any page
    assert reply.status_code == 405 and reply.headers["Allow"] == "POST"
    assert reply.get_json()["success"] is False and _active(lab)
    reply = lab.client.post(f"/callback/{session_id}/logout", headers={"Origin": LAB})
    assert reply.get_json() == {"success": True, "back": BACK}
    assert lab.client.get("/lab/").status_code == 302  # ended: back to the RLMS


def test_weblablibs_jquery_logout_on_close_still_works(lab: SecLab) -> None:
    """weblablib's poll script logs out on page close with jQuery's ``$.get``."""
    session_id = lab.new_session()
    lab.client.get(f"/callback/{session_id}")
    reply = lab.client.get(
        f"/callback/{session_id}/logout", headers={"X-Requested-With": "XMLHttpRequest"}
    )
    assert reply.status_code == 200 and reply.get_json()["success"] is True
    assert not _active(lab)


def test_labruntimes_poll_script_logs_out_with_a_post(lab: SecLab) -> None:
    session_id = lab.new_session()
    lab.client.get(f"/callback/{session_id}")
    with lab.app.test_request_context("/lab/"):
        from flask import session

        session[lab.app.config.get("WEBLAB_SESSION_ID_NAME", "weblab_session_id")] = session_id
        script = str(lab.weblab.poll_script(logout_on_close=True))
    assert "navigator.sendBeacon" in script  # sendBeacon is always a POST
    assert "method: 'POST'" in script


def test_a_cross_site_logout_post_is_refused(lab: SecLab) -> None:
    session_id = lab.new_session()
    lab.client.get(f"/callback/{session_id}")
    reply = lab.client.post(
        f"/callback/{session_id}/logout", headers={"Origin": "https://evil.example"}
    )
    assert reply.status_code == 403 and _active(lab)


def test_a_second_link_does_not_replace_an_active_session_without_confirmation(
    lab: SecLab,
) -> None:
    mine = lab.new_session("ana")
    assert lab.client.get(f"/callback/{mine}").status_code == 302
    theirs = lab.new_session("mallory")  # a link an attacker got for their own slot
    page = lab.client.get(f"/callback/{theirs}")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "method='post'" in html and "Ana" in html and "Mallory" in html
    assert lab.client.get("/lab/?bare=1").get_data(as_text=True) == "hello ana"  # still mine
    forged = lab.client.post(f"/callback/{theirs}", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert lab.client.get("/lab/?bare=1").get_data(as_text=True) == "hello ana"
    assert page.headers["Referrer-Policy"] == "same-origin"  # its own form keeps its Origin
    confirmed = lab.client.post(f"/callback/{theirs}", headers={"Origin": LAB})
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == "/lab/"
    assert lab.client.get("/lab/?bare=1").get_data(as_text=True) == "hello mallory"


def test_a_new_link_replaces_a_session_that_is_over(lab: SecLab) -> None:
    first = lab.new_session("ana")
    lab.client.get(f"/callback/{first}")
    lab.client.post(f"/callback/{first}/logout")
    second = lab.new_session("ana")  # the next booking of the same student
    assert lab.client.get(f"/callback/{second}").status_code == 302
    assert lab.client.get("/lab/").status_code == 200


def test_the_same_link_twice_just_enters(lab: SecLab) -> None:
    session_id = lab.new_session()
    assert lab.client.get(f"/callback/{session_id}").status_code == 302
    assert lab.client.get(f"/callback/{session_id}").status_code == 302


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a no-referrer form
        {"Origin": "http://localhost.evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Origin": LAB},
        {"Sec-Fetch-Site": "same-site"},
        {"Referer": "https://evil.example/page"},
    ],
)
def test_a_state_changing_request_from_another_site_is_refused(
    lab: SecLab, headers, caplog
) -> None:
    lab.client.get(f"/callback/{lab.new_session()}")
    reply = lab.client.post("/lab/change", headers=headers)
    assert reply.status_code == 403 and "Refused" in reply.get_data(as_text=True)
    assert "refused a cross-site POST to /lab/change" in caplog.text
    assert lab.changes == []
    assert lab.client.post("/lab/change", json={}, headers=headers).get_json()["error"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": LAB},
        {"Origin": "https://localhost"},  # a proxy ending TLS: the lab sees http
        {"Sec-Fetch-Site": "same-origin", "Origin": LAB},
        {"Sec-Fetch-Site": "same-origin", "Origin": "null"},  # a no-referrer page's own form
        {"Referer": LAB + "/lab/"},
        {},  # no browser header at all: not a browser's cross-site request
    ],
)
def test_the_labs_own_page_may_change_state(lab: SecLab, headers) -> None:
    lab.client.get(f"/callback/{lab.new_session()}")
    reply = lab.client.post("/lab/change", headers=headers)
    assert reply.status_code == 200 and lab.changes == ["ana"]


def test_a_cross_site_get_is_not_refused(lab: SecLab) -> None:
    """Links from elsewhere to the lab's pages keep working (only state changes are checked)."""
    lab.client.get(f"/callback/{lab.new_session()}")
    reply = lab.client.get("/lab/", headers={"Sec-Fetch-Site": "cross-site"})
    assert reply.status_code == 200


def test_the_confirmation_form_posts_under_the_labs_prefix(lab: SecLab) -> None:
    """Behind nginx the lab lives under SCRIPT_NAME (e.g. /lab1): the form must post there."""
    prefixed = "http://localhost/lab1"
    mine = lab.new_session("ana")
    assert lab.client.get(f"/callback/{mine}", base_url=prefixed).status_code == 302
    theirs = lab.new_session("mallory")
    page = lab.client.get(f"/callback/{theirs}", base_url=prefixed).get_data(as_text=True)
    assert f"action='/lab1/callback/{theirs}'" in page, page


@pytest.mark.parametrize(
    "host,origin,allowed",
    [
        ("lab.example.org", "https://lab.example.org:8443", True),  # nginx's $host: no port
        ("lab.example.org", "https://evil.example.org:8443", False),
        ("127.0.0.1:5000", "http://127.0.0.1:5000", True),
        ("127.0.0.1:5000", "http://127.0.0.1:5001", False),
        ("[::1]:5000", "http://[::1]:5000", True),
        ("[::1]:5000", "http://[::2]:5000", False),
    ],
)
def test_origin_and_host_are_compared_as_a_proxy_forwards_them(
    lab: SecLab, host: str, origin: str, allowed: bool
) -> None:
    base_url = f"http://{host}"
    lab.client.get(f"/callback/{lab.new_session()}", base_url=base_url)
    reply = lab.client.post("/lab/change", base_url=base_url, headers={"Origin": origin})
    assert (reply.status_code == 200) is allowed, (reply.status_code, reply.data[:100])
