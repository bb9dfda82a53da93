"""A click type's say: (Twilio <Say>'s voice, language and loop): checked with file:line against
what Twilio speaks, carried to the notifier, and in the TwiML its calls and escalations send."""

from __future__ import annotations

import pytest

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.notifier_lambda import contract
from iotbutton_cli.notifier_lambda.contract import SayOptions, escalation_twiml, say_problem, twiml
from iotbutton_cli.notify import config as notify_config

HEAD = """\
account_sid: "AC0123456789abcdef0123456789abcdef"
from: "+15005550006"
person: "Grandma"
clicks:
  LONG:
    call: ["+15551230009"]
    message: "{person} needs help."
"""


def test_say_options_reach_the_notifier_and_the_twiml() -> None:
    text = HEAD + '    say: {voice: "Polly.Amy", language: "en-GB", repeat: 2}\n'
    document = notify_config.parse_config_text(text).lambda_document()
    assert document["clicks"]["LONG"]["say"] == {
        "voice": "Polly.Amy",
        "language": "en-GB",
        "loop": 2,
    }
    say = contract.parse_config(document).clicks["LONG"].say
    assert twiml("Help & now", say) == (
        '<Response><Say voice="Polly.Amy" language="en-GB" loop="2">Help &amp; now</Say></Response>'
    )
    escalated = escalation_twiml("Help", "https://x/?a=1&b=2", say)
    assert escalated.count('voice="Polly.Amy" language="en-GB"') == 3  # message, ask, goodbye
    assert escalated.count('loop="2"') == 1  # only the message repeats
    assert "say" not in notify_config.parse_config_text(HEAD).lambda_document()["clicks"]["LONG"]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (SayOptions("Polly.Joanna-Neural"), None),
        (SayOptions("Google.en-GB-Standard-A", "en-GB"), None),
        (SayOptions("Google.en-US-Chirp3-HD-Aoede"), None),
        (SayOptions("woman", "fr"), None),
        (SayOptions("man", "ja-JP"), "the man voice speaks en, en-gb, es, fr, de, not ja-JP"),
        (SayOptions("Google.en-GB-Standard-A", "fr-FR"), "speaks en-GB, not fr-FR"),
        (SayOptions("robot"), "is not man, woman, a Polly voice"),
        (SayOptions('Polly.Amy" onload="x'), "is not man, woman, a Polly voice"),
        (SayOptions(language="english please"), "is not a language tag"),
        (SayOptions(loop=0), "repeat must be 1 to 5"),
        (SayOptions(loop=6), "repeat must be 1 to 5"),
    ],
)
def test_what_twilio_speaks(options: SayOptions, problem: str | None) -> None:
    found = say_problem(options)
    assert (found is None) == (problem is None), found
    if problem:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("say", "said"),
    [
        ('{voice: "robot"}', "clicks.LONG.say: voice 'robot' is not man, woman"),
        ("{repeat: 0}", "clicks.LONG.say.repeat must be 1 to 5"),
        ("{repeat: lots}", "clicks.LONG.say.repeat must be 1 to 5"),
        ("{speed: 2}", "unknown setting 'speed' in clicks.LONG.say"),
        ('"Polly.Amy"', "clicks.LONG.say must have voice, language or repeat"),
    ],
)
def test_a_bad_say_is_one_line_with_file_and_line(say: str, said: str) -> None:
    with pytest.raises(IotButtonError) as caught:
        notify_config.parse_config_text(HEAD + f"    say: {say}\n")
    assert ":8: " in caught.value.message and said in caught.value.message


def test_the_docs_example_is_what_calls_say() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "notifier.md").read_text(encoding="utf-8")
    section = doc.split("**How a call speaks.**", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    head = HEAD.split("clicks:", 1)[0] + 'address: "12 High Street"\n'
    document = notify_config.parse_config_text(head + example).lambda_document()
    say = contract.parse_config(document).clicks["LONG"].say
    assert say == SayOptions("Polly.Amy", "en-GB", 2)
