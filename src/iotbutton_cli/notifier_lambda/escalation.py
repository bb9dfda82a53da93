"""Escalation: call one step of people at a time until someone presses 1 to say they are coming.

For a person who pressed the button because they need help, an SMS nobody reads and a call that
reaches voicemail are the same as nothing. A click type with an ``escalation`` calls the first
step's numbers (at once), speaks the message and asks for a key (``<Gather numDigits="1">``);
answering-machine detection (``MachineDetection=Enable``) makes voicemail count as not answered.
When every call of the step has ended without a 1 (not answered, busy, failed, voicemail, hung up,
another key), the next step is called; after the last step, the list again, ``rounds`` times.
Then nobody came: everyone, and the owner through SNS, gets the ``exhausted`` text.

Callback-driven, not a Step Functions machine: Twilio already times each step (a call rings
``Timeout`` seconds, then ends ``no-answer``) and posts what happened to the function URL, signed;
each callback is one small invocation that reads the alarm table and moves the escalation on with
a conditional write (:mod:`.escalation_ledger`). A state machine would add a service, its IAM
role and its own retries only to wait for callbacks that carry the state anyway, and the sandbox
could not run it faithfully (moto does not execute Step Functions' tasks).

What keeps it right under retries and crashes:

* every callback URL carries Twilio's connection overrides (``#rc=3&rp=5xx,ct,rt``), so a
  callback this function failed to handle (a crash: Lambda answers 502) is posted again;
* each handler starts from the table, never from the callback alone: a late or repeated
  callback of an earlier step finds the escalation moved on and only makes sure the current
  step's calls were placed (:meth:`Escalator.resume`);
* a call is claimed before its request and placed at most once per step; a claim whose request
  never got its answer is settled by asking Twilio for the calls to that number;
* acknowledging, and each step's end, are conditional writes: one wins, the others are told.
"""

from __future__ import annotations

import functools
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from . import alarms, receipts, shadow
from .contract import (
    ACK_DIGIT,
    CALLBACK_ALARM_PARAMETER,
    CALLBACK_ATTEMPT_PARAMETER,
    PLAIN_SAY,
    Escalation,
    SayOptions,
    escalation_twiml,
    fitted_twiml,
    format_time,
    render,
    twiml,
)
from .escalation_ledger import (
    ACKNOWLEDGED,
    EXHAUSTED,
    RETRYABLE,
    RINGING,
    EscalationLedger,
    Position,
    call_ended,
    channel_of,
    position_of,
    position_text,
)
from .text import UNSAFE_IN_MESSAGE, log, printable
from .twilio import TwilioClient, TwilioOutcome

ESCALATION_PARAMETER = receipts.ESCALATION_PARAMETER
EVENT_PARAMETER = "event"
GATHER_EVENT = "gather"
# Twilio's connection overrides: post a callback again when this function failed to take it.
RETRY_OVERRIDES = "rc=3&rp=5xx,ct,rt"
ACK_CHANNEL = receipts.ACK_CHANNEL
EXHAUSTED_CHANNEL = receipts.EXHAUSTED_CHANNEL
OWNER_CHANNEL = "exhausted-owner"
# How often a claim someone else holds is looked at again while its attempt may be running.
SETTLE_POLL_SECONDS = 0.5
MAX_WORKERS = 8
sleep: Callable[[float], None] = time.sleep  # replaced by tests
EXHAUSTED_SUBJECT = "iotbutton: nobody acknowledged an alarm"


class NobodyRang(RuntimeError):
    """Twilio refused every call of the escalation with an error a retry may cure (it is down,
    or throttling): ending it as "nobody acknowledged" would be a lie, so the click is tried
    again (and, when Lambda gives up on it, the owner is told by SNS)."""


