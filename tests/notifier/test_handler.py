"""The notifier handler end to end: moto S3/SSM, the Twilio stand-in over real HTTP."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import time
from xml.etree import ElementTree

import pytest
from notifier_support import (
    ACCOUNT_SID,
    API_KEY_SID,
    CLICKED_AT,
    CONFIG_KEY,
    SECRET,
    SENDER,
    SERIAL,
    LambdaContext,
    button_event,
    click_config,
    messaging_config,
)

from iotbutton_cli.notifier_lambda import contract, handler
from iotbutton_cli.notifier_lambda import twilio as twilio_rest
from iotbutton_cli.sandbox.twilio import PlannedFailure, TwilioStandIn

ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
TIME_PATTERN = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC"


def twiml_text(twiml: str) -> str:
    root = ElementTree.fromstring(twiml)
    assert root.tag == "Response"
    (say,) = list(root)
    assert say.tag == "Say"
    return say.text or ""


# -- happy paths -----------------------------------------------------------------------------


def test_click_sends_sms_and_call_with_rendered_message(deployment):
    deployment.write_config(
        messaging_config(
            {
                "SINGLE": click_config(
                    sms=[ALICE], call=[BOB], message="{person}/{serial}/{click}/{battery}/{time}"
                )
            }
        )
    )

    result = handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    assert result["serial"] == SERIAL and result["click"] == "SINGLE"
    assert "ignored" not in result
    [sms] = deployment.sent("Messages")
    [call] = deployment.sent("Calls")
    expected = rf"Grandma/{SERIAL}/SINGLE/1650mV/{TIME_PATTERN}"
    assert re.fullmatch(expected, sms["fields"]["Body"])
    assert sms["fields"]["To"] == ALICE and sms["fields"]["From"] == SENDER
    assert call["fields"]["To"] == BOB and call["fields"]["From"] == SENDER
    assert re.fullmatch(expected, twiml_text(call["fields"]["Twiml"]))
    assert sms["auth_user"] == ACCOUNT_SID and sms["account_sid"] == ACCOUNT_SID
    assert result["results"] == [
        {"channel": "sms", "to": ALICE, "status": "queued", "sid": sms["sid"], "attempts": 1},
        {"channel": "call", "to": BOB, "status": "queued", "sid": call["sid"], "attempts": 1},
    ]
    assert re.fullmatch(r"SM[0-9a-f]{32}", sms["sid"])
    assert re.fullmatch(r"CA[0-9a-f]{32}", call["sid"])


@pytest.mark.parametrize("click", ["SINGLE", "DOUBLE", "LONG"])
def test_each_click_type_uses_its_own_recipients_and_message(deployment, click):
    recipients = {"SINGLE": ALICE, "DOUBLE": BOB, "LONG": CAROL}
    deployment.write_config(
        messaging_config(
            {
                name: click_config(sms=[to], message=f"{name} from {{person}}")
                for name, to in recipients.items()
            }
        )
    )

    result = handler.lambda_handler(button_event(click), LambdaContext())

    [sms] = deployment.sent()
    assert sms["fields"]["To"] == recipients[click]
    assert sms["fields"]["Body"] == f"{click} from Grandma"
    assert [item["status"] for item in result["results"]] == ["queued"]


@pytest.mark.parametrize(
    ("sms", "call", "expected_resources"),
    [
        ([ALICE, BOB], [], ["Messages", "Messages"]),
        ([], [ALICE, BOB], ["Calls", "Calls"]),
        ([ALICE], [ALICE, BOB], ["Calls", "Calls", "Messages"]),
    ],
    ids=["sms-only", "call-only", "both"],
)
def test_sms_only_call_only_and_both(deployment, sms, call, expected_resources):
    deployment.write_config(messaging_config({"DOUBLE": click_config(sms=sms, call=call)}))

    result = handler.lambda_handler(button_event("DOUBLE"), LambdaContext())

    assert sorted(entry["resource"] for entry in deployment.sent()) == expected_resources
    assert [(item["channel"], item["to"]) for item in result["results"]] == [
        *[("sms", to) for to in sms],
        *[("call", to) for to in call],
    ]
    assert {item["status"] for item in result["results"]} == {"queued"}


def test_api_key_is_the_basic_auth_user_when_configured(deployment):
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE])}, api_key_sid=API_KEY_SID)
    )

    handler.lambda_handler(button_event(), LambdaContext())

    [sms] = deployment.sent()
    assert sms["auth_user"] == API_KEY_SID
    assert sms["account_sid"] == ACCOUNT_SID


def test_number_listed_twice_is_sent_once(deployment):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE, ALICE])}))

    result = handler.lambda_handler(button_event(), LambdaContext())

    assert len(deployment.sent()) == 1
    assert [item["status"] for item in result["results"]] == ["queued", "skipped-duplicate"]


def test_twiml_escapes_markup_in_the_spoken_text(deployment):
    person = "Tom & <Jerry>"
    deployment.write_config(
        messaging_config(
            {"LONG": click_config(call=[ALICE], message="Help {person}")}, person=person
        )
    )

    result = handler.lambda_handler(button_event("LONG"), LambdaContext())

    assert result["results"][0]["status"] == "queued"
    [call] = deployment.sent("Calls")
    assert call["fields"]["Twiml"] == (
        "<Response><Say>Help Tom &amp; &lt;Jerry&gt;</Say></Response>"
    )
    assert twiml_text(call["fields"]["Twiml"]) == "Help Tom & <Jerry>"


def test_long_message_is_shortened_to_twilios_twiml_limit(deployment):
    deployment.write_config(
        messaging_config({"LONG": click_config(call=[ALICE], message="&" * 3000)})
    )

    result = handler.lambda_handler(button_event("LONG"), LambdaContext())

    assert result["results"][0]["status"] == "queued"
    [call] = deployment.sent("Calls")
    assert len(call["fields"]["Twiml"]) <= contract.TWIML_MAX_CHARS
    assert set(twiml_text(call["fields"]["Twiml"])) == {"&"}


# -- Twilio errors and retries ---------------------------------------------------------------


def test_wrong_secret_fails_with_20003_and_forgets_the_cached_secret(deployment, monkeypatch):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    with TwilioStandIn(credentials={ACCOUNT_SID: "a-different-secret"}) as strict_twilio:
        monkeypatch.setenv("TWILIO_API_BASE", strict_twilio.base_url)
        with pytest.raises(handler.DeliveryIncomplete) as raised:
            handler.lambda_handler(button_event(), LambdaContext())

    [item] = raised.value.result["results"]
    assert item["status"] == "failed"
    assert item["error"] == {"code": 20003, "message": "Authenticate"}
    assert item["attempts"] == 1, "a 401 is not retried within the invocation"
    assert [entry["http_status"] for entry in strict_twilio.refused()] == [401]
    assert strict_twilio.outbox() == [], "an unauthenticated request is never in the outbox"
    assert handler._secret_cache == {}, "the next invocation must re-read the secret"


def test_invalid_number_fails_without_raising_and_others_still_get_it(deployment, caplog):
    invalid = "+15005550001"  # Twilio's magic "invalid number"
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[invalid, ALICE])}))

    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        result = handler.lambda_handler(button_event(), LambdaContext())

    failed, sent = result["results"]
    assert failed["status"] == "failed" and failed["error"]["code"] == 21211
    assert failed["attempts"] == 1
    assert sent["status"] == "queued" and sent["to"] == ALICE
    assert "invalid 'To' phone number" in caplog.text
    assert deployment.sleeps == []


def test_throttled_request_is_retried_and_then_sent(deployment):
    deployment.twilio.plan(PlannedFailure(status=429, code=20429, times=1))
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    result = handler.lambda_handler(button_event(), LambdaContext())

    [item] = result["results"]
    assert item["status"] == "queued" and item["attempts"] == 2
    assert [entry["http_status"] for entry in deployment.twilio.outbox()] == [429, 201]
    [delay] = deployment.sleeps
    assert twilio_rest.BACKOFF_BASE_SECONDS / 2 <= delay <= twilio_rest.BACKOFF_BASE_SECONDS


def test_server_errors_exhaust_retries_with_growing_backoff(deployment):
    deployment.twilio.plan(PlannedFailure(status=500, times=10, to=BOB))
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE, BOB])}))

    with pytest.raises(handler.DeliveryIncomplete) as raised:
        handler.lambda_handler(button_event(), LambdaContext())

    alice, bob = raised.value.result["results"]
    assert alice["status"] == "queued"
    assert bob["status"] == "failed" and bob["attempts"] == twilio_rest.MAX_ATTEMPTS
    assert bob["error"]["code"] == 20500
    first, second = deployment.sleeps
    base = twilio_rest.BACKOFF_BASE_SECONDS
    assert first <= base < second <= 2 * base


def test_network_errors_are_retried_then_reported(deployment, monkeypatch):
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("TWILIO_API_BASE", f"http://127.0.0.1:{closed_port}")
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    with pytest.raises(handler.DeliveryIncomplete) as raised:
        handler.lambda_handler(button_event(), LambdaContext())

    [item] = raised.value.result["results"]
    assert item["status"] == "failed" and item["attempts"] == twilio_rest.MAX_ATTEMPTS
    assert item["error"]["message"].startswith("network error")
    assert len(deployment.sleeps) == twilio_rest.MAX_ATTEMPTS - 1


def test_no_request_starts_when_the_invocation_is_out_of_time(deployment):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    with pytest.raises(handler.DeliveryIncomplete) as raised:
        handler.lambda_handler(button_event(), LambdaContext(remaining_millis=1500))

    assert raised.value.result["results"][0]["error"]["message"] == (
        "no time left in this invocation"
    )
    assert deployment.twilio.outbox() == []


# -- idempotency across Lambda's retries ---------------------------------------------------


def test_retried_invocation_only_sends_to_recipients_that_failed(deployment):
    deployment.twilio.plan(PlannedFailure(status=503, times=twilio_rest.MAX_ATTEMPTS, to=CAROL))
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE, CAROL], call=[BOB])})
    )
    context = LambdaContext(aws_request_id="retry-me")

    with pytest.raises(handler.DeliveryIncomplete):
        handler.lambda_handler(button_event(), context)
    retried = handler.lambda_handler(button_event(), context)  # Lambda's async retry

    statuses = {(item["channel"], item["to"]): item["status"] for item in retried["results"]}
    assert statuses == {
        ("sms", ALICE): "skipped-duplicate",
        ("sms", CAROL): "queued",
        ("call", BOB): "skipped-duplicate",
    }
    delivered = [(entry["resource"], entry["fields"]["To"]) for entry in deployment.sent()]
    assert sorted(delivered) == [("Calls", BOB), ("Messages", ALICE), ("Messages", CAROL)]


def test_a_fault_sending_to_one_recipient_never_unrecords_the_others(deployment, monkeypatch):
    """An unexpected error for one recipient (here the first) is a retryable failure of that
    recipient alone: the others stay recorded, so Lambda's retry does not message them twice."""
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE], call=[BOB])}))
    context = LambdaContext(aws_request_id="fault-once")
    real_sms_body = twilio_rest.sms_body

    def broken_sms_body(text):
        raise RuntimeError("injected fault\nsecond line")

    monkeypatch.setattr(twilio_rest, "sms_body", broken_sms_body)
    with pytest.raises(handler.DeliveryIncomplete) as raised:
        handler.lambda_handler(button_event(), context)
    monkeypatch.setattr(twilio_rest, "sms_body", real_sms_body)
    retried = handler.lambda_handler(button_event(), context)

    sms, call = raised.value.result["results"]
    assert sms["status"] == "failed"
    assert sms["error"]["message"] == "internal error: RuntimeError: injected fault?second line"
    assert call["status"] == "queued"
    assert [item["status"] for item in retried["results"]] == ["queued", "skipped-duplicate"]
    assert sorted(entry["resource"] for entry in deployment.sent()) == ["Calls", "Messages"]


