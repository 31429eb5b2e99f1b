"""Integration over real HTTP: a served lab driven by the fake RLMS, a student with cookies."""

from __future__ import annotations

import http.cookiejar
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from labruntime.testing import FakeRLMS, serve_app
from tests._labs import PASSWORD, USER


class _LocalRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects on 127.0.0.1 only (``back`` points at the RLMS, not served here)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).hostname != "127.0.0.1":
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def browser() -> urllib.request.OpenerDirector:
    """A student's browser: cookies kept, redirects followed on the lab's host."""
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _LocalRedirects()
    )


@pytest.mark.parametrize("style", ["weblabdeusto", "labsland"])
@pytest.mark.parametrize("encoding", ["json", "api0", "form"])
def test_full_session_over_http(make_lab, style, encoding):
    lab = make_lab()
    with serve_app(lab.app, script_name="/lab1") as base_url:
        rlms = FakeRLMS(base_url, USER, PASSWORD, style=style)
        assert rlms.api()["api_version"] == "1"
        assert rlms.test()["valid"] is True
        started = rlms.start({"level": 2}, username="ana", assigned_time=120, encoding=encoding)
        assert started.url == f"{base_url}/callback/{started.session_id}"
        student = browser()
        with student.open(started.url) as page:
            assert page.geturl() == f"{base_url}/lab/"
            assert page.read() == b"hello ana 1"
        assert rlms.status(started.session_id) == 5
        assert rlms.bulk_status([started.session_id]) == {started.session_id: 5}
        assert rlms.dispose(started.session_id) == {"message": "Deleted"}
        assert rlms.status(started.session_id) == -1
        assert rlms.dispose(started.session_id) == {"message": "Deleted"}  # idempotent
        with pytest.raises(urllib.error.HTTPError) as info:  # not followed: another site
            student.open(f"{base_url}/lab/")
        info.value.close()
        assert info.value.code == 302
        assert info.value.headers["Location"] == "http://rlms.invalid/back"
    assert lab.started[0][0] == {"level": 2}
    assert lab.disposed == [started.session_id]


def test_https_scheme_link_over_http(make_lab):
    lab = make_lab(WEBLAB_SCHEME="https")
    with serve_app(lab.app) as base_url:
        rlms = FakeRLMS(base_url, USER, PASSWORD)
        started = rlms.start()
        assert started.url.startswith("https://127.0.0.1:")


def test_wrong_credentials_over_http(make_lab):
    lab = make_lab()
    with serve_app(lab.app) as base_url:
        request = urllib.request.Request(f"{base_url}/weblab/sessions/test")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request)
        info.value.close()
        assert info.value.code == 401
        assert info.value.headers["WWW-Authenticate"].startswith("Basic realm=")


@pytest.mark.slow
def test_many_students_at_once(make_lab):
    lab = make_lab()
    with serve_app(lab.app) as base_url:
        rlms = FakeRLMS(base_url, USER, PASSWORD)
        sessions = [rlms.start(username=f"s{i}") for i in range(20)]
        errors = []

        def student(url: str) -> None:
            try:
                opener = browser()
                with opener.open(url) as page:
                    page.read()
                for _ in range(5):
                    with opener.open(f"{base_url}/lab/") as page:
                        page.read()
            except Exception as error:  # collected and asserted below
                errors.append(error)

        threads = [threading.Thread(target=student, args=(s.url,)) for s in sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        ids = [s.session_id for s in sessions]
        assert set(rlms.bulk_status(ids).values()) == {5}
        for session_id in ids:
            rlms.dispose(session_id)
        with lab.app.app_context():
            visits = [lab.state.load_user(i).data["visits"] for i in ids]
        assert visits == [6] * 20
    assert sorted(lab.disposed) == sorted(ids)