@dataclass
class Escalator:
    """One alarm's escalation: what to say, whom to call, and how to reach Twilio and SNS."""

    ledger: EscalationLedger
    client: TwilioClient
    escalation: Escalation
    alarm_id: str
    sender: str
    person: str
    text: str  # the click's message, filled in
    values: dict[str, str]  # template values, for the exhausted text
    callback_url: str
    sms_recipients: tuple[str, ...] = ()
    tell_owner: Callable[[str, str], str | None] | None = None  # (subject, message) -> id
    zone: str = "UTC"  # the config's time zone, for the times the SMS tell
    zone_rules: str = ""
    # The longest a live attempt at one Twilio request can take (every try timing out, with
    # the backoff between them): a claim older than this belongs to an attempt that died.
    settle_after_seconds: float = 23.0
    say: SayOptions = PLAIN_SAY  # the click type's voice, language and repeats

    # -- starting and carrying on -------------------------------------------------------------

    def begin(self, serial: str, click: str) -> tuple[list[dict[str, Any]], str | None]:
        """Start at the first step (once, however often the click is delivered), unless the
        button's escalation of this click type still rings: then this press joins it. The calls
        placed, and the alarm it joined (None when it leads its own)."""
        leading = self.ledger.lead(serial, click, self.alarm_id)
        if leading is not None:
            self.ledger.joined(self.alarm_id, leading)
            log(
                logging.INFO,
                "alarm %s joins escalation %s, which is still calling",
                self.alarm_id,
                leading,
            )
            return [], leading
        self.ledger.start(self.alarm_id)
        return self.resume(), None

    def resume(self) -> list[dict[str, Any]]:
        """Carry on from what the table says: place the current step's calls not placed yet,
        or finish telling people about an acknowledgement or an exhausted list."""
        alarm = self.ledger.alarm(self.alarm_id) or {}
        state = alarm.get("esc")
        if state == ACKNOWLEDGED:
            self.tell_acknowledged(alarm.get("ackBy", "someone"), _ms(alarm.get("ackAt")))
            return []
        if state == EXHAUSTED:
            self.tell_exhausted()
            return []
        if state != RINGING:
            return []
        position = position_of(alarm)
        results = self.place(position)
        self._over_if_ended(position)  # all refused by Twilio, say: no callback will come
        return results

    def place(self, position: Position) -> list[dict[str, Any]]:
        """Place, at once, the step's calls this alarm has not placed yet."""
        numbers = self.escalation.steps[position[1]].call
        with ThreadPoolExecutor(min(MAX_WORKERS, len(numbers)), "escalation") as pool:
            placed = list(pool.map(lambda to: self._place_one(position, to), numbers))
        return [item for item in placed if item is not None]

    def _place_one(self, position: Position, to: str) -> dict[str, Any] | None:
        claim = self.ledger.claim_call(self.alarm_id, position, to)
        if claim is None:
            claim = self._settle(position, to)
            if claim is None:
                return None  # placed already (or being placed)
        step = self.escalation.steps[position[1]]
        document, _kept = fitted_twiml(
            self.text,
            lambda text: escalation_twiml(
                text, self.url(position, claim.attempt, GATHER_EVENT), self.say
            ),
        )
        started_ms = self.ledger._now()
        outcome = _safely(
            lambda: self.client.place_call(
                to, self.sender, document, self.url(position, claim.attempt), step.ring_seconds
            )
        )
        made = [] if outcome.ok or outcome.http_status else self._made(to, started_ms)
        if made:  # no answer came, but Twilio made the call: its callbacks will come
            outcome = TwilioOutcome(ok=True, sid=str(made[-1].get("sid")))
        self.ledger.table.record(self.alarm_id, channel_of(position), to, outcome)
        if not outcome.ok and outcome.retryable:
            self.ledger.retryable(self.alarm_id, position, to)
        item: dict[str, Any] = {
            "channel": "call",
            "to": to,
            "step": position_text(position),
            "status": "queued" if outcome.ok else "failed",
        }
        if outcome.sid:
            item["sid"] = outcome.sid
        if not outcome.ok:
            item["error"] = {"code": outcome.code, "message": outcome.message}
            log(logging.WARNING, "escalation call to %s failed: %s", to, outcome.message)
        return item

    def _settle(self, position: Position, to: str) -> alarms.Claimed | None:
        """A call claimed before and not answered yet: wait for its attempt to finish; if it
        never does (the function died mid-request), ask Twilio whether it made the call, and
        take the claim over only if it did not."""
        while True:
            call = next(
                (c for c in self.ledger.calls(self.alarm_id, position) if c.get("recipient") == to),
                {},
            )
            if call.get("status") != alarms.SENDING or call.get("sid"):
                return None  # placed, or refused: done either way
            started = int(call.get("startedAt") or "0")
            if self.ledger._now() - started >= self.settle_after_seconds * 1000:
                break  # no live attempt takes this long: it died
            sleep(SETTLE_POLL_SECONDS)
        made = self._made(to, started)  # fails (and Twilio or Lambda tries again) if it cannot
        if made:
            self.ledger.adopt(self.alarm_id, position, to, str(made[-1].get("sid")))
            return None
        return self.ledger.take_over(self.alarm_id, position, to, call.get("startedAt", "0"))

    def _nobody_rang(self) -> bool:
        """Every call so far was refused by Twilio with an error a retry may cure."""
        calls = self.ledger.calls(self.alarm_id)
        return bool(calls) and all(
            c.get("status") == alarms.FAILED and c.get("retryable") == RETRYABLE for c in calls
        )

    def _made(self, to: str, since_ms: int) -> list[dict[str, Any]]:
        """The calls Twilio made to ``to`` from our number since ``since_ms``, newest first (as
        Twilio lists them): the last is the first made."""
        return [
            call
            for call in self.client.calls_to(to)
            if call.get("from") == self.sender and _created_ms(call) >= since_ms - 1000
        ]

    def url(self, position: Position, attempt: int | None, event: str | None = None) -> str:
        """Where Twilio reports on a call of this step (its end, or its key press)."""
        fields = {
            CALLBACK_ALARM_PARAMETER: self.alarm_id,
            ESCALATION_PARAMETER: position_text(position),
            CALLBACK_ATTEMPT_PARAMETER: str(attempt or 1),
        }
        if event:
            fields[EVENT_PARAMETER] = event
        return f"{self.callback_url}?{urllib.parse.urlencode(fields)}#{RETRY_OVERRIDES}"

    def notice_url(self, channel: str, attempt: int | None) -> str:
        """Where Twilio reports what became of a notice (its delivery receipt)."""
        fields = {
            CALLBACK_ALARM_PARAMETER: self.alarm_id,
            CALLBACK_ATTEMPT_PARAMETER: str(attempt or 1),
            receipts.CHANNEL_PARAMETER: channel,
        }
        return f"{self.callback_url}?{urllib.parse.urlencode(fields)}"

    # -- callbacks ----------------------------------------------------------------------------

    def call_over(self, position: Position) -> None:
        """A call of step ``position`` ended (its receipt is recorded): if every call of the
        step has ended and nobody acknowledged, move on."""
        alarm = self.ledger.alarm(self.alarm_id) or {}
        if alarm.get("esc") != RINGING or position_of(alarm) != position:
            self.resume()  # moved on already: only make sure what follows happened
            return
        self._over_if_ended(position)

    def _over_if_ended(self, position: Position) -> None:
        calls = self.ledger.calls(self.alarm_id, position)
        pressed = [c for c in calls if c.get("digits") == ACK_DIGIT]
        if pressed:  # a 1 whose own callback lost the race to its call's end
            self.acknowledge(pressed[0].get("recipient", "someone"), "call")
            return
        step = self.escalation.steps[position[1]]
        if len(calls) < len(set(step.call)) or not all(call_ended(c) for c in calls):
            return  # someone of this step is still ringing (or not yet called)
        self.step_over(position)

    def step_over(self, position: Position) -> None:
        following = self.escalation.after(position)
        if following is None and self._nobody_rang():
            raise NobodyRang(f"Twilio took none of alarm {self.alarm_id}'s escalation calls")
        self.ledger.advance(self.alarm_id, position, following)
        self.resume()  # whoever moved it on, what follows is made sure of

    def pressed(self, position: Position, to: str, sid: str, digits: str) -> str:
        """A key pressed on a call: TwiML for the caller to hear."""
        self.ledger.pressed(self.alarm_id, position, to, sid, digits)
        if digits != ACK_DIGIT:
            return twiml(f"You pressed {printable(digits, 8) or 'nothing'}, not 1. Goodbye.")
        if self.ledger.acknowledge(self.alarm_id, to, "call"):
            self.tell_acknowledged(to, self.ledger._now())
            return twiml(f"Thank you. {self.person} is told you are coming, and so is everyone.")
        alarm = self.ledger.alarm(self.alarm_id) or {}
        if alarm.get("esc") == ACKNOWLEDGED:
            who = alarm.get("ackBy", "someone")
            if who == to:  # our own earlier press, posted again
                self.tell_acknowledged(to, _ms(alarm.get("ackAt")))
                return twiml(f"Thank you. {self.person} is told you are coming.")
            at = format_time(_when(_ms(alarm.get("ackAt"))), self.zone, self.zone_rules)
            return twiml(f"{_spoken(who)} already acknowledged at {at}. Thank you.")
        return twiml("This alarm is not calling anyone. Thank you.")

    def acknowledge(self, by: str, via: str) -> dict[str, Any]:
        """Acknowledged from elsewhere (``notify ack``): the same as a 1 on a call."""
        won = self.ledger.acknowledge(self.alarm_id, by, via)
        alarm = self.ledger.alarm(self.alarm_id) or {}
        if won:
            self.tell_acknowledged(by, _ms(alarm.get("ackAt")))
        return {
            "acknowledged": won,
            "state": alarm.get("esc") or "none",
            "by": alarm.get("ackBy"),
            "at": _ms(alarm.get("ackAt")),
        }

    # -- endings ------------------------------------------------------------------------------

    def tell_acknowledged(self, by: str, at_ms: int | None) -> None:
        """Tell everyone else who is coming, once each, and hang up the calls still ringing."""
        when = format_time(_when(at_ms), self.zone, self.zone_rules)
        text = _clean(f"{by} acknowledged {self.person}'s alarm at {when}.")
        others = [n for n in self.everyone() if n != by]
        self.send_once(ACK_CHANNEL, others, text)
        live = [
            call
            for call in self.ledger.calls(self.alarm_id)
            if call.get("sid") and not call_ended(call) and call.get("recipient") != by
        ]

        def hang_up(sid: str) -> None:
            outcome = _safely(functools.partial(self.client.hang_up, sid))
            if not outcome.ok and outcome.code != 21220:  # 21220: it had ended already
                log(logging.WARNING, "could not hang up %s: %s", sid, outcome.message)

        if live:
            with ThreadPoolExecutor(min(MAX_WORKERS, len(live)), "escalation") as pool:
                list(pool.map(hang_up, [call["sid"] for call in live]))
        self.report_end(shadow.ACKNOWLEDGED)

    def tell_exhausted(self) -> None:
        """Nobody acknowledged: everyone, and the owner, get the exhausted text, once."""
        text = _clean(render(self.escalation.exhausted, self.values))
        self.send_once(EXHAUSTED_CHANNEL, self.everyone(), text)
        try:
            self._tell_owner_exhausted(text)
        finally:
            self.report_end(shadow.EXHAUSTED)  # after everyone is told: it never delays them

    def _tell_owner_exhausted(self, text: str) -> None:
        if self.tell_owner is None:
            return
        claim = self.ledger.table.claim(self.alarm_id, OWNER_CHANNEL, "sns")
        if not isinstance(claim, alarms.Claimed):
            return
        try:
            message_id = self.tell_owner(EXHAUSTED_SUBJECT, text)
        except Exception as exc:
            failed = TwilioOutcome(ok=False, message=printable(str(exc), 300))
            self.ledger.table.record(self.alarm_id, OWNER_CHANNEL, "sns", failed)
            log(logging.ERROR, "could not tell the owner that nobody acknowledged: %s", exc)
            return
        told = TwilioOutcome(ok=True, sid=message_id or None)
        self.ledger.table.record(self.alarm_id, OWNER_CHANNEL, "sns", told)

    def report_end(self, outcome: str) -> None:
        """How it ended, on the button's thing shadow (:mod:`.shadow`; never raises)."""
        shadow.report_escalation_end(self.values.get("serial", ""), self.alarm_id, outcome)

    def everyone(self) -> list[str]:
        """Everyone the alarm concerns: its SMS recipients, then everyone it calls."""
        return list(dict.fromkeys((*self.sms_recipients, *self.escalation.numbers)))

    def send_once(self, channel: str, numbers: Iterable[str], text: str) -> None:
        """An SMS to each number, claimed first: a retry sends none of them twice."""

        def send(to: str) -> None:
            claim = self.ledger.table.claim(self.alarm_id, channel, to)
            if not isinstance(claim, alarms.Claimed):
                return
            receipt_url = self.notice_url(channel, claim.attempt)
            outcome = _safely(lambda: self.client.send("sms", to, self.sender, text, receipt_url))
            self.ledger.table.record(self.alarm_id, channel, to, outcome)
            if not outcome.ok:
                log(logging.WARNING, "%s to %s failed: %s", channel, to, outcome.message)

        listed = list(numbers)
        if listed:
            with ThreadPoolExecutor(min(MAX_WORKERS, len(listed)), "escalation") as pool:
                list(pool.map(send, listed))


def _safely(request: Callable[[], TwilioOutcome]) -> TwilioOutcome:
    """A bug in one request must not stop the escalation being recorded."""
    try:
        return request()
    except Exception as exc:
        return TwilioOutcome(ok=False, message=f"internal error: {type(exc).__name__}: {exc}")


def _clean(text: str) -> str:
    return UNSAFE_IN_MESSAGE.sub("?", text)


def _spoken(number: str) -> str:
    """A number read out digit by digit, not as a quantity."""
    return " ".join(number) if number.startswith("+") else number


def _ms(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _when(ms: int | None) -> datetime:
    if ms is None:
        return datetime.now(timezone.utc)
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _created_ms(call: dict[str, Any]) -> int:
    try:
        return int(parsedate_to_datetime(str(call.get("date_created"))).timestamp() * 1000)
    except (TypeError, ValueError):
        return 0