def test_skipped_duplicates_carry_the_original_sid(deployment):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    context = LambdaContext(aws_request_id="same-id")

    first = handler.lambda_handler(button_event(), context)
    again = handler.lambda_handler(button_event(), context)
    new_click = handler.lambda_handler(
        button_event(clickedAt=CLICKED_AT + 60_000), LambdaContext(aws_request_id="other-id")
    )

    assert again["results"] == [
        {
            "channel": "sms",
            "to": ALICE,
            "status": "skipped-duplicate",
            "sid": first["results"][0]["sid"],
        }
    ]
    assert new_click["results"][0]["status"] == "queued"
    assert len(deployment.sent()) == 2


# -- the topic names the button ------------------------------------------------------------


def logged_warnings(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "iotbutton.notifier" and record.levelno == logging.WARNING
    ]


def test_the_topic_serial_names_the_button_whatever_the_payload_claims(deployment, caplog):
    """A stolen certificate may publish only to its own topic, but its payload can claim any
    serial: the messages name the topic's button, and the log shows both."""
    deployment.write_config(
        messaging_config({"LONG": click_config(sms=[ALICE], call=[BOB], message="{serial}")})
    )
    event = button_event("LONG", serialNumber="G030VICTIM000001")

    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        result = handler.lambda_handler(event, LambdaContext())

    [sms] = deployment.sent("Messages")
    [call] = deployment.sent("Calls")
    assert sms["fields"]["Body"] == SERIAL
    assert twiml_text(call["fields"]["Twiml"]) == SERIAL
    assert result["serial"] == SERIAL
    [warning] = logged_warnings(caplog)
    assert "'G030VICTIM000001'" in warning and f"'{SERIAL}'" in warning
    assert result["notes"] == [warning]


