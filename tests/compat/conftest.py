"""Fixtures for the weblablib compatibility suite.

Each lab in ``labs/`` is written the way a weblablib lab is (module-level ``app`` and
``weblab``, the seed's decorators), importing from labruntime. ``load_lab`` imports a fresh
copy of one on the test's Redis prefix; ``served`` serves it over real HTTP and gives a
:class:`~labruntime.testing.FakeRLMS` and :class:`Browser` students.
"""

from __future__ import annotations

import http.cookiejar
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from labruntime.drivers import known_schemes, unregister_scheme
from labruntime.testing import FakeRLMS, serve_app
from tests._helpers import load_module

LABS = Path(__file__).parent / "labs"
RLMS_USER, RLMS_PASSWORD = "weblabdeusto", "secret-rlms-password"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None


@dataclass
class Page:
    """One HTTP reply seen by the student's browser."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


class Browser:
    """A student's browser over real HTTP: keeps cookies, does not follow redirects."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def open(self, url: str, method: str = "GET", form: dict[str, str] | None = None) -> Page:
        if not url.startswith("http"):
            url = self.base_url + url
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        try:
            with self._opener.open(request, timeout=30) as reply:
                head = {k.lower(): v for k, v in reply.headers.items()}
                return Page(reply.status, head, reply.read())
        except urllib.error.HTTPError as error:
            head = {k.lower(): v for k, v in error.headers.items()}
            return Page(error.code, head, error.read())

    def get(self, url: str) -> Page:
        return self.open(url)

    def post(self, url: str, form: dict[str, str] | None = None) -> Page:
        return self.open(url, "POST", form or {})

    def enter(self, link: str) -> Page:
        """Open the RLMS link; follow the one redirect to the lab's initial URL."""
        first = self.get(link)
        assert first.status == 302, (first.status, first.text[:200])
        assert first.location
        return self.get(urllib.parse.urljoin(link, first.location))


@dataclass
class ServedLab:
    """A lab module served on a free port, with the RLMS that drives it."""

    module: ModuleType
    base_url: str
    rlms: FakeRLMS

    @property
    def app(self) -> Any:
        return self.module.app

    def browser(self) -> Browser:
        return Browser(self.base_url)

    def events(self) -> list[dict[str, Any]]:
        """What the lab wrote to its events file (on_start, on_dispose...)."""
        path = Path(self.app.instance_path) / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def import_lab(name: str) -> ModuleType:
    """Import a fresh copy of ``labs/<name>.py`` (it reads the LAB_* environment variables)."""
    return load_module(LABS / f"{name}.py", f"compat_{name}_{uuid.uuid4().hex[:8]}")


def forget_lab(module: ModuleType) -> None:
    """Stop a lab's threads and drop its module."""
    module.weblab.shutdown(module.app)
    sys.modules.pop(module.__name__, None)


@pytest.fixture
def lab_env(
    redis_url: str, redis_base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment the labs read their deployment settings from."""
    env = {
        "LAB_REDIS_URL": redis_url,
        "LAB_REDIS_BASE": redis_base,
        "LAB_INSTANCE": str(tmp_path / "instance"),
        "LAB_SECRET": uuid.uuid4().hex,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def load_lab(lab_env: dict[str, str]) -> Iterator[Callable[..., ModuleType]]:
    """Import a fresh copy of ``labs/<name>.py``; its threads are stopped afterwards, and the
    device schemes it registered (``register_scheme`` at import, as a lab does) are dropped, so
    that later tests see the process's own schemes only."""
    loaded: list[ModuleType] = []
    schemes_before = set(known_schemes())

    def load(name: str, **config: Any) -> ModuleType:
        module = import_lab(name)
        module.app.config.update(config)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        forget_lab(module)
    for scheme in set(known_schemes()) - schemes_before:
        unregister_scheme(scheme)


@pytest.fixture
def serve_lab(load_lab: Callable[..., ModuleType]) -> Iterator[Callable[..., ServedLab]]:
    """Serve a lab over real HTTP (optionally under a SCRIPT_NAME)."""
    stack: list[Any] = []

    def serve(name: str, *, script_name: str | None = None, style: str = "weblabdeusto",
              module: ModuleType | None = None) -> ServedLab:  # fmt: skip
        module = module or load_lab(name)
        server = serve_app(module.app, script_name=script_name)
        base_url = server.__enter__()
        stack.append(server)
        config = module.app.config
        prefix = config.get("WEBLAB_BASE_URL") or config.get("WEBLAB_BASE") or ""
        rlms = FakeRLMS(
            base_url + prefix, RLMS_USER, RLMS_PASSWORD, style=style, max_dispose_wait=30
        )
        return ServedLab(module, base_url, rlms)

    yield serve
    for server in reversed(stack):
        server.__exit__(None, None, None)
