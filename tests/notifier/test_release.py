"""Quiet hours that hold: a SINGLE or DOUBLE waits for the release event at their end."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from notifier_support import CLICKED_AT, LambdaContext, button_event, click_config, messaging_config

from iotbutton_cli.notifier_lambda import alarms, failures, handler
from iotbutton_cli.notifier_lambda import twilio as twilio_rest
from iotbutton_cli.notifier_lambda.contract import ALARM_TABLE, release_event
from iotbutton_cli.sandbox.twilio import PlannedFailure

ALICE, BOB = "+15551230001", "+15551230002"
CLICK_TIME = datetime.fromtimestamp(CLICKED_AT / 1000, timezone.utc)


def window(start: int, end: int, hold: bool = True) -> dict:
    """Quiet hours ``start`` to ``end`` minutes from the click's own minute of day (UTC)."""
    minute = CLICK_TIME.hour * 60 + CLICK_TIME.minute
    quiet = {"start_minute": (minute + start) % 1440, "end_minute": (minute + end) % 1440}
    return {**quiet, "hold": True} if hold else quiet


def held_config(quiet: dict, **overrides) -> dict:
    return messaging_config(
        {
            "SINGLE": click_config(sms=[ALICE], call=[BOB]),
            "LONG": click_config(call=[BOB]),
        },
        quiet_hours=quiet,
        **overrides,
    )


def release_at(minutes_after_click: int, **more) -> dict:
    moment = CLICK_TIME + timedelta(minutes=minutes_after_click)
    stamp = moment.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    return release_event(stamp, **more)


def held_ids(deployment) -> list[str]:
    return alarms.TableLedger(ALARM_TABLE, deployment.dynamodb).held()


@pytest.fixture
def quiet(with_ledger):
    with_ledger.write_config(held_config(window(-30, 60)))
    return with_ledger


def test_a_single_in_quiet_hours_is_held_and_sends_nothing(quiet):
    result = handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    assert result["results"] == []
    assert result["held"].startswith("until ") and result["held"].endswith(" UTC")
    assert quiet.sent() == []
    assert held_ids(quiet) == [result["alarm"]]


def test_long_always_rings_in_quiet_hours_that_hold(quiet):
    result = handler.lambda_handler(button_event("LONG"), LambdaContext())

    assert "held" not in result
    assert [e["fields"]["To"] for e in quiet.sent("Calls")] == [BOB]
    assert held_ids(quiet) == []


def test_the_release_at_the_end_sends_the_held_click_as_configured(quiet):
    held = handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    released = handler.lambda_handler(release_at(60), LambdaContext())

    assert [r["alarm"] for r in released["released"]] == [held["alarm"]]
    assert [e["fields"]["To"] for e in quiet.sent("Messages")] == [ALICE]
    assert [e["fields"]["To"] for e in quiet.sent("Calls")] == [BOB]  # not SMS only: it is day
    assert held_ids(quiet) == []
    item = alarms.TableLedger(ALARM_TABLE, quiet.dynamodb).alarm(held["alarm"])
    assert item is not None and item["state"] == "alarm" and item["releasedAt"]


def test_a_release_while_still_quiet_keeps_the_click(quiet):
    held = handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    result = handler.lambda_handler(release_at(30), LambdaContext())

    assert result["kept"] == [held["alarm"]] and result["released"] == []
    assert quiet.sent() == []


def test_a_second_release_sends_nothing_twice(quiet):
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    handler.lambda_handler(release_at(60), LambdaContext())

    again = handler.lambda_handler(release_at(60), LambdaContext())

    assert again["released"] == []
    assert len(quiet.sent()) == 2


def test_a_repeat_press_while_held_is_the_same_alarm(quiet):
    first = handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    later = button_event("SINGLE", clickedAt=CLICKED_AT + 2000)

    second = handler.lambda_handler(later, LambdaContext("another-request"))

    assert second["ignored"].startswith(f"a repeat of alarm {first['alarm']}")
    assert held_ids(quiet) == [first["alarm"]]


def test_the_same_event_delivered_twice_is_held_once(quiet):
    first = handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    again = handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    assert again["alarm"] == first["alarm"] and again["held"]
    assert held_ids(quiet) == [first["alarm"]]


def test_force_sends_now_but_only_as_sms_while_quiet(quiet):
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    result = handler.lambda_handler(release_at(30, force=True), LambdaContext())

    assert len(result["released"]) == 1
    assert sorted(e["fields"]["To"] for e in quiet.sent("Messages")) == [ALICE, BOB]
    assert quiet.sent("Calls") == []


def test_a_config_that_stopped_holding_releases_at_once(quiet):
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    quiet.write_config(held_config(window(-30, 60, hold=False)))

    result = handler.lambda_handler(release_at(30, force=True), LambdaContext())

    assert len(result["released"]) == 1
    assert sorted(e["fields"]["To"] for e in quiet.sent("Messages")) == [ALICE, BOB]  # SMS only