def test_a_claimed_serial_is_shown_sanitised_in_the_warning(deployment, caplog):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    event = button_event(serialNumber="EVIL\n[ERROR] forged log line\ud800")

    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        handler.lambda_handler(event, LambdaContext())

    [warning] = logged_warnings(caplog)
    assert "'EVIL??ERROR??forged?log?line?'" in warning
    assert "\n" not in warning


def test_an_event_from_an_older_rule_falls_back_to_the_payload_serial_and_says_so(
    deployment, caplog
):
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE], message="{serial}")})
    )
    event = button_event()
    del event["topicSerial"]

    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        result = handler.lambda_handler(event, LambdaContext())

    assert deployment.sent()[0]["fields"]["Body"] == SERIAL
    assert result["serial"] == SERIAL
    [warning] = logged_warnings(caplog)
    assert "no topicSerial" in warning and "notify deploy" in warning


@pytest.mark.parametrize(
    ("serial", "shown"),
    [
        ("G030JF0553648RUH", "G030JF0553648RUH"),
        ("G030:_-a", "G030:_-a"),
        ("G030 <b>&amp;", "G030??b??amp?"),
        ("G030\u000bJF\u0000", "G030?JF?"),
        ("G030\ud800", "G030?"),
        ("Gr\u00fc\U0001f600", "Gr??"),
        ("A" * 1700, "A" * 128),
        ("", "unknown"),
        (None, "unknown"),
        (42, "unknown"),
        ({"nested": "object"}, "unknown"),
    ],
)
def test_a_serial_reaches_the_message_only_as_a_thing_name_or_sanitised(
    deployment, caplog, serial, shown
):
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE], call=[BOB], message="{serial}")})
    )

    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        result = handler.lambda_handler(
            button_event(topicSerial=serial, serialNumber=serial), LambdaContext()
        )

    assert [item["status"] for item in result["results"]] == ["queued", "queued"]
    assert deployment.sent("Messages")[0]["fields"]["Body"] == shown
    assert twiml_text(deployment.sent("Calls")[0]["fields"]["Twiml"]) == shown
    assert result["serial"] == shown
    valid = shown == serial
    assert bool(logged_warnings(caplog)) is not valid, "an invalid serial is logged, once"


