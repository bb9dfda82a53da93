"""A Twilio outage per number, and the phone table's file: the in-process stand-in reading the
``phones.json`` beside its outbox, as the sandbox's does."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from iotbutton_cli.cli.sandbox import CallOutcome, SmsOutcome
from iotbutton_cli.sandbox.twilio import TwilioAccount, TwilioStandIn
from iotbutton_cli.sandbox.twilio_phones import (
    CALL_OUTCOMES,
    SMS_OUTCOMES,
    PhoneBehaviour,
    PhoneBook,
    dump_phones,
    parse_phones,
)

ACCOUNT_SID = "AC" + "1" * 32
SECRET = "s" * 32
DOWN, UP = "+15005550101", "+15551230001"
FROM = "+15005550006"
TWIML = "<Response><Say>hi</Say></Response>"
BASE = f"/2010-04-01/Accounts/{ACCOUNT_SID}"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def twilio(folder: Path):
    account = TwilioAccount(ACCOUNT_SID, frozenset({ACCOUNT_SID}))
    with TwilioStandIn(
        folder / "outbox.jsonl", credentials={ACCOUNT_SID: SECRET}, account=account
    ) as stand_in:
        yield stand_in


def write_phones(folder: Path, table: dict[str, Any]) -> None:
    (folder / "phones.json").write_text(json.dumps(table))


def request(
    stand_in: TwilioStandIn,
    path: str,
    fields: dict[str, str] | None = None,
    auth: tuple[str, str] | None = (ACCOUNT_SID, SECRET),
) -> tuple[int, dict[str, Any]]:
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    data = None
    if fields is not None:
        data = urlencode(fields).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    call = urllib.request.Request(stand_in.base_url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def sms(to: str, **extra: str) -> dict[str, str]:
    return {"To": to, "From": FROM, "Body": "help", **extra}


def call(to: str, **extra: str) -> dict[str, str]:
    return {"To": to, "From": FROM, "Twiml": TWIML, **extra}


OUTAGE_BODY = {
    "code": 20503,
    "message": "Service Unavailable",
    "more_info": "https://www.twilio.com/docs/errors/20503",
    "status": 503,
}


def test_a_number_in_an_outage_gets_503_for_sms_and_calls_and_nothing_is_created(twilio, folder):
    write_phones(folder, {DOWN: {"outage": True}})
    callback = "http://127.0.0.1:9/status"  # would be refused, if it were ever called

    assert request(twilio, f"{BASE}/Messages.json", sms(DOWN, StatusCallback=callback)) == (
        503,
        OUTAGE_BODY,
    )
    assert request(twilio, f"{BASE}/Calls.json", call(DOWN, StatusCallback=callback)) == (
        503,
        OUTAGE_BODY,
    )

    entries = twilio.outbox()
    assert [(e["resource"], e["http_status"], e["error"]["code"]) for e in entries] == [
        ("Messages", 503, 20503),
        ("Calls", 503, 20503),
    ]
    assert all("sid" not in entry for entry in entries)
    for resource, key in (("Messages", "messages"), ("Calls", "calls")):
        status, page = request(twilio, f"{BASE}/{resource}.json")
        assert (status, page[key]) == (200, [])
    # The outbox file says the same, and no status callback was ever made.
    time.sleep(0.3)
    lines = [json.loads(line) for line in (folder / "outbox.jsonl").read_text().splitlines()]
    assert [line["http_status"] for line in lines] == [503, 503]
    assert not any(line.get("kind") == "callback" for line in twilio.outbox())


def test_other_numbers_are_unaffected_and_the_outage_ends_when_the_table_says_so(twilio, folder):
    write_phones(folder, {DOWN: {"outage": True, "sms": "undelivered"}})
    status, answer = request(twilio, f"{BASE}/Messages.json", sms(UP))
    assert (status, answer["status"]) == (201, "queued")
    status, answer = request(twilio, f"{BASE}/Calls.json", call(UP))
    assert (status, answer["status"]) == (201, "queued")

    write_phones(folder, {DOWN: {"sms": "undelivered"}})  # Twilio is back for it
    status, answer = request(twilio, f"{BASE}/Messages.json", sms(DOWN))
    assert (status, answer["status"]) == (201, "queued")
    assert [e["http_status"] for e in twilio.outbox()] == [201, 201, 201]


@pytest.mark.parametrize(
    "auth",
    [None, (ACCOUNT_SID, "wrong" * 8)],
    ids=["no-auth", "wrong-secret"],
)
def test_an_unauthenticated_request_to_a_number_in_an_outage_still_gets_401(twilio, folder, auth):
    write_phones(folder, {DOWN: {"outage": True}})
    status, answer = request(twilio, f"{BASE}/Messages.json", sms(DOWN), auth=auth)
    assert (status, answer["code"]) == (401, 20003)
    assert twilio.outbox() == []  # refused requests are never recorded
    assert [r["http_status"] for r in twilio.refused()] == [401]


def test_routing_errors_and_reads_come_before_an_outage(twilio, folder):
    write_phones(folder, {DOWN: {"outage": True}})
    status, answer = request(twilio, f"{BASE}/Nope.json", sms(DOWN))
    assert (status, answer["code"]) == (404, 20404)
    status, page = request(twilio, f"{BASE}/Messages.json?To=%2B15005550101")
    assert (status, page["messages"]) == (200, [])  # a list is not a create


def test_an_outage_needs_no_table_file_when_given_as_a_mapping(folder):
    account = TwilioAccount(ACCOUNT_SID, frozenset({ACCOUNT_SID}))
    phones = {DOWN: PhoneBehaviour(outage=True)}
    with TwilioStandIn(
        credentials={ACCOUNT_SID: SECRET}, account=account, phones=phones
    ) as stand_in:
        assert request(stand_in, f"{BASE}/Calls.json", call(DOWN))[0] == 503
        assert request(stand_in, f"{BASE}/Calls.json", call(UP))[0] == 201


# -- the table's format --------------------------------------------------------------------------


def test_outage_is_a_known_key_and_must_be_a_json_boolean():
    assert parse_phones(json.dumps({DOWN: {"outage": True}})) == {DOWN: PhoneBehaviour(outage=True)}
    assert parse_phones(json.dumps({DOWN: {"outage": False}})) == {DOWN: PhoneBehaviour()}
    for value in ("yes", 1, 0, None, [True]):
        with pytest.raises(ValueError, match=re.escape(f"{DOWN}: outage must be true or false")):
            parse_phones(json.dumps({DOWN: {"outage": value}}))
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_phones("[" * 100_000)


def test_the_table_written_keeps_only_what_differs_and_reads_back_the_same():
    table = {
        DOWN: PhoneBehaviour(outage=True),
        UP: PhoneBehaviour(sms="undelivered", sms_error=30005, call="busy"),
        "+15551230009": PhoneBehaviour(),  # as any number: left out
    }
    text = dump_phones(table)
    assert json.loads(text) == {
        DOWN: {"outage": True},
        UP: {"sms": "undelivered", "sms_error": 30005, "call": "busy"},
    }
    assert parse_phones(text) == {DOWN: table[DOWN], UP: table[UP]}


def test_the_commands_choices_are_the_tables_outcomes():
    assert tuple(o.value for o in SmsOutcome) == SMS_OUTCOMES
    assert tuple(o.value for o in CallOutcome) == CALL_OUTCOMES


def test_the_sandbox_never_follows_a_planted_link_nor_blocks_on_a_fifo(tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({DOWN: {"outage": True}}))
    book = PhoneBook(tmp_path / "phones.json")
    os.symlink(elsewhere, tmp_path / "phones.json")
    with caplog.at_level(logging.WARNING):
        assert book() == {}
    assert "symbolic link" in caplog.text

    os.unlink(tmp_path / "phones.json")
    os.mkfifo(tmp_path / "phones.json")  # nobody writes it: an open for reading would hang
    with caplog.at_level(logging.WARNING):
        assert book() == {}
    assert "not a regular file" in caplog.text

    os.unlink(tmp_path / "phones.json")
    (tmp_path / "phones.json").write_bytes(b'{"\xff": {}}')
    assert book() == {}
    assert "not UTF-8" in caplog.text
