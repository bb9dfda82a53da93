"""The click on its thing shadow: the document, the outcomes, and that no shadow trouble ever
touches the click (moto's iot-data in-process, the Twilio stand-in over real HTTP)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from notifier_support import (
    CLICKED_AT,
    SERIAL,
    LambdaContext,
    button_event,
    click_config,
    messaging_config,
)

from iotbutton_cli.notifier_lambda import handler, shadow
from iotbutton_cli.sandbox.twilio import PlannedFailure

ALICE, BOB = "+15551230001", "+15551230002"
DATA_ENDPOINT = "https://data-ats.iot.us-east-1.amazonaws.com"


@pytest.fixture
def shadows(deployment: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The deployment with the button's thing, and the deploy's data endpoint set."""
    import boto3

    monkeypatch.setenv(shadow.DATA_ENDPOINT_ENV, DATA_ENDPOINT)
    boto3.client("iot", region_name="us-east-1").create_thing(thingName=SERIAL)
    shadow.forget_clients()
    yield boto3.client("iot-data", region_name="us-east-1")
    shadow.forget_clients()


def reported(data: Any, serial: str = SERIAL) -> dict[str, Any]:
    document = json.loads(data.get_thing_shadow(thingName=serial)["payload"].read())
    return dict(document["state"]["reported"])


def test_a_click_is_its_shadows_last_click(deployment, shadows):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    result = handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    clicked = datetime.fromtimestamp(CLICKED_AT / 1000, timezone.utc)
    assert reported(shadows) == {
        "lastClick": {
            "type": "SINGLE",
            "time": clicked.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "battery": "1650mV",
            "batteryMv": 1650,
            "alarm": result["alarm"],
            "outcome": "sent",
        }
    }


def test_a_click_replaces_the_last_one_whole(deployment, shadows):
    """Keys the new click has no value for are deleted, not left from the one before."""
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    odd = button_event("SINGLE", batteryVoltage="flat", clickedAt=CLICKED_AT + 60_000)
    handler.lambda_handler(odd, LambdaContext())

    click = reported(shadows)["lastClick"]
    assert click["battery"] == "flat" and "batteryMv" not in click


def test_a_repeat_keeps_its_alarms_outcome_and_an_ignored_click_says_so(with_ledger, shadows):
    with_ledger.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    again = button_event("SINGLE", clickedAt=CLICKED_AT + 1_000)

    repeat = handler.lambda_handler(again, LambdaContext())

    assert repeat["ignored"].startswith(shadow.REPEAT_REASON)  # what outcome_of looks for
    assert shadow.outcome_of(repeat) == "repeat"
    # A panicked second press is the same alarm: the first press's record stands.
    assert reported(shadows)["lastClick"]["outcome"] == "sent"
    assert reported(shadows)["lastClick"]["alarm"] == f"{SERIAL}-SINGLE-{CLICKED_AT}"
    handler.lambda_handler(button_event("DOUBLE"), LambdaContext())  # nobody for DOUBLE
    assert reported(shadows)["lastClick"]["outcome"] == "ignored"
    assert reported(shadows)["lastClick"]["type"] == "DOUBLE"


def test_a_click_lambda_retries_is_failed_on_the_shadow_and_still_raises(deployment, shadows):
    deployment.twilio.plan(PlannedFailure(status=500, times=10))
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    with pytest.raises(handler.DeliveryIncomplete):
        handler.lambda_handler(button_event(), LambdaContext())

    assert reported(shadows)["lastClick"]["outcome"] == "failed"


@pytest.mark.parametrize(
    ("result", "incomplete", "outcome"),
    [
        ({"results": [{"status": "queued"}, {"status": "skipped-duplicate"}]}, False, "sent"),
        ({"results": []}, False, "sent"),
        ({"results": [{"status": "queued"}, {"status": "failed"}]}, False, "partial"),
        ({"results": [{"status": "failed"}]}, False, "failed"),
        ({"results": [{"status": "queued"}]}, True, "failed"),
        ({"results": [], "ignored": "no recipients configured for LONG"}, False, "ignored"),
        ({"results": [], "ignored": "a repeat of alarm x (the same ...)"}, False, "repeat"),
        ({"results": [], "ignored": "anything", "repeatOf": "x"}, False, "repeat"),
        ({"results": [{"status": "failed"}], "escalation": [{"step": "1"}]}, False, "escalating"),
        ({"results": [], "escalation": [], "joinedEscalation": "x"}, False, "escalating"),
        ({"results": [], "escalation": {"error": "Twilio took none"}}, False, "failed"),
    ],
)
def test_outcomes(result, incomplete, outcome):
    assert shadow.outcome_of(result, incomplete) == outcome
    assert outcome in shadow.OUTCOMES


def test_the_escalation_a_click_belongs_to():
    assert shadow.escalation_of({"alarm": "a", "escalation": []}) == "a"
    assert shadow.escalation_of({"alarm": "b", "escalation": [], "joinedEscalation": "a"}) == "a"
    assert shadow.escalation_of({"alarm": "a", "escalation": {"error": "x"}}) is None
    assert shadow.escalation_of({"alarm": "a", "results": []}) is None