# -- odd events are alarms too ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "serial", "click"),
    [
        (None, "unknown", "SINGLE"),
        ("SINGLE", "unknown", "SINGLE"),
        (["SINGLE"], "unknown", "SINGLE"),
        (17, "unknown", "SINGLE"),
        ({}, "unknown", "SINGLE"),
        ({"clickType": "LONG"}, "unknown", "LONG"),
        ({"topicSerial": SERIAL}, SERIAL, "SINGLE"),
        ({"serialNumber": SERIAL}, SERIAL, "SINGLE"),
        ({"serialNumber": 42, "clickType": "DOUBLE"}, "unknown", "DOUBLE"),
        ({"topicSerial": SERIAL, "clickType": ["SINGLE"]}, SERIAL, "SINGLE"),
        ({"topicSerial": SERIAL, "clickType": "TRIPLE"}, SERIAL, "SINGLE"),
        ({"topicSerial": SERIAL, "clickType": "single"}, SERIAL, "SINGLE"),
        ({"topicSerial": SERIAL, "clickType": " Long\n"}, SERIAL, "LONG"),
        ({"topicSerial": SERIAL, "clickType": None}, SERIAL, "SINGLE"),
    ],
)
def test_a_malformed_event_still_raises_the_alarm(deployment, caplog, event, serial, click):
    deployment.write_config(
        messaging_config(
            {
                name: click_config(sms=[ALICE], call=[BOB], message=f"{name} {{serial}}")
                for name in contract.CLICK_TYPES
            }
        )
    )

    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        result = handler.lambda_handler(event, LambdaContext())

    assert "ignored" not in result
    assert (result["serial"], result["click"]) == (serial, click)
    assert [item["status"] for item in result["results"]] == ["queued", "queued"]
    assert deployment.sent("Messages")[0]["fields"]["Body"] == f"{click} {serial}"
    assert logged_warnings(caplog), "what was odd about the event is logged"
    assert json.loads(caplog.records[-1].getMessage()) == result


