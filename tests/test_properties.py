"""Property tests (hypothesis): serial validation, notify.yaml parsing and rules SQL, over inputs
nobody would think to write by hand.

The contract checked for every input: a serial is accepted exactly when AWS would accept it as a
thing name and MQTT as a topic level; a config either parses into exactly what it says, or fails
with one usage error (exit 2) naming the file and a line that exists, with a hint -- never another
exception.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from iotbutton_cli.aws import iotsql
from iotbutton_cli.errors import ExitStatus, IotButtonError
from iotbutton_cli.notifier_lambda import contract
from iotbutton_cli.notify import config as notify_config
from iotbutton_cli.notify import rules
from iotbutton_cli.provisioning import serials

# Loaded CI machines are slow; the properties, not the timings, are under test.
settings.register_profile(
    "iotbutton", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("iotbutton")

PATH = Path("/home/user/.config/iotbutton/notify.yaml")
# YAML counts NEL and the Unicode line and paragraph separators as line breaks too.
YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
THING_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-"


def assert_usage_error(error: IotButtonError, text: str | None) -> None:
    """One line, a hint, exit 2, and (for config files) a real line of the file."""
    assert error.exit_status == ExitStatus.USAGE
    assert "\n" not in error.message and error.message.strip()
    assert "\n" not in error.hint and error.hint.strip()
    match = re.match(re.escape(str(PATH)) + r":(\d+): ", error.message)
    if text is not None:
        assert match, error.message
        assert 1 <= int(match.group(1)) <= len(YAML_LINE_BREAK.split(text))


# -- serials --------------------------------------------------------------------------------


@given(st.text(max_size=140))
@example("")
@example("a" * 128)
@example("a" * 129)
@example("G030/JF05")
@example("G030+#")
@example("G030JF0553648RU\u0130")  # a letter, but not an ASCII one
@example("12\u0663")  # an Arabic-Indic digit: str.isdigit() says yes, AWS says no
def test_a_serial_is_accepted_exactly_when_aws_and_mqtt_would(serial):
    valid = 1 <= len(serial) <= 128 and all(char in THING_NAME_CHARS for char in serial)
    if valid:
        assert serials.validate_serial(serial) == serial
        assert not set(serial) & set("/+#")  # a safe MQTT topic level and client id
        return
    with pytest.raises(IotButtonError) as caught:
        serials.validate_serial(serial)
    error = caught.value
    assert error.code == "bad-serial" and error.exit_status == ExitStatus.USAGE
    assert error.hint.strip()
    assert "\n" not in error.message or "\n" in serial  # the serial is shown with repr()
    assert "\n" not in error.message


@given(st.integers(min_value=1, max_value=60))
def test_generated_serials_are_distinct_valid_and_shaped_like_real_ones(count):
    generated = serials.resolve_serials(None, count)
    assert len(generated) == len(set(generated)) == count
    for serial in generated:
        assert serials.validate_serial(serial) == serial
        assert re.fullmatch(r"G030[A-Z]{2}[0-9]{7}[A-Z]{3}", serial)


@given(st.integers(max_value=0))
def test_a_count_below_one_is_a_usage_error(count):
    with pytest.raises(IotButtonError) as caught:
        serials.resolve_serials(None, count)
    assert caught.value.code == "bad-count"
    assert caught.value.exit_status == ExitStatus.USAGE


# -- notify.yaml ------------------------------------------------------------------------------

e164 = st.builds(
    lambda first, rest: f"+{first}{rest}",
    st.integers(1, 9),
    st.text("0123456789", min_size=1, max_size=14),
)
not_e164 = st.one_of(
    st.text(max_size=20).filter(lambda t: not notify_config.E164_PATTERN.fullmatch(t)),
    st.builds(lambda n: f"+0{n}", st.integers(0, 10**9)),  # no country code starts with 0
    st.builds(lambda n: f"+{n}", st.integers(10**15, 10**17)),  # longer than 15 digits
    st.builds(lambda n: f"+1 555 {n}", st.integers(1000, 9999)),  # spaces
    st.builds(lambda n: f"1555{n}", st.integers(100000, 999999)),  # no plus
)
hex_digits = st.text("0123456789abcdefABCDEF", min_size=32, max_size=32)
field_names = st.sampled_from(sorted(contract.TEMPLATE_FIELDS))
template_pieces = st.one_of(
    st.text(
        st.characters(blacklist_characters="{}", blacklist_categories=["Cs", "Cc"]), max_size=30
    ),
    field_names.map(lambda name: "{" + name + "}"),
    st.just("{{"),
    st.just("}}"),
)
templates = (
    st.lists(template_pieces, min_size=1, max_size=8).map("".join).filter(lambda t: t.strip() != "")
)
people = st.text(
    st.characters(whitelist_categories=["L", "N", "Zs"]), min_size=1, max_size=40
).filter(lambda p: p.strip() == p and p != "" and notify_config._person_problem(p) is None)


def yaml_string(text: str) -> str:
    """A double-quoted YAML scalar: JSON's string syntax is a subset of YAML's (characters
    beyond U+FFFF become surrogate-pair escapes, which the parser must join again)."""
    return json.dumps(text)


@st.composite
def documents(draw):
    """What a valid notify.yaml says (the config document the notifier receives)."""
    sender = draw(e164)
    others = e164.filter(lambda number: number != sender)
    clicks = {}
    for click in contract.CLICK_TYPES:
        if draw(st.booleans()):
            clicks[click] = {
                "sms": draw(st.lists(others, max_size=3)),
                "call": draw(st.lists(others, max_size=2)),
                "message": draw(templates),
            }
    if not any(item["sms"] or item["call"] for item in clicks.values()):
        clicks["SINGLE"] = {"sms": [draw(others)], "call": [], "message": draw(templates)}
    return {
        "version": contract.CONFIG_VERSION,
        "account_sid": "AC" + draw(hex_digits),
        "api_key_sid": draw(st.none() | hex_digits.map(lambda digits: "SK" + digits)),
        "from": sender,
        "person": draw(people),
        "clicks": {click: clicks[click] for click in contract.CLICK_TYPES if click in clicks},
    }


def as_yaml(document) -> str:
    """notify.yaml for ``document``, every value double-quoted as the template advises."""
    lines = [f"{key}: {yaml_string(document[key])}" for key in ("account_sid", "from", "person")]
    if document["api_key_sid"]:
        lines.append(f"api_key_sid: {yaml_string(document['api_key_sid'])}")
    lines.append("clicks:")
    for click, item in document["clicks"].items():
        lines.append(f"  {click}:")
        for channel in ("sms", "call"):
            lines.append(f"    {channel}: [{', '.join(map(yaml_string, item[channel]))}]")
        lines.append(f"    message: {yaml_string(item['message'])}")
    return "\n".join(lines) + "\n"


def too_many_brackets(text: str) -> bool:
    """More brackets open at once, outside quotes and comments, than the nesting guard allows:
    the guard refuses such a file before YAML reads it, as config.py documents."""
    return notify_config._nesting_problem(text) is not None


def fits(document) -> bool:
    """Whether every message fits once filled in (longer ones are rightly refused)."""
    for click, item in document["clicks"].items():
        filled = contract.render(
            item["message"], notify_config.worst_case_fields(document["person"], click)
        )
        if item["sms"] and notify_config.sms_length(filled) > notify_config.SMS_MAX_CHARS:
            return False
        if item["call"] and len(notify_config.twiml(filled)) > contract.TWIML_MAX_CHARS:
            return False
    return True


def parse(text: str) -> notify_config.NotifyConfig:
    return notify_config.parse_config_text(text, PATH)


@given(documents())
def test_a_valid_config_parses_into_exactly_what_it_says(document):
    text = as_yaml(document)
    assume(not too_many_brackets(text))
    if not fits(document):
        with pytest.raises(IotButtonError) as caught:
            parse(text)
        assert caught.value.code == "notify-config-too-long"
        return
    config = parse(text)
    assert config.lambda_document() == {**document, "debounce_seconds": 5}
    # ... and the notifier accepts that document as it is.
    contract.parse_config(json.loads(json.dumps(document)))


@given(documents(), st.sampled_from(["from", "sms", "call"]), not_e164)
def test_a_number_that_is_not_e164_is_refused_on_its_line(document, where, bad):
    if where == "from":
        document["from"] = bad
    else:
        click = next(iter(document["clicks"]))
        document["clicks"][click][where] = [*document["clicks"][click][where], bad]
    text = as_yaml(document)
    with pytest.raises(IotButtonError) as caught:
        parse(text)
    error = caught.value
    assert_usage_error(error, text)
    assert error.code in {"notify-config-number", "notify-config-empty-value"}
    line = int(error.message.split(":")[1])
    assert json.dumps(bad) in text.splitlines()[line - 1] or bad == ""


@given(documents(), st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12))
def test_a_template_field_that_does_not_exist_is_refused(document, name):
    field = "{" + name + "}"
    if name in contract.TEMPLATE_FIELDS or "{" in name or "}" in name:
        return
    click = next(iter(document["clicks"]))
    document["clicks"][click]["message"] += field
    text = as_yaml(document)
    assume(not too_many_brackets(text))
    with pytest.raises(IotButtonError) as caught:
        parse(text)
    assert_usage_error(caught.value, text)
    assert caught.value.code == "notify-config-template"


@given(documents(), st.data())
def test_a_config_cut_short_fails_cleanly_or_parses(document, data):
    """Every prefix of a valid file (an editor that saved half of it) is handled."""
    text = as_yaml(document)
    cut = text[: data.draw(st.integers(0, len(text)))]
    try:
        parse(cut)
    except IotButtonError as error:
        assert_usage_error(error, cut)


yaml_noise = st.text(
    st.sampled_from(list("abcSINGLEDOUBLclksmsfrom_: \n-[]{}\"'#&*!|>%@`+0123456789\t,?")),
    max_size=200,
)


@given(st.one_of(yaml_noise, st.text(max_size=200)))
@example("clicks: [")
@example("account_sid: &a [*a]")
@example("\ufeffperson: x")
@example("account_sid: !!python/object:os.system ls")
@example("- a\n- b")
@example('person: "\\ud83d"')  # half of a surrogate pair, written JSON-style
@example("? [a, b]\n: c")
def test_any_text_gives_a_config_or_one_clean_usage_error(text):
    try:
        parse(text)
    except IotButtonError as error:
        assert_usage_error(error, text)


# -- rules SQL -------------------------------------------------------------------------------

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: name.upper() not in iotsql.KEYWORDS
)
topic_levels = st.text(
    st.characters(blacklist_characters="/+#'\x00", blacklist_categories=["Cs"]), max_size=6
)
sql_noise = st.text(
    st.sampled_from(list("SELECTFROMWHEREANDORNOTAStopic*,()'=<>!. _-+#/0123456789abc\n\t;\"")),
    max_size=80,
)


@given(st.one_of(sql_noise, st.text(max_size=80)))
@example("SELECT * FROM 'iotbutton/+' WHERE")
@example("SELECT * FROM 'a\nb' WHERE x = '\n")
@example("SELECT topic(99999999999999999999) AS t FROM 'x'")
def test_any_sql_parses_or_fails_at_a_column_inside_it_with_one_line(sql):
    try:
        iotsql.parse(sql)
    except iotsql.IotSqlError as error:
        assert 1 <= error.column <= len(sql) + 1
        assert error.reason.strip() and "\n" not in error.reason
    try:
        request = rules.rule_for("iotbutton_prop", sql, None)
    except IotButtonError as error:
        assert error.code == "bad-rule-sql"
        assert_usage_error(error, None)
    else:  # what iotbutton stores always takes topicSerial from the topic
        selected = iotsql.parse(request.sql).item_named("topicSerial")
        assert selected is not None and isinstance(selected.expression, iotsql.Topic)


@given(
    st.lists(st.sampled_from(["+", "#", "iotbutton", "a"]) | topic_levels, min_size=1, max_size=5),
    st.lists(st.sampled_from(["*", "field", "topic"]), min_size=1, max_size=4),
    st.lists(topic_levels, min_size=1, max_size=6),
    identifiers,
)
def test_a_valid_statement_reads_back_and_topic_levels_count_from_one(
    filter_levels, kinds, topic, name
):
    """Parse what a user could write; the sandbox evaluates topic(n) as level n (from 1)."""
    from iotbutton_cli.sandbox import rules_engine

    topic_filter = "/".join(filter_levels)
    valid_filter = iotsql.topic_filter_problem(topic_filter) is None
    items = []
    for index, kind in enumerate(kinds):
        if kind == "*":
            items.append("*")
        elif kind == "field":
            items.append(f"{name} AS f{index}")
        else:
            items.append(f"topic({index + 1}) AS t{index}")
    sql = f"SELECT {', '.join(items)} FROM '{topic_filter}'"
    if not valid_filter:
        with pytest.raises(iotsql.IotSqlError):
            iotsql.parse(sql)
        return
    statement = iotsql.parse(sql)
    assert statement.topic_filter == topic_filter
    assert len(statement.select) == len(kinds)
    received = rules_engine._Message({name: 1}, "/".join(topic), 0)
    message = rules_engine._selected(statement.select, received)
    for index, kind in enumerate(kinds):
        if kind == "topic":
            expected = topic[index] if index < len(topic) else None
            assert message.get(f"t{index}") == expected
        elif kind == "field":
            assert message[f"f{index}"] == 1


def test_literal_braces_in_quoted_messages_are_not_nesting():
    """The example Hypothesis found: 22 literal braces in two quoted messages once read as 22
    open flow mappings, and a bad number was reported as "nested too deep"."""
    text = (
        'account_sid: "AC00000000000000000000000000000000"\nfrom: "+100"\nperson: "0"\n'
        "clicks:\n  SINGLE:\n    sms: [\"+10\"]\n    message: '{{{{{{{{{{{{'\n"
        '  LONG:\n    sms: ["+10"]\n    message: "{{{{{{{{{{ it\'s"\n'
    )
    assert too_many_brackets(text) is False
    config = parse(text.replace('from: "+100"', 'from: "+15005550006"'))
    assert config.clicks["SINGLE"].message == "{{{{{{{{{{{{"
    with pytest.raises(IotButtonError) as caught:
        parse(text.replace('from: "+100"', 'from: ""'))
    assert caught.value.code in {"notify-config-number", "notify-config-empty-value"}
