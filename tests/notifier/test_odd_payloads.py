"""Whatever an event holds, every configured person gets the alarm (hypothesis).

Arbitrary events go through the real handler to the Twilio stand-in, which checks each request
against Twilio's OpenAPI description and Twilio's own rules (E.164 numbers, a Body of at most 1600
characters, TwiML of at most 4000 characters that is well-formed XML). For every event: each
recipient gets a 201, no exception escapes, the result says every recipient was sent to, and each
log line is one line that encodes.
"""

from __future__ import annotations

import itertools
import json
import logging
from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from notifier_support import SERIAL, LambdaContext, click_config, messaging_config

from iotbutton_cli.notifier_lambda import contract, handler

ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
EXAMPLES = 40  # each example is three HTTP requests, each checked against Twilio's API description
XML_FORBIDDEN = {*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF}

nasty_characters = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates: json.loads makes them from "\ud800"
    st.sampled_from(["\u0000", "\u000b", "\u0085", "\u2028", "&", "<", ">", "\U0001f600"]),
)
nasty_text = st.one_of(
    st.text(nasty_characters, max_size=30),
    st.builds(lambda char, count: char * count, nasty_characters, st.integers(1_600, 2_500)),
    st.builds(lambda char: char * 100_000, nasty_characters),
    st.sampled_from(
        ["SINGLE", "double", " Long ", "TRIPLE", "", "]]>", SERIAL, "G030JF0553648RUX"]
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | nasty_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(nasty_text, children, max_size=3)
    ),
    max_leaves=6,
)
button_fields = st.fixed_dictionaries(
    {},
    optional={
        "serialNumber": json_values,
        "topicSerial": json_values,
        "clickType": json_values,
        "batteryVoltage": json_values,
    },
)
events = st.one_of(
    json_values,
    button_fields,
    st.builds(
        lambda extra, fields: {**extra, **fields},
        st.dictionaries(nasty_text, json_values, max_size=3),
        button_fields,
    ),
)

TEMPLATES = {
    "plain": ("Grandma", "{person}: {click} on {serial} at {time}, battery {battery}"),
    # The person is the deployer's, but the handler cleans the rendered text as a whole; a long
    # template of '&' makes the TwiML bisection and the SMS cut work.
    "hostile": (
        "Tom & <Jerry>\u000b\ud800\u0000",
        "{person} {serial} {battery} {click} " + "&" * 1_560,
    ),
}
request_ids = itertools.count()


@pytest.fixture(params=sorted(TEMPLATES))
def configured(request, deployment):
    person, message = TEMPLATES[request.param]
    deployment.write_config(
        messaging_config(
            {
                click: click_config(sms=[ALICE, BOB], call=[CAROL], message=message)
                for click in contract.CLICK_TYPES
            },
            person=person,
        )
    )
    return deployment


def assert_twilio_would_take(entry: dict) -> None:
    """Beyond the stand-in's checks: Twilio counts a Body in UTF-16 code units."""
    assert entry["http_status"] == 201, entry.get("error")
    fields = entry["fields"]
    text = fields.get("Body") if entry["resource"] == "Messages" else fields["Twiml"]
    assert not {ord(char) for char in text} & XML_FORBIDDEN
    if entry["resource"] == "Messages":
        assert len(text.encode("utf-16-le")) // 2 <= 1600
    else:
        assert len(text) <= 4000
        assert ElementTree.fromstring(text).tag == "Response"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(event=events)
@example(event={"serialNumber": "\ud800", "clickType": "SINGLE", "batteryVoltage": "1650mV"})
@example(event={"topicSerial": "G030\u000b\u0000", "clickType": "LONG", "batteryVoltage": "\u000b"})
@example(event={"topicSerial": "A" * 1_700, "clickType": "DOUBLE", "batteryVoltage": "9" * 100_000})
@example(event={"topicSerial": SERIAL, "batteryVoltage": {"mV": [1650]}, "clickType": {"a": None}})
@example(event=[{"serialNumber": SERIAL}])
@example(event=None)
def test_every_recipient_gets_the_alarm_whatever_the_event_holds(configured, caplog, event):
    caplog.clear()
    before = len(configured.twilio.outbox())
    context = LambdaContext(aws_request_id=f"odd-payload-{next(request_ids)}")

    with caplog.at_level(logging.DEBUG, logger="iotbutton.notifier"):
        result = handler.lambda_handler(event, context)

    assert "ignored" not in result
    assert [(item["channel"], item["to"], item["status"]) for item in result["results"]] == [
        ("sms", ALICE, "queued"),
        ("sms", BOB, "queued"),
        ("call", CAROL, "queued"),
    ]
    assert result["click"] in contract.CLICK_TYPES
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # Lambda can return it
    new = configured.twilio.outbox()[before:]
    assert len(new) == 3
    for entry in new:
        assert_twilio_would_take(entry)
    for record in caplog.records:
        line = record.getMessage()
        assert line.splitlines() == [line]
        line.encode("utf-8")