@pytest.mark.parametrize(
    ("battery", "shown"),
    [
        ("1650mV", "1650mV"),
        (1650, "1650"),
        (1.65, "1.65"),
        (10**40, "unknown"),
        (True, "unknown"),
        (None, "unknown"),
        ("", "unknown"),
        ("  ", "unknown"),
        (["1650mV"], "unknown"),
        ({"mV": 1650}, "unknown"),
        ("\u000b1650\u0000mV\u000c", "1650?mV"),  # strip() takes \v and \f
        ("x" * 100_000, "x" * 15 + "\u2026"),
    ],
)
def test_a_battery_reading_of_any_type_renders_as_short_text(deployment, battery, shown):
    deployment.write_config(
        messaging_config(
            {"SINGLE": click_config(sms=[ALICE], call=[BOB], message="battery {battery}")}
        )
    )

    result = handler.lambda_handler(button_event(batteryVoltage=battery), LambdaContext())

    assert [item["status"] for item in result["results"]] == ["queued", "queued"]
    assert deployment.sent("Messages")[0]["fields"]["Body"] == f"battery {shown}"
    assert twiml_text(deployment.sent("Calls")[0]["fields"]["Twiml"]) == f"battery {shown}"


def test_the_rendered_text_carries_nothing_xml_or_a_phone_refuses(deployment):
    """The person comes from the config, but the rendered text is cleaned as a whole."""
    person = "Gran\u0000dma\u000b\u0085\ud800 \U0001f600\ttab"
    deployment.write_config(
        messaging_config(
            {"LONG": click_config(sms=[ALICE], call=[BOB], message="{person}\nline two")},
            person=person,
        )
    )

    result = handler.lambda_handler(button_event("LONG"), LambdaContext())

    assert [item["status"] for item in result["results"]] == ["queued", "queued"]
    expected = "Gran?dma??? \U0001f600\ttab\nline two"
    assert deployment.sent("Messages")[0]["fields"]["Body"] == expected
    assert twiml_text(deployment.sent("Calls")[0]["fields"]["Twiml"]) == expected


def test_an_sms_is_cut_to_1600_utf16_code_units(deployment):
    """Twilio counts UTF-16 code units: an emoji takes two."""
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE], message="\U0001f600" * 900)})
    )

    result = handler.lambda_handler(button_event(), LambdaContext())

    assert result["results"][0]["status"] == "queued"
    body = deployment.sent()[0]["fields"]["Body"]
    assert len(body.encode("utf-16-le")) // 2 <= 1600
    assert body == "\U0001f600" * 799 + "\u2026"


def test_log_lines_are_one_line_and_always_encode(deployment, caplog):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    event = button_event(clickType="TRI\nPLE\ud800", serialNumber="a\u2028b", topicSerial="c\rd")

    with caplog.at_level(logging.DEBUG, logger="iotbutton.notifier"):
        handler.lambda_handler(event, LambdaContext())

    for record in caplog.records:
        line = record.getMessage()
        assert line.splitlines() == [line]
        line.encode("utf-8")  # no lone surrogate


