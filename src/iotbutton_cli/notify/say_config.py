"""A click type's ``say:`` in notify.yaml: how its calls speak (Twilio ``<Say>``'s voice,
language and loop)::

    say: {voice: "Polly.Amy", language: "en-GB", repeat: 2}

``voice`` is ``man``, ``woman``, an Amazon Polly voice (``Polly.Amy``, ``Polly.Joanna-Neural``)
or a Google voice (``Google.en-GB-Standard-A``, whose name says its language); ``language`` a tag
such as ``en-GB`` (the basic voices speak en, en-gb, es, fr and de); ``repeat`` how many times
the message is said, 1 to 5 (Twilio's ``loop``; its 0, "until the call ends", would keep an
escalation's callee from ever being asked for the 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iotbutton_cli.notifier_lambda.contract import MAX_SAY_LOOP, PLAIN_SAY, SayOptions, say_problem

if TYPE_CHECKING:
    from yaml.nodes import Node

    from iotbutton_cli.notify.config import _Parser

SAY_KEYS = ("voice", "language", "repeat")
EXAMPLE = 'For example: say: {voice: "Polly.Amy", language: "en-GB", repeat: 2}'


def parse(parser: _Parser, node: Node, where: str) -> SayOptions:
    from yaml.nodes import MappingNode

    where = f"{where}.say"
    if not isinstance(node, MappingNode):
        parser.fail(
            node, "notify-config-say", f"{where} must have voice, language or repeat", EXAMPLE
        )
    entries = parser.entries(node, where, SAY_KEYS)
    voice = (
        (parser.text(entries["voice"][1], f"{where}.voice") or "").strip()
        if "voice" in entries
        else ""
    )
    language = (
        (parser.text(entries["language"][1], f"{where}.language") or "").strip()
        if "language" in entries
        else ""
    )
    loop = 1
    if "repeat" in entries:
        text = (parser.text(entries["repeat"][1], f"{where}.repeat") or "").strip()
        if not text.isdigit() or not 1 <= int(text) <= MAX_SAY_LOOP:
            parser.fail(
                entries["repeat"][1],
                "notify-config-say",
                f"{where}.repeat must be 1 to {MAX_SAY_LOOP}",
                "How many times a call says the message, e.g. repeat: 2.",
            )
        loop = int(text)
    options = SayOptions(voice, language, loop)
    problem = say_problem(options)
    if problem:
        parser.fail(node, "notify-config-say", f"{where}: {problem}", EXAMPLE)
    return options


def as_document(options: SayOptions) -> dict[str, Any] | None:
    """The notifier's ``say`` object; None for Twilio's defaults (so older files make the
    document they always made)."""
    if options == PLAIN_SAY:
        return None
    found: dict[str, Any] = {"loop": options.loop}
    found.update({k: v for k, v in (("voice", options.voice), ("language", options.language)) if v})
    return found