def test_an_escalations_end_reaches_its_click_and_never_a_newer_one(aws_env, shadows):
    escalating = {"alarm": "A1", "results": [], "escalation": [{"step": "1"}]}
    click = handler.parse_event(button_event("LONG"))
    shadow.report_click(click, escalating)
    assert reported(shadows)["lastClick"]["escalation"] == "A1"

    shadow.report_escalation_end(SERIAL, "A1", "acknowledged")
    shadow.report_escalation_end(SERIAL, "A1", "acknowledged")  # a callback posted again
    assert reported(shadows)["lastClick"]["outcome"] == "acknowledged"
    assert reported(shadows)["lastEscalation"] == {"alarm": "A1", "outcome": "acknowledged"}
    # A late retry of that click does not undo it.
    shadow.report_click(click, escalating)
    assert reported(shadows)["lastClick"]["outcome"] == "acknowledged"

    newer = handler.parse_event(button_event("SINGLE", clickedAt=CLICKED_AT + 5_000))
    shadow.report_click(newer, {"alarm": "A2", "results": [{"status": "queued"}]})
    shadow.report_escalation_end(SERIAL, "A3", "exhausted")  # some other escalation ends
    assert reported(shadows)["lastClick"]["alarm"] == "A2"
    assert reported(shadows)["lastClick"]["outcome"] == "sent"


def test_an_escalation_that_ended_before_its_click_was_reported(aws_env, shadows):
    """Every call refused at once: it is exhausted inside the click's own invocation."""
    shadow.report_escalation_end(SERIAL, "A1", "exhausted")
    click = handler.parse_event(button_event("LONG"))
    shadow.report_click(click, {"alarm": "A1", "results": [], "escalation": []})
    assert reported(shadows)["lastClick"]["outcome"] == "exhausted"


def test_a_refused_write_is_a_warning_and_the_click_goes_out(deployment, shadows, caplog):
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))
    unknown = button_event("SINGLE", topicSerial="NOTATHING", serialNumber="NOTATHING")

    with caplog.at_level(logging.INFO, logger="iotbutton.notifier"):
        result = handler.lambda_handler(unknown, LambdaContext())

    assert [item["status"] for item in result["results"]] == ["queued"]
    assert len(deployment.sent("Messages")) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "could not write the shadow of NOTATHING (ResourceNotFoundException)" in w for w in warnings
    )


def test_any_error_is_swallowed(aws_env, shadows, monkeypatch, caplog):
    def broken(**_: Any) -> Any:
        raise RuntimeError("the shadow service is on fire")

    monkeypatch.setattr(shadow._data_client(None), "update_thing_shadow", broken)
    with caplog.at_level(logging.WARNING, logger="iotbutton.notifier"):
        shadow.report_click(handler.parse_event(button_event()), {"alarm": "A", "results": []})
        shadow.report_escalation_end(SERIAL, "A", "exhausted")
    assert caplog.text.count("the shadow service is on fire") == 2


def test_nothing_is_written_without_the_deploys_endpoint(deployment, shadows, monkeypatch):
    monkeypatch.delenv(shadow.DATA_ENDPOINT_ENV)
    deployment.write_config(messaging_config({"SINGLE": click_config(sms=[ALICE])}))

    handler.lambda_handler(button_event(), LambdaContext())

    with pytest.raises(shadows.exceptions.ResourceNotFoundException):
        shadows.get_thing_shadow(thingName=SERIAL)


def test_nor_with_the_invocation_nearly_out_of_time(aws_env, shadows, caplog):
    nearly_over = LambdaContext(remaining_millis=shadow.MIN_REMAINING_MS - 1)
    with caplog.at_level(logging.WARNING, logger="iotbutton.notifier"):
        shadow.report_click(handler.parse_event(button_event()), {"results": []}, nearly_over)
    with pytest.raises(shadows.exceptions.ResourceNotFoundException):
        shadows.get_thing_shadow(thingName=SERIAL)
    assert "(NoTimeLeft): less than 7000 ms of the invocation left" in caplog.text


def test_its_calls_are_short(aws_env, shadows):
    config = shadow._data_client(None).meta.config
    assert config.connect_timeout == shadow.CONNECT_TIMEOUT_SECONDS <= 1
    assert config.read_timeout == shadow.READ_TIMEOUT_SECONDS <= 2
    assert config.retries["total_max_attempts"] == shadow.MAX_ATTEMPTS == 2
    assert shadow._data_client(None).meta.endpoint_url == DATA_ENDPOINT


@pytest.mark.parametrize("serial", ["unknown", "bad serial?", "x" * 129])
def test_a_serial_no_thing_can_have_is_reported_nowhere(serial):
    assert shadow.thing_name(serial) is None


def test_a_held_click_says_held_and_its_release_says_how_it_went(with_ledger, shadows):
    from test_release import held_config, release_at, window

    with_ledger.write_config(held_config(window(-30, 60)))

    held = handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    assert reported(shadows)["lastClick"]["outcome"] == "held"

    handler.lambda_handler(release_at(60), LambdaContext())
    click = reported(shadows)["lastClick"]
    assert click["alarm"] == held["alarm"] and click["outcome"] == "sent"


def test_a_release_never_overwrites_a_newer_click(with_ledger, shadows):
    from test_release import held_config, release_at, window

    with_ledger.write_config(held_config(window(-30, 60)))
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    long = handler.lambda_handler(
        button_event("LONG", clickedAt=CLICKED_AT + 1000), LambdaContext()
    )

    handler.lambda_handler(release_at(60), LambdaContext())

    click = reported(shadows)["lastClick"]
    assert click["alarm"] == long["alarm"] and click["type"] == "LONG"