def test_click_missing_from_config_is_ignored(deployment):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    result = handler.lambda_handler(button_event("LONG"), LambdaContext())

    assert result["ignored"] == "no recipients configured for LONG"
    assert deployment.twilio.outbox() == []


def test_missing_battery_voltage_still_raises_the_alarm(deployment):
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE], message="battery {battery}")})
    )
    event = button_event()
    del event["batteryVoltage"]

    handler.lambda_handler(event, LambdaContext())

    assert deployment.sent()[0]["fields"]["Body"] == "battery unknown"


# -- config and secret -----------------------------------------------------------------------


def test_config_and_secret_are_cached_across_warm_invocations(deployment, monkeypatch):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    handler.lambda_handler(button_event(), LambdaContext(aws_request_id="one"))
    deployment.s3.delete_object(Bucket="iotbutton-notifier-test", Key=CONFIG_KEY)

    second_click = button_event(clickedAt=CLICKED_AT + 60_000)
    handler.lambda_handler(second_click, LambdaContext(aws_request_id="two"))  # from cache

    monkeypatch.setenv("IOTBUTTON_CONFIG_KEY", "notifier/other.json")  # a new key is re-read
    with pytest.raises(Exception, match="NoSuchKey"):
        handler.lambda_handler(button_event(), LambdaContext(aws_request_id="three"))
    assert len(deployment.sent()) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version must be 1"),
        ({"account_sid": "XX123"}, "account_sid must start with AC"),
        ({"api_key_sid": "AC123"}, "api_key_sid"),
        ({"clicks": {"TRIPLE": click_config(sms=[ALICE])}}, "unknown click type"),
        ({"clicks": {"SINGLE": click_config(sms=ALICE)}}, "clicks.SINGLE.sms"),
        ({"clicks": {"SINGLE": click_config(sms=[ALICE], message="{name}")}}, "{name}"),
        ({"from": ""}, "from must be a non-empty string"),
    ],
)
def test_broken_config_is_a_config_error(deployment, change, message):
    config = messaging_config({"SINGLE": click_config(sms=[ALICE])})
    config.update(change)
    deployment.write_config(config)

    with pytest.raises(contract.ConfigError, match=re.escape(message)):
        handler.lambda_handler(button_event(), LambdaContext())
    assert deployment.twilio.outbox() == []


def test_missing_environment_is_a_config_error(deployment, monkeypatch):
    monkeypatch.delenv("IOTBUTTON_SECRET_PARAMETER")

    with pytest.raises(contract.ConfigError, match="IOTBUTTON_SECRET_PARAMETER"):
        handler.lambda_handler(button_event(), LambdaContext())


# -- secrets stay secret ---------------------------------------------------------------------


def test_secret_never_reaches_logs_result_or_outbox(
    deployment, caplog, capsys, tmp_path, monkeypatch
):
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE, CAROL], call=[BOB])})
    )
    failures = [PlannedFailure(status=401, to=BOB), PlannedFailure(status=429, to=ALICE)]
    recording_twilio = TwilioStandIn(tmp_path / "outbox.jsonl", failures)

    with recording_twilio, caplog.at_level(logging.DEBUG):
        monkeypatch.setenv("TWILIO_API_BASE", recording_twilio.base_url)
        with pytest.raises(handler.DeliveryIncomplete) as raised:
            handler.lambda_handler(button_event(), LambdaContext())

    basic_token = base64.b64encode(f"{ACCOUNT_SID}:{SECRET}".encode()).decode()
    captured = capsys.readouterr()
    places = {
        "log": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "result": json.dumps(raised.value.result),
        "exception": str(raised.value),
        "outbox": json.dumps(recording_twilio.outbox()),
        "outbox file": (tmp_path / "outbox.jsonl").read_text(),
    }
    for place, text in places.items():
        assert SECRET not in text, place
        assert basic_token not in text, place
    assert ALICE in places["outbox file"], "the outbox file was written"
    assert "failed" in caplog.text


# -- templates -------------------------------------------------------------------------------


def test_template_fields_are_the_documented_ones():
    assert contract.TEMPLATE_FIELDS == (
        "person",
        "serial",
        "click",
        "battery",
        "time",
        "address",
        "notes",
    )
    assert contract.is_free_field("fields.room") and not contract.is_free_field("fields.a.b")


