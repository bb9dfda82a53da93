"""The Twilio stand-in: spec validation, Twilio's own rules, auth, outbox, scripted failures."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from notifier_support import ACCOUNT_SID, API_KEY_SID, SECRET

from iotbutton_cli.sandbox import twilio as standin
from iotbutton_cli.sandbox.twilio import PlannedFailure, TwilioStandIn

TO, FROM = "+15551230001", "+15005550006"
REPO = Path(__file__).resolve().parents[2]
SHIPPED_SPEC = REPO / "src" / "iotbutton_cli" / "data" / "twilio_api_v2010_messaging.json"
SOURCE_SPEC = REPO.parent / "shared" / "twilio" / "twilio_api_v2010.json"


def post(
    base_url: str,
    resource: str,
    fields,
    *,
    user: str | None = ACCOUNT_SID,
    secret: str = SECRET,
    account: str = ACCOUNT_SID,
    content_type: str = "application/x-www-form-urlencoded",
    method: str = "POST",
):
    """One raw HTTP request, the way any client would make it: (status, headers, JSON body)."""
    body = fields if isinstance(fields, bytes) else urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(
        f"{base_url}/2010-04-01/Accounts/{account}/{resource}.json",
        data=body if method == "POST" else None,
        method=method,
        headers={"Content-Type": content_type},
    )
    if user is not None:
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.load(error)


@pytest.fixture
def twilio(tmp_path):
    with TwilioStandIn(tmp_path / "outbox.jsonl", credentials={ACCOUNT_SID: SECRET}) as stand_in:
        yield stand_in


def test_message_is_accepted_with_a_twilio_shaped_resource(twilio):
    status, _headers, body = post(
        twilio.base_url, "Messages", {"To": TO, "From": FROM, "Body": "hi"}
    )

    assert status == 201
    assert re.fullmatch(r"SM[0-9a-f]{32}", body["sid"])
    assert body["status"] == "queued"
    assert (body["to"], body["from"], body["body"]) == (TO, FROM, "hi")
    assert body["account_sid"] == ACCOUNT_SID
    assert body["uri"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{body['sid']}.json"
    [entry] = twilio.outbox()
    assert entry["sid"] == body["sid"] and entry["status"] == "queued"
    assert entry["fields"] == {"To": TO, "From": FROM, "Body": "hi"}


@pytest.mark.parametrize(
    ("resource", "fields"),
    [
        ("Messages", {"To": TO, "From": FROM, "Body": "hi"}),
        ("Calls", {"To": TO, "From": FROM, "Twiml": "<Response><Say>hi</Say></Response>"}),
    ],
)
def test_answers_match_twilios_response_schema(twilio, resource, fields):
    from openapi_core import OpenAPI
    from openapi_core.testing import MockRequest, MockResponse

    status, _headers, body = post(twilio.base_url, resource, fields)
    app = OpenAPI.from_dict(standin.load_spec())
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/{resource}.json"
    request = MockRequest(standin.SPEC_SERVER, "post", path)
    response = MockResponse(json.dumps(body).encode(), status_code=status)

    assert status == 201
    assert list(app.iter_response_errors(request, response)) == []
    assert re.fullmatch(rf"{'SM' if resource == 'Messages' else 'CA'}[0-9a-f]{{32}}", body["sid"])


@pytest.mark.parametrize(
    ("resource", "fields", "code", "spec_error"),
    [
        ("Messages", {"From": FROM, "Body": "hi"}, 21604, "'To' is a required property"),
        ("Calls", {"From": FROM, "Twiml": "<Response/>"}, 21201, "'To' is a required property"),
        ("Calls", {"To": TO, "Twiml": "<Response/>"}, 21213, "'From' is a required property"),
    ],
)
def test_missing_required_field_gets_twilios_code_and_is_recorded(
    twilio, resource, fields, code, spec_error
):
    status, _headers, body = post(twilio.base_url, resource, fields)

    assert (status, body["code"], body["status"]) == (400, code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    [entry] = twilio.outbox()
    assert entry["http_status"] == 400 and entry["error"]["code"] == code
    assert entry["fields"] == fields
    assert any(spec_error in error for error in entry["spec_errors"])


@pytest.mark.parametrize(
    ("extra", "spec_error"),
    [
        ({"Timeout": "soon"}, "Failed to cast value to integer type: soon"),
        ({"Method": "PUT"}, "Method: 'PUT' is not one of ['GET', 'POST']"),
        ({"Record": "maybe"}, "Failed to cast value to boolean type: maybe"),
    ],
)
def test_spec_violations_the_rules_do_not_know_are_rejected(twilio, extra, spec_error):
    fields = {"To": TO, "From": FROM, "Twiml": "<Response/>", **extra}

    status, _headers, body = post(twilio.base_url, "Calls", fields)

    assert (status, body["code"]) == (400, 21200)
    assert spec_error in body["message"]
    [entry] = twilio.outbox()
    assert entry["spec_errors"] == [spec_error]
    assert entry["fields"] == fields


@pytest.mark.parametrize(
    ("resource", "fields", "code"),
    [
        ("Messages", {"To": "+15005550001", "From": FROM, "Body": "x"}, 21211),  # magic invalid
        ("Messages", {"To": "+15005550004", "From": FROM, "Body": "x"}, 21610),  # unsubscribed
        ("Messages", {"To": "+15005550009", "From": FROM, "Body": "x"}, 21614),  # not mobile
        ("Messages", {"To": TO, "From": "+15005550001", "Body": "x"}, 21212),  # magic bad From
        ("Messages", {"To": "5551230001", "From": FROM, "Body": "x"}, 21211),  # not E.164
        ("Messages", {"To": TO, "Body": "x"}, 21603),
        ("Messages", {"To": TO, "From": FROM}, 21602),
        ("Messages", {"To": TO, "From": FROM, "Body": "x" * 1601}, 21617),
        ("Calls", {"To": "+15005550001", "From": FROM, "Twiml": "<Response/>"}, 21211),
        ("Calls", {"To": TO, "From": "client:alice", "Twiml": "<Response/>"}, 21212),
        ("Calls", {"To": TO, "From": FROM}, 21200),
        ("Calls", {"To": TO, "From": FROM, "Twiml": "<Response>" + "x" * 4000}, 32018),
        (
            "Calls",
            {"To": TO, "From": FROM, "Twiml": "<Response><Say>a & b</Say></Response>"},
            12100,
        ),
        ("Calls", {"To": TO, "From": FROM, "Twiml": "<Say>hi</Say>"}, 12100),
    ],
)
def test_twilio_rules_beyond_the_spec(twilio, resource, fields, code):
    status, _headers, body = post(twilio.base_url, resource, fields)

    assert (status, body["code"]) == (400, code), body["message"]
    assert twilio.outbox()[0]["error"]["code"] == code


def test_from_magic_number_and_alphanumeric_sender_pass(twilio):
    ok_magic = post(twilio.base_url, "Messages", {"To": TO, "From": FROM, "Body": "x"})
    ok_alpha = post(twilio.base_url, "Messages", {"To": TO, "From": "Grandma", "Body": "x"})

    assert ok_magic[0] == ok_alpha[0] == 201


def test_json_body_is_not_a_form_so_to_is_missing(twilio):
    status, _headers, body = post(
        twilio.base_url,
        "Messages",
        json.dumps({"To": TO, "From": FROM, "Body": "x"}).encode(),
        content_type="application/json",
    )

    assert (status, body["code"]) == (400, 21604)
    assert any("mimetype not found" in error for error in twilio.outbox()[0]["spec_errors"])


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"user": None}, "no Authorization header"),
        ({"secret": "wrong"}, "wrong secret"),
        ({"user": "bob", "secret": "x"}, "user is neither AC nor SK"),
        ({"account": "AC" + "1" * 32}, "AC user differs from the account in the path"),
        ({"user": API_KEY_SID}, "SK user not in the stand-in's credentials"),
    ],
)
def test_bad_auth_is_401_20003(twilio, options, why):
    status, headers, body = post(
        twilio.base_url, "Messages", {"To": TO, "From": FROM, "Body": "x"}, **options
    )

    assert (status, body["code"], body["message"]) == (401, 20003, "Authenticate"), why
    assert headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
    assert twilio.outbox() == [], "refused requests cannot put entries in the outbox"
    assert [entry["http_status"] for entry in twilio.refused()] == [401]


def test_api_key_user_is_accepted_when_known(tmp_path):
    with TwilioStandIn(credentials={API_KEY_SID: SECRET}) as stand_in:
        status, _headers, _body = post(
            stand_in.base_url, "Messages", {"To": TO, "From": FROM, "Body": "x"}, user=API_KEY_SID
        )

    assert status == 201
    assert stand_in.outbox()[0]["auth_user"] == API_KEY_SID


def test_unknown_paths_and_methods(twilio):
    not_found = post(twilio.base_url, "Recordings", {"To": TO})
    wrong_method = post(twilio.base_url, "Messages", {}, method="DELETE")
    not_found_read = post(twilio.base_url, "Recordings", {}, method="GET")

    assert (not_found[0], not_found[2]["code"]) == (404, 20404)
    assert (wrong_method[0], wrong_method[2]["code"]) == (405, 20004)
    assert (not_found_read[0], not_found_read[2]["code"]) == (404, 20404)
    assert [entry["resource"] for entry in twilio.outbox()] == [None, "Messages"], "no GET"


def test_outbox_file_matches_memory_is_private_and_holds_no_secret(twilio, tmp_path):
    post(twilio.base_url, "Messages", {"To": TO, "From": FROM, "Body": "x"})
    post(twilio.base_url, "Calls", {"To": TO, "From": FROM}, secret="wrong-secret")

    path = tmp_path / "outbox.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == twilio.outbox()
    assert [line["resource"] for line in lines] == ["Messages"], "the refused call is not there"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert SECRET not in text and "wrong-secret" not in text
    assert "Authorization" not in text and "Basic " not in text


def test_fail_plan_answers_matching_requests_then_runs_out(tmp_path):
    plan = [
        PlannedFailure(status=429, code=20429, times=2, to="+15551230009"),
        PlannedFailure(status=500, resource="Calls"),
    ]
    with TwilioStandIn(fail_plan=plan) as stand_in:
        sms = {"To": "+15551230009", "From": FROM, "Body": "x"}
        other_sms = {"To": TO, "From": FROM, "Body": "x"}
        call = {"To": TO, "From": FROM, "Twiml": "<Response/>"}
        answers = [
            post(stand_in.base_url, "Messages", other_sms)[0],
            post(stand_in.base_url, "Messages", sms)[2].get("code"),
            post(stand_in.base_url, "Messages", sms)[2].get("code"),
            post(stand_in.base_url, "Messages", sms)[0],
            post(stand_in.base_url, "Calls", call)[2].get("code"),
            post(stand_in.base_url, "Calls", call)[0],
        ]

    assert answers == [201, 20429, 20429, 201, 20500, 201]
    assert plan[0].times == 2, "the caller's plan objects are not consumed"


def test_stop_releases_the_port_and_start_is_idempotent():
    stand_in = TwilioStandIn()
    url = stand_in.start()
    assert stand_in.start() == url
    stand_in.stop()
    stand_in.stop()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/", timeout=2)
    with pytest.raises(RuntimeError):
        _ = stand_in.base_url


def test_importing_the_stand_in_does_not_import_openapi_core():
    code = (
        "import sys, iotbutton_cli.sandbox.twilio; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('openapi_core', 'werkzeug')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == "[]"


# -- the shipped, trimmed spec ----------------------------------------------------------------


def test_trimmed_spec_keeps_only_the_operations_served_and_closes_over_refs():
    spec = json.loads(SHIPPED_SPEC.read_text())
    accounts = "/2010-04-01/Accounts"

    assert {path: sorted(item) for path, item in spec["paths"].items()} == {
        f"{accounts}/{{AccountSid}}/Messages.json": ["description", "get", "post", "servers"],
        f"{accounts}/{{AccountSid}}/Messages/{{Sid}}.json": ["description", "get", "servers"],
        f"{accounts}/{{AccountSid}}/Calls.json": ["description", "get", "post", "servers"],
        f"{accounts}/{{AccountSid}}/Calls/{{Sid}}.json": ["description", "get", "post", "servers"],
        f"{accounts}/{{Sid}}.json": ["description", "get", "servers"],
    }
    assert spec["servers"] == [{"url": "https://api.twilio.com"}]
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', SHIPPED_SPEC.read_text())
    assert refs and set(refs) <= set(spec["components"]["schemas"])
    assert "MIT License" in (SHIPPED_SPEC.parent / "TWILIO_OPENAPI_LICENSE").read_text()


@pytest.mark.skipif(not SOURCE_SPEC.exists(), reason="Twilio's full description is not here")
def test_trim_script_reproduces_the_shipped_spec_from_the_recorded_source(tmp_path):
    output = tmp_path / "trimmed.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "trim_twilio_spec.py"),
            str(SOURCE_SPEC),
            "--output",
            str(output),
        ],
        check=True,
        capture_output=True,
    )

    assert output.read_bytes() == SHIPPED_SPEC.read_bytes()
    recorded = json.loads(output.read_text())["info"]["x-iotbutton-trimmed-from"]["sha256"]
    assert recorded == hashlib.sha256(SOURCE_SPEC.read_bytes()).hexdigest()


def test_the_stand_in_shares_no_code_with_the_notifier():
    """It is the oracle the notifier is checked against: it must not borrow the notifier's rules."""
    import ast

    import iotbutton_cli.sandbox.twilio as stand_in

    tree = ast.parse(Path(stand_in.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert not [name for name in imported if "notifier_lambda" in name or name.startswith(".")]


def test_twilio_s_own_sdk_is_answered_as_twilio_would(twilio):
    """A client we did not write: Twilio's Python SDK creates a message and a call on the
    stand-in, gets Twilio's resource shapes back, and gets Twilio's error for a wrong secret."""
    from twilio.base.exceptions import TwilioRestException
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    base = twilio.base_url.rstrip("/")

    class ToTheStandIn(TwilioHttpClient):
        def request(self, method, uri, *args, **kwargs):
            uri = uri.replace("https://api.twilio.com", base, 1)
            return super().request(method, uri, *args, **kwargs)

    client = Client(ACCOUNT_SID, SECRET, http_client=ToTheStandIn(timeout=15))
    message = client.messages.create(to=TO, from_=FROM, body="Help")
    assert message.sid.startswith("SM") and message.status == "queued"
    call = client.calls.create(
        to="+15551230002", from_=FROM, twiml="<Response><Say>Help</Say></Response>"
    )
    assert call.sid.startswith("CA")
    assert [entry["resource"] for entry in twilio.outbox()] == ["Messages", "Calls"]

    wrong = Client(ACCOUNT_SID, "x" * 32, http_client=ToTheStandIn(timeout=15))
    with pytest.raises(TwilioRestException) as refused:
        wrong.messages.create(to=TO, from_=FROM, body="Help")
    assert refused.value.status == 401 and refused.value.code == 20003
