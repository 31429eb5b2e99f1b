"""The CLI in-process (click's runner), on a lab app given through Flask's ScriptInfo."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from flask.cli import ScriptInfo

from labruntime.cli.main import main, weblab_group


@pytest.fixture
def cli(make_lab):
    lab = make_lab()
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(weblab_group, list(args), obj=ScriptInfo(create_app=lambda: lab.app))

    return lab, invoke


def test_fake_new_status_dispose(cli, tmp_path):
    lab, invoke = cli
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps({"program": "blink"}))
    made = invoke(
        "fake", "new", "--dont-open-browser", "--name", "Ada Lovelace", "--username", "ada",
        "--assigned-time", "120", "--locale", "es", "--client-initial-data-file", str(data_file),
        "--url-base", "http://lab.example.org:8000",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    session_id = made.output.split()[1]
    assert f"open: http://lab.example.org:8000/callback/{session_id}" in made.output
    client_data, server_data = lab.started[0]
    assert client_data == {"program": "blink"}
    assert server_data["request.full_name"] == "Ada Lovelace"
    assert server_data["request.username"] == "ada"
    assert server_data["request.username.unique"] == "john.smith@institution"
    status = invoke("fake", "status")
    assert status.exit_code == 0 and status.output.strip() == "Should finish: 5"
    disposed = invoke("fake", "dispose")
    assert json.loads(disposed.output) == {"message": "Deleted"}
    assert lab.disposed == [session_id]
    assert invoke("fake", "status").output.strip() == "Should finish: -1"


def test_fake_new_inline_data_and_bad_data(cli):
    lab, invoke = cli
    made = invoke("fake", "new", "--dont-open-browser", "--client-initial-data", '{"a": [1]}')
    assert made.exit_code == 0 and lab.started[0][0] == {"a": [1]}
    bad = invoke("fake", "new", "--dont-open-browser", "--client-initial-data", "[1, 2]")
    assert bad.exit_code == 2 and "must be a JSON object" in bad.output


def test_fake_refused_by_the_lab(cli):
    lab, invoke = cli

    @lab.replace_hook("on_start")
    def broken(client, server):
        raise RuntimeError("no board today")

    refused = invoke("fake", "new", "--dont-open-browser")
    assert refused.exit_code == 1 and "no board today" in refused.output


def test_status_without_fake_session(cli):
    lab, invoke = cli
    result = invoke("fake", "status")
    assert result.exit_code == 1 and "fake new" in result.output


def test_clean_expired_users(cli):
    lab, invoke = cli
    sid = lab.new_session(sd=lab.server_data(**{"priority.queue.slot.start.timestamp": 1.0}))
    result = invoke("clean-expired-users")
    assert result.exit_code == 0 and "1 session(s) ended" in result.output
    assert lab.disposed == [sid]
    assert lab.state.cleaner is None  # a CLI command starts no background thread


def test_both_groups_have_the_same_commands():
    assert set(main.commands) == set(weblab_group.commands) | {"demo"}  # demo: its own lab
    assert {"fake", "clean-expired-users", "redis", "demo"} <= set(main.commands)