def test_render_fills_fields_and_keeps_escaped_braces():
    fields = {"person": "Ann", "serial": "S", "click": "LONG", "battery": "1.5V", "time": "t"}

    assert contract.render("{{ {person} }} {click}", fields) == "{ Ann } LONG"


@pytest.mark.parametrize(
    "template",
    ["{}", "{0}", "{name}", "{person.__class__}", "{serial[0]}", "{time:>20}", "{person!r}", "{"],
)
def test_render_refuses_anything_but_plain_known_fields(template):
    fields = dict.fromkeys(contract.TEMPLATE_FIELDS, "x")

    with pytest.raises(contract.TemplateError):
        contract.render(template, fields)


def test_render_needs_a_value_for_every_field_used():
    with pytest.raises(contract.TemplateError, match="battery"):
        contract.render("{battery}", {"person": "x"})


def test_time_is_formatted_in_utc():
    from datetime import datetime, timedelta, timezone

    moment = datetime(2026, 11, 22, 0, 4, tzinfo=timezone(timedelta(hours=1)))

    assert contract.format_time(moment) == "2026-11-21 23:04 UTC"


# -- the click's own time --------------------------------------------------------------------


def test_time_is_when_iot_core_received_the_click_not_when_the_function_runs(deployment):
    """Lambda may retry a click hours later: ``{time}`` is the rule's clickedAt."""
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE], message="{time}")})
    )
    six_hours_ago = int(time.time() * 1000) - 6 * 3600 * 1000
    from datetime import datetime, timezone

    result = handler.lambda_handler(button_event(clickedAt=six_hours_ago), LambdaContext())

    [sms] = deployment.sent("Messages")
    expected = datetime.fromtimestamp(six_hours_ago / 1000, timezone.utc)
    assert sms["fields"]["Body"] == expected.strftime("%Y-%m-%d %H:%M UTC")
    assert "notes" not in result


@pytest.mark.parametrize(
    ("clicked_at", "says"),
    [
        (handler.MISSING, "event has no clickedAt"),
        ("1795647840123", "clickedAt '1795647840123' is not a time"),
        (True, "clickedAt (bool) is not a time"),
        (5, "clickedAt (int) is not a time"),
        (10**20, "clickedAt (int) is not a time"),
    ],
)
def test_an_event_without_a_usable_click_time_uses_the_run_time_and_says_so(
    deployment, caplog, clicked_at, says
):
    deployment.write_config(
        messaging_config({"SINGLE": click_config(sms=[ALICE], message="{time}")})
    )
    event = button_event()
    if clicked_at is handler.MISSING:
        del event["clickedAt"]
    else:
        event["clickedAt"] = clicked_at
    from datetime import datetime, timezone

    before = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        result = handler.lambda_handler(event, LambdaContext())

    [sms] = deployment.sent("Messages")
    sent_at = datetime.strptime(sms["fields"]["Body"], "%Y-%m-%d %H:%M UTC")
    assert sent_at.replace(tzinfo=timezone.utc) >= before
    [warning] = logged_warnings(caplog)
    assert says in warning and result["notes"] == [warning]


def test_the_init_phase_reads_config_and_secret_before_the_first_click(deployment):
    import os

    deployment.write_config(messaging_config({"SINGLE": click_config(sms=["+15551230001"])}))
    assert handler.warm_up(os.environ) is True
    # The first click finds both read: with S3 and SSM now emptied, it still sends its SMS.
    deployment.s3.delete_object(Bucket=os.environ["IOTBUTTON_CONFIG_BUCKET"], Key=CONFIG_KEY)
    import boto3

    boto3.client("ssm", region_name="us-east-1").delete_parameter(
        Name=os.environ["IOTBUTTON_SECRET_PARAMETER"]
    )
    result = handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    assert [(r["channel"], r["status"]) for r in result["results"]] == [("sms", "queued")]


def test_an_init_phase_that_cannot_read_leaves_the_error_to_the_click(deployment, monkeypatch):
    import os

    monkeypatch.setenv("IOTBUTTON_CONFIG_KEY", "no-such-config.json")
    assert handler.warm_up(os.environ) is False  # no exception: Lambda's init does not fail
    with pytest.raises(Exception, match=r"NoSuchKey|does not exist"):
        handler.lambda_handler(button_event("SINGLE"), LambdaContext())
