"""A click type's ``escalation:`` in notify.yaml: its checks, and what an unanswered alarm costs.

::

    escalation:
      ring: 25                 # seconds each call rings before it counts as not answered
      rounds: 2                # times through the steps before giving up (1 to 5)
      steps:
        - call: "+15551230001"
        - call: ["+15551230002", "+15551230003"]   # ring at once
          ring: 30
      exhausted: "Nobody acknowledged {person}'s alarm ({time}). Call 911."

The worst case is a list where every call rings out, or is answered at the last ring by
voicemail or by someone who presses nothing: then each step takes its ring time, the message
spoken, and the time the key is waited for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iotbutton_cli.notifier_lambda.contract import (
    ACK_PROMPT,
    DEFAULT_RING_SECONDS,
    GATHER_SECONDS,
    MAX_RING_SECONDS,
    MAX_ROUNDS,
    MIN_RING_SECONDS,
    NO_KEY_TEXT,
    TWIML_MAX_CHARS,
    Escalation,
    EscalationStep,
    escalation_twiml,
)

if TYPE_CHECKING:
    from yaml.nodes import Node

    from iotbutton_cli.notify.config import Details, _Parser

ESCALATION_KEYS = ("ring", "rounds", "steps", "exhausted")
STEP_KEYS = ("call", "ring")
MAX_STEPS = 10
# How fast Twilio's <Say> speaks, near enough: about 150 words a minute.
SPOKEN_CHARS_PER_SECOND = 15
# Dialling, and answering-machine detection listening before the message starts.
CALL_SETUP_SECONDS = 5
# A URL as long as the function URL's with its query: for the TwiML length check.
WORST_CASE_ACTION_URL = "https://" + "x" * 60 + ".lambda-url.eu-west-1.on.aws/?" + "x" * 260
EXAMPLE = (
    'For example: escalation: {steps: [{call: "+15551230001"}, {call: "+15551230002"}], '
    'rounds: 2, exhausted: "Nobody acknowledged {person}\'s alarm."}'
)


@dataclass(frozen=True)
class Cost:
    """What an alarm nobody acknowledges costs: how long until everyone is told, how many calls
    it places, and how many call minutes Twilio bills at most (each call answered by voicemail
    at its last ring, each billed by the started minute)."""

    worst_case_seconds: int
    calls: int
    billed_minutes: int

    def as_json(self) -> dict[str, int]:
        return {
            "worst_case_seconds": self.worst_case_seconds,
            "calls": self.calls,
            "billed_minutes_at_most": self.billed_minutes,
        }


def cost(escalation: Escalation, spoken_text: str) -> Cost:
    """The worst case for ``escalation`` calling with ``spoken_text`` (filled in, worst case)."""
    speech = (len(spoken_text) + len(ACK_PROMPT) + len(NO_KEY_TEXT)) / SPOKEN_CHARS_PER_SECOND
    answered = CALL_SETUP_SECONDS + speech + GATHER_SECONDS
    seconds = sum(step.ring_seconds + answered for step in escalation.steps)
    calls = sum(len(step.call) for step in escalation.steps)
    return Cost(
        worst_case_seconds=math.ceil(seconds * escalation.rounds),
        calls=calls * escalation.rounds,
        billed_minutes=calls * escalation.rounds * math.ceil(answered / 60),
    )


def as_document(escalation: Escalation) -> dict[str, Any]:
    """The escalation as the notifier's messaging config has it."""
    return {
        "steps": [
            {"call": list(step.call), "ring_seconds": step.ring_seconds}
            for step in escalation.steps
        ],
        "rounds": escalation.rounds,
        "exhausted": escalation.exhausted,
    }


