"""`iotbutton sandbox hook` and the webhook sink's entries in `sandbox outbox`, through the CLI,
against the real background sandbox process (one for the whole story), with real HTTP posts."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.sandbox import outbox


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def one_error_line(result: Any) -> str:
    """The error of a failed command: one `Error:` line and one `Hint:` line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["Error", "Hint"], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return str(lines[0])


def test_hook_sets_what_the_sink_answers_and_outbox_shows_what_it_received(cli, sandbox):
    hooks_url = sandbox["hooks_url"]
    assert hooks_url.startswith("http://127.0.0.1:") and int(hooks_url.rsplit(":", 1)[1]) > 0
    assert cli.json("sandbox", "status")["hooks_url"] == hooks_url
    assert f"Webhook sink        │ {hooks_url}" in cli("sandbox", "status").stdout
    controls = Path(sandbox["outbox"]).parent / "hooks.json"

    nothing = cli("sandbox", "hook")
    assert nothing.stdout == f"Tokens from {hooks_url}/oauth/token live 3600 s.\n"
    assert "Every webhook and Slack name answers as usual" in nothing.stderr
    assert cli.json("sandbox", "hook") == {"token_lifetime": 3600, "hooks": []}
    assert not controls.exists()  # showing writes nothing

    set_crm = cli("sandbox", "hook", "crm", "--status", "503", "--times", "2")
    assert set_crm.stdout == "crm  answers 503 to the next 2 posts\n"
    assert cli.json("sandbox", "hook", "ops", "--status", "429") == {
        "token_lifetime": 3600,
        "hooks": [{"name": "ops", "status": 429, "times": 1}],
    }
    lifetime = cli("sandbox", "hook", "--token-lifetime", "60")
    assert lifetime.stdout == (
        "crm  answers 503 to the next 2 posts\n"
        "ops  answers 429 to the next post\n"
        f"Tokens from {hooks_url}/oauth/token live 60 s.\n"
    )
    assert stat.S_IMODE(controls.stat().st_mode) == 0o600

    status, body = post(
        f"{hooks_url}/oauth/token",
        urlencode({"grant_type": "client_credentials", "scope": "clicks"}).encode(),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Basic " + base64.b64encode(b"iotbutton:hunter2").decode(),
        },
    )
    assert status == 200
    token = json.loads(body)
    assert token["expires_in"] == 60
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    click = b'{"serial": "G030JF0553648RUH", "clickType": "SINGLE"}'
    assert [post(f"{hooks_url}/hooks/crm", click, bearer)[0] for _ in range(3)] == [503, 503, 200]
    slack = b'{"text": "Grandma clicked"}'
    assert post(f"{hooks_url}/slack/ops", slack) == (429, b"too_many_requests")
    assert post(f"{hooks_url}/slack/ops", slack) == (200, b"ok")
    assert post(f"{hooks_url}/slack/ops", b"{}") == (400, b"no_text")
    assert cli.json("sandbox", "hook", "crm") == {
        "token_lifetime": 60,
        "hooks": [{"name": "crm", "status": 200, "times": 0}],
    }
    assert cli("sandbox", "hook", "crm").stdout == "crm  answers as usual (200)\n"

    # What outbox.wait_for_hooks and the CLI read back: one entry per request, in order.
    entries = outbox.wait_for_hooks(7, timeout=10)
    assert [(e["seq"], e["kind"], e["name"], e["http_status"]) for e in entries] == [
        (1, "oauth-token", None, 200),
        (2, "webhook", "crm", 503),
        (3, "webhook", "crm", 503),
        (4, "webhook", "crm", 200),
        (5, "slack", "ops", 429),
        (6, "slack", "ops", 200),
        (7, "slack", "ops", 400),
    ]
    assert outbox.hooks_size() == 7
    assert [e["seq"] for e in outbox.wait_for_hooks(2, since=5, timeout=1)] == [6, 7]
    with pytest.raises(IotButtonError) as waited:
        outbox.wait_for_hooks(1, since=7, timeout=0.3)
    assert waited.value.code == "hooks-timeout"
    assert outbox.size() == 0  # the Twilio requests are counted as before: none

    listed = cli.json("sandbox", "outbox")
    assert listed == entries  # no Twilio request yet: the sink's entries alone, oldest first
    assert entries[1]["bearer"] == "issued" and entries[1]["forced"] is True
    assert entries[0]["client_id"] == "iotbutton"
    assert "hunter2" not in json.dumps(listed) and token["access_token"] not in json.dumps(listed)
    assert entries[1]["headers"]["authorization"] == f"Bearer …{token['access_token'][-4:]}"

    lines = cli("sandbox", "outbox").stdout.splitlines()
    assert len(lines) == 7
    assert lines[0].endswith("  TOKEN iotbutton [200] grant_type=client_credentials scope=clicks")
    assert lines[1].endswith(
        f"  HOOK  crm [503, set by sandbox hook, bearer issued] {click.decode()}"
    )
    assert lines[3].endswith(f"  HOOK  crm [200, bearer issued] {click.decode()}")
    assert lines[6].endswith("  SLACK ops [400] {}")
    assert lines[0].startswith(entries[0]["time"])

    # The controls file is the owner's: one that is not the controls, or a link, is refused.
    controls.write_text('{"hooks": {"crm": {"status": "soon"}}}')
    corrupt = cli("sandbox", "hook", "crm", code=1)
    assert "is not the webhook sink's controls: crm: status must be a whole number" in (
        one_error_line(corrupt)
    )
    assert cli.json("sandbox", "hook", code=1)["error"]["code"] == "sandbox-hooks-corrupt"
    controls.unlink()
    os.symlink(Path(sandbox["outbox"]).parent / "elsewhere.json", controls)
    assert cli.json("sandbox", "hook", "crm", "--status", "500", code=1)["error"]["code"] == (
        "sandbox-hooks-link"
    )
    controls.unlink()
    cli("sandbox", "hook", "crm", "--status", "500")
    assert controls.exists()
    cli("sandbox", "stop")
    assert not controls.exists()  # the next sandbox's sink answers every name as usual


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["bad name", "--status", "503"], "sandbox-bad-hook-name", "is not a webhook name"),
        (["x" * 65], "sandbox-bad-hook-name", "is not a webhook name"),
        (["crm", "--status", "abc"], "sandbox-bad-hook-status", "from 200 to 599"),
        (["crm", "--status", "199"], "sandbox-bad-hook-status", "from 200 to 599"),
        (["crm", "--status", "600"], "sandbox-bad-hook-status", "from 200 to 599"),
        (["crm", "--status", "503", "--times", "0"], "sandbox-bad-hook-times", "1 to 1000"),
        (["crm", "--status", "503", "--times", "2.5"], "sandbox-bad-hook-times", "1 to 1000"),
        (["--token-lifetime", "0"], "sandbox-bad-token-lifetime", "from 1 to 604800"),
        (["--token-lifetime", "1e3"], "sandbox-bad-token-lifetime", "from 1 to 604800"),
        (["--status", "503"], "sandbox-hook-needs-name", "--status needs the NAME"),
        (["--times", "2"], "sandbox-hook-needs-name", "--times needs the NAME"),
        (["crm", "--times", "2"], "sandbox-hook-times-needs-status", "which is not given"),
    ],
)
def test_bad_values_are_refused_in_one_line_before_the_sandbox_is_asked(cli, args, code, says):
    line = one_error_line(cli("sandbox", "hook", *args, code=2))
    assert line.startswith("Error: ") and says in line
    error = cli.json("sandbox", "hook", *args, code=2)["error"]
    assert (error["code"], error["exit_status"]) == (code, 2)


def test_hook_without_a_running_sandbox_says_so(cli):
    for args in ((), ("crm",), ("crm", "--status", "503"), ("--token-lifetime", "5")):
        assert cli.json("sandbox", "hook", *args, code=1)["error"]["code"] == (
            "sandbox-not-running"
        )


def test_a_sink_port_in_use_is_named_and_nothing_starts(cli):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        result = cli("sandbox", "start", "--hooks-port", str(port), code=1)
    finally:
        taken.close()

    assert (
        f"Error: The sandbox could not start: its webhook sink port {port} is already in use."
        in result.stderr
    )
    assert "pick another with --hooks-port (0: any free one)" in result.stderr
    assert cli.json("sandbox", "status", code=1)["running"] is False
