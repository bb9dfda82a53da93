"""The Twilio stand-in as a stricter Twilio: the account it plays (its SID, who authenticates for
it, the numbers it owns), the read APIs (fetch, list with paging, update a call, the Account),
statuses that move on, and Twilio's own Python SDK as a client we did not write."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from notifier_support import ACCOUNT_SID, API_KEY_SID, SECRET

from iotbutton_cli.sandbox import twilio as standin
from iotbutton_cli.sandbox.twilio import PlannedFailure, Progress, TwilioAccount, TwilioStandIn

TO, FROM, OWN = "+15551230001", "+15005550006", "+15557770000"
OTHER_ACCOUNT = "AC" + "9" * 32
ACCOUNTS = "/2010-04-01/Accounts"
TWIML = "<Response><Say>hi</Say></Response>"
PROGRESS = Progress(
    message_sent=1, message_delivered=2, call_ringing=1, call_answered=2, call_completed=5
)


class Clock:
    """A clock the test moves: the stand-in's statuses move on by it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def request(
    base_url: str,
    path: str,
    fields: dict[str, Any] | None = None,
    *,
    method: str | None = None,
    user: str = ACCOUNT_SID,
    secret: str = SECRET,
) -> tuple[int, dict[str, Any]]:
    """One raw HTTP request to ``path`` (relative to the API's root, query and all)."""
    body = urllib.parse.urlencode(fields).encode() if fields is not None else None
    raw = urllib.request.Request(
        base_url + path,
        data=body,
        method=method or ("POST" if body is not None else "GET"),
        headers={"Content-Type": "application/x-www-form-urlencoded"} if body else {},
    )
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    raw.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(raw, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def create(base_url: str, resource: str, to: str = TO, **fields: str) -> dict[str, Any]:
    form = {"To": to, "From": FROM, **fields}
    if resource == "Messages":
        form.setdefault("Body", "hi")
    else:
        form.setdefault("Twiml", TWIML)
    status, body = request(base_url, f"{ACCOUNTS}/{ACCOUNT_SID}/{resource}.json", form)
    assert status == 201, body
    return body


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def twilio(tmp_path, clock):
    account = TwilioAccount(ACCOUNT_SID, frozenset({ACCOUNT_SID, API_KEY_SID}), frozenset({OWN}))
    with TwilioStandIn(
        tmp_path / "outbox.jsonl",
        credentials={ACCOUNT_SID: SECRET, API_KEY_SID: SECRET},
        account=account,
        progress=PROGRESS,
        clock=clock,
    ) as stand_in:
        yield stand_in


def matches_response_schema(method: str, path: str, status: int, body: Any) -> list[Any]:
    from openapi_core import OpenAPI
    from openapi_core.testing import MockRequest, MockResponse

    app = OpenAPI.from_dict(standin.load_spec())
    mock = MockRequest(standin.SPEC_SERVER, method, urllib.parse.urlsplit(path).path)
    return list(
        app.iter_response_errors(mock, MockResponse(json.dumps(body).encode(), status_code=status))
    )


# -- the account: who authenticates, which numbers it owns --------------------------------------


@pytest.mark.parametrize(
    ("resource", "sender", "code"),
    [
        ("Messages", "+15551239999", 21606),  # not a number of the account's
        ("Calls", "+15551239999", 21210),  # not a verified caller ID of the account's
        ("Messages", "+15005550007", 21606),  # the magic one keeps its error
        ("Messages", "+15005550008", 21611),
        ("Calls", "+15005550001", 21212),  # invalid before unowned
    ],
)
def test_from_must_be_a_number_the_account_owns(twilio, resource, sender, code):
    fields = {"To": TO, "From": sender, "Body": "x", "Twiml": TWIML}
    status, body = request(twilio.base_url, f"{ACCOUNTS}/{ACCOUNT_SID}/{resource}.json", fields)

    assert (status, body["code"]) == (400, code), body
    if code == 21606:
        assert body["message"] == standin.FROM_NOT_OWNED[1]
        assert "not a valid message-capable Twilio phone number" in body["message"]
    if code == 21210:
        assert body["message"] == "'From' phone number not verified"
    assert twilio.outbox()[0]["error"]["code"] == code


@pytest.mark.parametrize("sender", [FROM, OWN, "Grandma"])
def test_owned_numbers_the_test_number_and_an_alphanumeric_sender_may_send(twilio, sender):
    fields = {"To": TO, "From": sender, "Body": "x"}
    assert request(twilio.base_url, f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json", fields)[0] == 201
    if sender != "Grandma":
        fields = {"To": TO, "From": sender, "Twiml": TWIML}
        assert request(twilio.base_url, f"{ACCOUNTS}/{ACCOUNT_SID}/Calls.json", fields)[0] == 201


def test_without_an_account_only_the_test_number_is_owned():
    with TwilioStandIn(credentials={ACCOUNT_SID: SECRET}) as stand_in:
        path = f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json"
        owned = request(stand_in.base_url, path, {"To": TO, "From": FROM, "Body": "x"})
        other = request(stand_in.base_url, path, {"To": TO, "From": OWN, "Body": "x"})

    assert owned[0] == 201
    assert (other[0], other[1]["code"]) == (400, 21606)


@pytest.mark.parametrize(
    ("path", "user", "secret"),
    [
        (f"{ACCOUNTS}/{OTHER_ACCOUNT}/Messages.json", ACCOUNT_SID, SECRET),  # another account
        (f"{ACCOUNTS}/{OTHER_ACCOUNT}/Messages.json", API_KEY_SID, SECRET),  # its key, elsewhere
        (f"{ACCOUNTS}/{OTHER_ACCOUNT}.json", OTHER_ACCOUNT, SECRET),  # not the account played
        (f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json", ACCOUNT_SID, "wrong"),
        (f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json", "SK" + "3" * 32, SECRET),  # not its key
    ],
)
def test_another_account_user_or_secret_is_401_20003_for_reads_and_writes(
    twilio, path, user, secret
):
    tries = [None] if path.endswith(f"{OTHER_ACCOUNT}.json") else [{"To": TO, "Body": "x"}, None]
    for fields in tries:
        status, body = request(twilio.base_url, path, fields, user=user, secret=secret)
        assert (status, body["code"], body["message"]) == (401, 20003, "Authenticate"), fields
    assert twilio.outbox() == []
    assert len(twilio.refused()) == len(tries)


def test_the_account_s_users_are_exactly_those_named():
    account = TwilioAccount.of(ACCOUNT_SID, API_KEY_SID, ["+15557770000"])
    assert account.users == frozenset({API_KEY_SID}), "the key's secret is not the auth token"
    assert TwilioAccount.of(ACCOUNT_SID).users == frozenset({ACCOUNT_SID})
    assert account.owns("+15557770000") and account.owns(FROM) and not account.owns(TO)

    with TwilioStandIn(
        credentials={ACCOUNT_SID: SECRET, API_KEY_SID: SECRET}, account=account
    ) as s:
        path = f"{ACCOUNTS}/{ACCOUNT_SID}.json"
        assert request(s.base_url, path, user=API_KEY_SID)[0] == 200
        assert request(s.base_url, path, user=ACCOUNT_SID)[0] == 401


def test_a_deployed_account_is_read_at_each_request_and_none_lets_nobody_in():
    deployed: list[TwilioAccount | None] = [None]
    with TwilioStandIn(
        deployed_secret=lambda: SECRET, deployed_account=lambda: deployed[0]
    ) as stand_in:
        path = f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json"
        sms = {"To": TO, "From": OWN, "Body": "x"}
        nothing_yet = request(stand_in.base_url, path, sms)
        deployed[0] = TwilioAccount.of(ACCOUNT_SID, numbers=[OWN])
        accepted = request(stand_in.base_url, path, sms)
        deployed[0] = TwilioAccount.of(OTHER_ACCOUNT, numbers=[OWN])
        redeployed_elsewhere = request(stand_in.base_url, path, sms)

    assert (nothing_yet[0], nothing_yet[1]["code"]) == (401, 20003)
    assert accepted[0] == 201
    assert (redeployed_elsewhere[0], redeployed_elsewhere[1]["code"]) == (401, 20003)


# -- fetch, and statuses that move on -----------------------------------------------------------


def test_a_message_moves_from_queued_to_sent_to_delivered(twilio, clock):
    created = create(twilio.base_url, "Messages")
    path = created["uri"]
    seen = []
    for step in (0, 0.99, 0.01, 1, 60):
        clock.advance(step)
        status, body = request(twilio.base_url, path)
        assert status == 200
        seen.append(body["status"])
    final = body

    assert created["status"] == "queued", "Twilio answers a create with queued"
    assert seen == ["queued", "queued", "sent", "delivered", "delivered"]
    assert final["sid"] == created["sid"] and final["body"] == "hi"
    assert final["date_sent"] is not None and final["date_created"] == created["date_created"]
    assert matches_response_schema("get", path, 200, final) == []
    assert [entry["status"] for entry in twilio.outbox()] == ["queued"], "reads are not recorded"


def test_a_call_rings_is_answered_and_completes(twilio, clock):
    created = create(twilio.base_url, "Calls")
    seen = []
    for step in (0, 1, 1, 2.9, 0.1):
        clock.advance(step)
        seen.append(request(twilio.base_url, created["uri"])[1])

    assert [call["status"] for call in seen] == [
        "queued",
        "ringing",
        "in-progress",
        "in-progress",
        "completed",
    ]
    assert seen[0]["start_time"] is None and seen[1]["start_time"] is not None
    done = seen[-1]
    assert done["duration"] == "3" and done["end_time"] is not None
    assert matches_response_schema("get", created["uri"], 200, done) == []


def test_all_zero_delays_reach_the_final_status_at_once(tmp_path):
    zero = Progress(0, 0, 0, 0, 0)
    with TwilioStandIn(credentials={ACCOUNT_SID: SECRET}, progress=zero) as stand_in:
        sms, call = create(stand_in.base_url, "Messages"), create(stand_in.base_url, "Calls")
        assert sms["status"] == call["status"] == "queued"
        assert request(stand_in.base_url, sms["uri"])[1]["status"] == "delivered"
        assert request(stand_in.base_url, call["uri"])[1]["status"] == "completed"


def test_the_default_delays_are_small_and_ordered():
    default = Progress()
    assert 0 < default.message_sent <= default.message_delivered <= 2
    assert 0 < default.call_ringing <= default.call_answered <= default.call_completed <= 5
    with pytest.raises(ValueError):
        Progress(message_sent=2, message_delivered=1)


@pytest.mark.parametrize(
    "path",
    [
        f"{ACCOUNTS}/{ACCOUNT_SID}/Messages/SM{'0' * 32}.json",
        f"{ACCOUNTS}/{ACCOUNT_SID}/Calls/CA{'0' * 32}.json",
        f"{ACCOUNTS}/{ACCOUNT_SID}/Messages/nonsense.json",
    ],
)
def test_an_unknown_sid_is_404_20404(twilio, path):
    status, body = request(twilio.base_url, path)

    assert (status, body["code"], body["status"]) == (404, 20404, 404)
    assert body["message"] == f"The requested resource {path} was not found"
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20404"


def test_a_message_is_not_found_as_a_call_nor_in_another_account(tmp_path):
    with TwilioStandIn(credentials={ACCOUNT_SID: SECRET, OTHER_ACCOUNT: SECRET}) as stand_in:
        sms = create(stand_in.base_url, "Messages")
        as_call = f"{ACCOUNTS}/{ACCOUNT_SID}/Calls/{sms['sid']}.json"
        elsewhere = f"{ACCOUNTS}/{OTHER_ACCOUNT}/Messages/{sms['sid']}.json"

        assert request(stand_in.base_url, as_call)[0] == 404
        assert request(stand_in.base_url, elsewhere, user=OTHER_ACCOUNT)[0] == 404
        assert request(stand_in.base_url, sms["uri"])[0] == 200


# -- list, paged --------------------------------------------------------------------------------


def test_list_pages_through_newest_first_in_twilio_s_envelope(twilio, clock):
    sids = [create(twilio.base_url, "Messages", Body=f"m{n}")["sid"] for n in range(5)]
    path = f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json"

    status, first = request(twilio.base_url, f"{path}?PageSize=2")
    assert status == 200
    assert [m["sid"] for m in first["messages"]] == sids[::-1][:2]
    assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 2, 0, 1)
    assert first["uri"] == f"{path}?PageSize=2&Page=0"
    assert first["first_page_uri"] == f"{path}?PageSize=2&Page=0"
    assert first["previous_page_uri"] is None
    assert first["next_page_uri"] == f"{path}?PageSize=2&Page=1&PageToken=PA{sids[3]}"
    assert matches_response_schema("get", path, 200, first) == []

    create(twilio.base_url, "Messages", Body="newer")  # the token keeps the next page in place
    second = request(twilio.base_url, first["next_page_uri"])[1]
    assert [m["sid"] for m in second["messages"]] == [sids[2], sids[1]]
    assert (second["page"], second["start"], second["end"]) == (1, 2, 3)
    assert second["previous_page_uri"] == f"{path}?PageSize=2&Page=0&PageToken=PB{sids[2]}"
    third = request(twilio.base_url, second["next_page_uri"])[1]
    assert [m["sid"] for m in third["messages"]] == [sids[0]]
    assert third["next_page_uri"] is None and (third["start"], third["end"]) == (4, 4)
    back = request(twilio.base_url, second["previous_page_uri"])[1]
    assert [m["sid"] for m in back["messages"]] == [sids[4], sids[3]]

    by_page = request(twilio.base_url, f"{path}?PageSize=2&Page=1")[1]  # no token: by offset
    assert [m["sid"] for m in by_page["messages"]] == [sids[3], sids[2]]
    beyond = request(twilio.base_url, f"{path}?PageSize=2&Page=9")[1]
    assert beyond["messages"] == [] and beyond["next_page_uri"] is None
    assert len(request(twilio.base_url, path)[1]["messages"]) == 6  # default PageSize 50
    assert [entry["fields"]["Body"] for entry in twilio.outbox()][-1] == "newer", "no GET"


def test_list_filters_by_to_from_and_call_status(twilio, clock):
    create(twilio.base_url, "Calls", to="+15551230002")
    clock.advance(10)  # that one has completed
    live = create(twilio.base_url, "Calls")
    create(twilio.base_url, "Messages")
    calls = f"{ACCOUNTS}/{ACCOUNT_SID}/Calls.json"

    to = request(twilio.base_url, f"{calls}?To=%2B15551230002")[1]
    queued = request(twilio.base_url, f"{calls}?Status=queued&PageSize=5")[1]
    from_other = request(twilio.base_url, f"{calls}?From=%2B15557770000")[1]

    assert [c["to"] for c in to["calls"]] == ["+15551230002"]
    assert to["uri"] == f"{calls}?To=%2B15551230002&PageSize=50&Page=0"
    assert [c["sid"] for c in queued["calls"]] == [live["sid"]]
    assert queued["first_page_uri"] == f"{calls}?Status=queued&PageSize=5&Page=0"
    assert from_other["calls"] == []
    messages = request(twilio.base_url, f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json")[1]
    assert len(messages["messages"]) == 1 and "calls" not in messages


@pytest.mark.parametrize("query", ["PageSize=0", "PageSize=1001", "Page=-1", "PageSize=many"])
def test_a_page_the_description_does_not_allow_is_400(twilio, query):
    status, body = request(twilio.base_url, f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json?{query}")

    assert (status, body["code"]) == (400, 400), body
    assert "Invalid request" in body["message"]


# -- update a call -------------------------------------------------------------------------------


def update(twilio, call, **fields) -> tuple[int, dict[str, Any]]:
    return request(twilio.base_url, call["uri"], fields)


def test_completing_an_answered_call_ends_it_then_it_cannot_be_updated(twilio, clock):
    call = create(twilio.base_url, "Calls")
    clock.advance(3.5)  # answered at 2

    status, body = update(twilio, call, Status="completed")
    assert (status, body["status"], body["duration"]) == (200, "completed", "2")
    assert matches_response_schema("post", call["uri"], 200, body) == []
    clock.advance(10)
    assert request(twilio.base_url, call["uri"])[1]["end_time"] == body["end_time"]

    again = update(twilio, call, Twiml=TWIML)
    assert again[0] == 400 and again[1]["code"] == 21220
    assert again[1]["message"] == "Call is not in-progress. Cannot redirect."
    entries = twilio.outbox()
    assert [(e["http_status"], e.get("status")) for e in entries] == [
        (201, "queued"),
        (200, "completed"),
        (400, None),
    ]
    assert entries[1]["sid"] == call["sid"] and entries[1]["fields"] == {"Status": "completed"}
    assert entries[2]["error"]["code"] == 21220


@pytest.mark.parametrize("wanted", ["canceled", "completed"])
def test_a_call_not_yet_answered_is_canceled(twilio, clock, wanted):
    call = create(twilio.base_url, "Calls")
    clock.advance(1.5)  # ringing

    status, body = update(twilio, call, Status=wanted)
    clock.advance(10)
    later = request(twilio.base_url, call["uri"])[1]

    assert (status, body["status"]) == (200, "canceled")
    assert later["status"] == "canceled" and later["duration"] is None
    assert later["end_time"] == body["end_time"]


def test_canceling_a_call_in_progress_changes_nothing(twilio, clock):
    call = create(twilio.base_url, "Calls")
    clock.advance(2.5)

    status, body = update(twilio, call, Status="canceled")
    clock.advance(10)

    assert (status, body["status"]) == (200, "in-progress")
    assert request(twilio.base_url, call["uri"])[1]["status"] == "completed"


def test_new_twiml_or_url_for_a_live_call_is_checked_and_taken(twilio, clock):
    call = create(twilio.base_url, "Calls")

    redirected = update(twilio, call, Url="https://example.com/next.xml")
    new_twiml = update(twilio, call, Twiml="<Response><Hangup/></Response>")
    broken = update(twilio, call, Twiml="<Say>no root</Say>")
    bad_status = update(twilio, call, Status="busy")

    assert redirected[0] == new_twiml[0] == 200 and redirected[1]["status"] == "queued"
    assert (broken[0], broken[1]["code"]) == (400, 12100)
    assert (bad_status[0], bad_status[1]["code"]) == (400, 21200)
    assert "Status" in bad_status[1]["message"]


def test_updating_an_unknown_call_is_404_and_messages_cannot_be_updated(twilio):
    sms = create(twilio.base_url, "Messages")
    unknown = request(
        twilio.base_url, f"{ACCOUNTS}/{ACCOUNT_SID}/Calls/CA{'1' * 32}.json", {"Status": "canceled"}
    )
    message = request(twilio.base_url, sms["uri"], {"Body": "changed"})

    assert (unknown[0], unknown[1]["code"]) == (404, 20404)
    assert (message[0], message[1]["code"]) == (405, 20004)


def test_scripted_failures_hit_posts_unless_told_otherwise(twilio):
    sms = create(twilio.base_url, "Messages")
    twilio.plan(PlannedFailure(status=503))
    assert request(twilio.base_url, sms["uri"])[0] == 200, "a read is not a POST"
    twilio.plan(PlannedFailure(status=429, method="GET"))
    assert request(twilio.base_url, sms["uri"])[1]["code"] == 20429
    form = {"To": TO, "From": FROM, "Body": "x"}
    status, body = request(twilio.base_url, f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json", form)
    assert (status, body["code"]) == (503, 20503)


# -- the Account -------------------------------------------------------------------------------


def test_fetch_the_account(twilio):
    path = f"{ACCOUNTS}/{ACCOUNT_SID}.json"
    status, body = request(twilio.base_url, path)

    assert status == 200
    assert (body["sid"], body["owner_account_sid"], body["status"]) == (
        ACCOUNT_SID,
        ACCOUNT_SID,
        "active",
    )
    assert body["uri"] == path and body["auth_token"] is None
    assert SECRET not in json.dumps(body)
    assert body["subresource_uris"]["messages"] == f"{ACCOUNTS}/{ACCOUNT_SID}/Messages.json"
    assert matches_response_schema("get", path, 200, body) == []
    update_account = request(twilio.base_url, path, {"FriendlyName": "x"})
    assert (update_account[0], update_account[1]["code"]) == (405, 20004)


# -- Twilio's own SDK ----------------------------------------------------------------------------


@pytest.fixture
def sdk(twilio):
    """Twilio's Python SDK pointed at the stand-in; ``sdk.requests`` lists what it asked."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    base = twilio.base_url.rstrip("/")
    asked: list[tuple[str, str]] = []

    class ToTheStandIn(TwilioHttpClient):
        def request(self, method, uri, *args, **kwargs):
            asked.append((method, uri))
            uri = uri.replace("https://api.twilio.com", base, 1)
            return super().request(method, uri, *args, **kwargs)

    def client(user: str = ACCOUNT_SID, secret: str = SECRET, account: str = ACCOUNT_SID):
        return Client(user, secret, account, http_client=ToTheStandIn(timeout=15))

    client.requests = asked  # type: ignore[attr-defined]
    return client


def test_the_sdk_fetches_lists_and_sees_statuses_move_on(twilio, sdk, clock):
    client = sdk()
    sent = [client.messages.create(to=TO, from_=FROM, body=f"Help {n}") for n in range(5)]
    assert {message.status for message in sent} == {"queued"}

    clock.advance(1)
    fetched = client.messages(sent[0].sid).fetch()
    assert (fetched.sid, fetched.status, fetched.body) == (sent[0].sid, "sent", "Help 0")
    assert fetched.date_sent is not None

    clock.advance(1)
    sdk.requests.clear()
    listed = client.messages.list(page_size=2)
    assert [message.sid for message in listed] == [message.sid for message in reversed(sent)]
    assert {message.status for message in listed} == {"delivered"}
    pages = [uri for method, uri in sdk.requests if method == "GET"]
    assert len(pages) == 3, "five messages, two a page, followed by next_page_uri"
    assert "PageToken=PA" in pages[1]
    assert [m.body for m in client.messages.list(to=TO, limit=2)] == ["Help 4", "Help 3"]

    page = client.messages.page(page_size=3)
    assert len(list(page)) == 3 and page.previous_page() is None
    assert [m.sid for m in page.next_page()] == [sent[1].sid, sent[0].sid]
    assert [entry["resource"] for entry in twilio.outbox()] == ["Messages"] * 5, "no GET"


def test_the_sdk_updates_a_call_and_fetches_the_account(twilio, sdk, clock):
    client = sdk()
    call = client.calls.create(to="+15551230002", from_=FROM, twiml=TWIML)
    assert call.status == "queued"

    clock.advance(2.5)
    assert client.calls(call.sid).fetch().status == "in-progress"
    ended = client.calls(call.sid).update(status="completed")
    assert ended.status == "completed" and ended.duration == "0"  # answered at 2, ended at 2.5

    ringing = client.calls.create(to=TO, from_=FROM, url="https://example.com/twiml.xml")
    clock.advance(1)
    assert client.calls(ringing.sid).update(status="canceled").status == "canceled"
    assert [c.status for c in client.calls.list(status="canceled")] == ["canceled"]

    account = client.api.v2010.accounts(ACCOUNT_SID).fetch()
    assert (account.sid, account.status, account.type) == (ACCOUNT_SID, "active", "Full")


def test_the_sdk_gets_twilio_s_errors(twilio, sdk):
    from twilio.base.exceptions import TwilioRestException

    def refused(call) -> TwilioRestException:
        with pytest.raises(TwilioRestException) as raised:
            call()
        return raised.value

    client = sdk()
    wrong_token = refused(lambda: sdk(secret="x" * 32).messages("SM" + "0" * 32).fetch())
    other_account = refused(lambda: sdk(account=OTHER_ACCOUNT).api.v2010.account.fetch())
    sms_from = refused(lambda: client.messages.create(to=TO, from_="+15551239999", body="x"))
    call_from = refused(lambda: client.calls.create(to=TO, from_="+15551239999", twiml=TWIML))
    missing = refused(lambda: client.messages("SM" + "0" * 32).fetch())
    ended = client.calls.create(to=TO, from_=FROM, twiml=TWIML)
    client.calls(ended.sid).update(status="canceled")
    too_late = refused(lambda: client.calls(ended.sid).update(twiml=TWIML))

    assert (wrong_token.status, wrong_token.code) == (401, 20003)
    assert (other_account.status, other_account.code) == (401, 20003)
    assert (sms_from.status, sms_from.code) == (400, 21606)
    assert (call_from.status, call_from.code) == (400, 21210)
    assert (missing.status, missing.code) == (404, 20404)
    assert (too_late.status, too_late.code) == (400, 21220)
    assert re.search(r"/Messages/SM0{32}\.json was not found", missing.msg)