def parse(
    parser: _Parser,
    key_node: Node,
    node: Node,
    where: str,
    sender: str,
    person: str | Details,
    filled_message: str,
    plain_calls: tuple[str, ...] = (),
) -> Escalation:
    """Check a click type's escalation, reporting problems as file:line like the rest."""
    from yaml.nodes import MappingNode, SequenceNode

    where = f"{where}.escalation"
    if not isinstance(node, MappingNode):
        parser.fail(node, "notify-config-escalation", f"{where} must have steps", EXAMPLE)
    entries = parser.entries(node, where, ESCALATION_KEYS)
    ring = _ring(parser, entries, where, DEFAULT_RING_SECONDS)
    rounds = _whole(parser, entries, "rounds", where, 1, 1, MAX_ROUNDS, "rounds: 2")
    if "steps" not in entries:
        parser.fail(key_node, "notify-config-escalation", f"{where}.steps is missing", EXAMPLE)
    steps_node = entries["steps"][1]
    if not isinstance(steps_node, SequenceNode) or not steps_node.value:
        parser.fail(
            steps_node, "notify-config-escalation", f"{where}.steps must list steps", EXAMPLE
        )
    if len(steps_node.value) > MAX_STEPS:
        parser.fail(
            steps_node,
            "notify-config-escalation",
            f"{where}.steps has {len(steps_node.value)} steps; at most {MAX_STEPS}",
            "Put people who should ring together in one step: call: [...].",
        )
    steps = []
    for index, step_node in enumerate(steps_node.value):
        label = f"{where}.steps[{index + 1}]"
        if not isinstance(step_node, MappingNode):
            parser.fail(step_node, "notify-config-escalation", f"{label} must have call", EXAMPLE)
        step = parser.entries(step_node, label, STEP_KEYS)
        if "call" not in step:
            parser.fail(step_node, "notify-config-escalation", f"{label}.call is missing", EXAMPLE)
        numbers = parser.numbers(step["call"][1], f"{label}.call", sender)
        if not numbers:
            parser.fail(step["call"][1], "notify-config-escalation", f"{label}.call is empty")
        also_called = [n for n in numbers if n in plain_calls]
        if also_called:
            parser.fail(
                step["call"][1],
                "notify-config-escalation",
                f"{also_called[0]} is in {where.removesuffix('.escalation')}.call and in "
                f"{label}.call: it would get two calls at once",
                "Keep the number in the escalation only: it asks for a 1, a plain call does not.",
            )
        unique = tuple(dict.fromkeys(numbers))  # a number listed twice in a step rings once
        steps.append(EscalationStep(unique, _ring(parser, step, label, ring)))
    if "exhausted" not in entries:
        parser.fail(
            key_node,
            "notify-config-escalation",
            f"{where}.exhausted is missing: what everyone gets when nobody acknowledged",
            'For example: exhausted: "Nobody acknowledged {person}\'s alarm at {time}."',
        )
    exhausted = parser.message(
        entries["exhausted"][1], f"{where}.exhausted", "LONG", person, {"sms": ("x",), "call": ()}
    )
    document = escalation_twiml(filled_message, WORST_CASE_ACTION_URL)
    if len(document) > TWIML_MAX_CHARS:
        parser.fail(
            key_node,
            "notify-config-too-long",
            f"{where}: the call's TwiML can be {len(document)} characters once filled in; "
            f"Twilio allows at most {TWIML_MAX_CHARS}",
            "Shorten the message: an escalation's call adds the question and its callback URL.",
        )
    return Escalation(tuple(steps), rounds, exhausted)


def _ring(
    parser: _Parser, entries: Mapping[str, tuple[Node, Node]], where: str, default: int
) -> int:
    return _whole(
        parser, entries, "ring", where, default, MIN_RING_SECONDS, MAX_RING_SECONDS, "ring: 25"
    )


def _whole(
    parser: _Parser,
    entries: Mapping[str, tuple[Node, Node]],
    key: str,
    where: str,
    default: int,
    low: int,
    high: int,
    example: str,
) -> int:
    if key not in entries:
        return default
    node = entries[key][1]
    value = (parser.text(node, f"{where}.{key}") or "").strip().lower().removesuffix("s").strip()
    if not value.isdigit() or not low <= int(value) <= high:
        parser.fail(
            node,
            "notify-config-escalation",
            f"{where}.{key} must be a whole number from {low} to {high}",
            f"For example: {example}.",
        )
    return int(value)