def test_a_button_whose_own_hours_have_not_ended_stays_held(with_ledger):
    own = {
        "person": "Grandpa",
        "clicks": {"SINGLE": click_config(sms=[BOB])},
        "quiet_hours": window(-30, 120),
    }
    with_ledger.write_config(held_config(window(-30, 60), buttons={"G030JF0553648RUX": own}))
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    his = button_event("SINGLE", topicSerial="G030JF0553648RUX", serialNumber="G030JF0553648RUX")
    handler.lambda_handler(his, LambdaContext())
    assert len(held_ids(with_ledger)) == 2

    at_60 = handler.lambda_handler(release_at(60), LambdaContext())
    assert [r["serial"] for r in at_60["released"]] == ["G030JF0553648RUH"]
    assert [a.split("-")[0] for a in at_60["kept"]] == ["G030JF0553648RUX"]

    at_120 = handler.lambda_handler(release_at(120), LambdaContext())
    assert [r["serial"] for r in at_120["released"]] == ["G030JF0553648RUX"]
    assert held_ids(with_ledger) == []


def test_a_held_click_nobody_is_configured_for_any_more_is_dropped_from_the_list(quiet):
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    quiet.write_config(
        messaging_config({"LONG": click_config(call=[BOB])}, quiet_hours=window(-30, 60))
    )

    result = handler.lambda_handler(release_at(60), LambdaContext())

    assert "nobody is configured" in result["released"][0]["ignored"]
    assert held_ids(quiet) == [] and quiet.sent() == []


def test_a_failed_delivery_keeps_it_held_and_fails_the_invocation_for_lambda_to_retry(quiet):
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    quiet.twilio.plan(PlannedFailure(status=503, times=twilio_rest.MAX_ATTEMPTS, to=BOB))

    with pytest.raises(handler.DeliveryIncomplete):
        handler.lambda_handler(release_at(60), LambdaContext())
    assert len(held_ids(quiet)) == 1

    result = handler.lambda_handler(release_at(60), LambdaContext())  # Lambda's retry
    assert len(result["released"]) == 1
    assert sorted(e["fields"]["To"] for e in quiet.sent()) == [ALICE, BOB]


def test_without_the_table_a_held_click_goes_out_as_sms(deployment):
    deployment.write_config(held_config(window(-30, 60)))

    result = handler.lambda_handler(button_event("SINGLE"), LambdaContext())

    assert "held" not in result
    assert sorted(e["fields"]["To"] for e in deployment.sent("Messages")) == [ALICE, BOB]


def test_a_scheduled_time_far_from_the_clock_is_not_believed():
    from iotbutton_cli.notifier_lambda.release import release_time

    now = datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc)
    assert release_time({"scheduledTime": "2026-12-05T07:00:00Z"}, now) == now.replace(hour=7)
    assert release_time({"scheduledTime": "2027-01-05T07:00:00Z"}, now) == now
    assert release_time({"scheduledTime": "<aws.scheduler.scheduled-time>"}, now) == now
    assert release_time({"scheduledTime": 7}, now) == now


def test_a_release_lambda_gave_up_on_tells_the_owner(with_ledger, monkeypatch):
    told = []
    monkeypatch.setenv(
        "IOTBUTTON_OWNER_TOPIC", "arn:aws:sns:us-east-1:123456789012:iotbutton-owner"
    )
    monkeypatch.setattr(failures, "tell_owner", lambda *a: told.append(a) or "m-1")
    with_ledger.write_config(held_config(window(-30, 60)))
    record = {
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": release_at(60),
        "responsePayload": {"errorMessage": "delivery failed for 1 recipient(s): +15551230001"},
    }

    result = failures.failure_handler(json.loads(json.dumps(record)), LambdaContext())

    assert result["owner"] == "told"
    message = told[0][2]
    assert "still held" in message and "iotbutton notify release" in message
    assert "after 3 attempt(s)" in message


def test_holding_and_releasing_stay_within_the_notifiers_role(quiet, monkeypatch):
    """Every alarm-table call the notifier makes to hold and release a click is one its
    execution role allows (the policy `notify deploy` writes), on that table."""
    import botocore.client

    from iotbutton_cli.context import AppContext, Settings
    from iotbutton_cli.notify import resources

    calls: list[tuple[str, str]] = []
    original = botocore.client.BaseClient._make_api_call

    def recording(client, operation, params):
        if client.meta.service_model.service_name == "dynamodb":
            calls.append((f"dynamodb:{operation}", params.get("TableName", "")))
        return original(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    handler.lambda_handler(button_event("SINGLE"), LambdaContext())
    handler.lambda_handler(release_at(60), LambdaContext())
    monkeypatch.undo()

    ctx = AppContext(Settings(region="us-east-1"))
    ctx.__dict__.update(account_id="123456789012", partition="aws")  # moto's, as the handler's
    policy = resources.function_policy(ctx, resources.Names.for_context(ctx))
    (ledger,) = [s for s in policy["Statement"] if s["Sid"] == "KeepAlarmLedger"]
    assert {table for _, table in calls} == {ALARM_TABLE}
    assert ledger["Resource"].endswith(f":table/{ALARM_TABLE}")
    used = {action for action, _ in calls}
    assert "dynamodb:DeleteItem" in used  # the release takes the click off the held index
    assert used <= set(ledger["Action"])
