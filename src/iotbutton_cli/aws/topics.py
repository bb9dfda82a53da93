"""MQTT topic names and filters, checked as MQTT 3.1.1 and AWS IoT Core would check them.

A topic a device publishes to may hold no wildcard; a filter a client subscribes to may hold ``+``
as a whole level and ``#`` as the whole last level. AWS IoT Core further allows at most 256 bytes
of UTF-8 and 8 levels (7 slashes). Control characters are refused too: MQTT discourages them and a
message naming the topic could not be one line. Checked before any connection is made.
"""

from __future__ import annotations

from iotbutton_cli.errors import IotButtonError, usage_error

MAX_TOPIC_BYTES = 256
MAX_SLASHES = 7


def check_topic(topic: str) -> str:
    """A topic to publish to, or a usage error."""
    problem = _common_problem(topic) or (
        "a topic to publish to cannot hold the wildcards + or #"
        if "+" in topic or "#" in topic
        else None
    )
    if problem:
        raise _bad(topic, problem, "publish")
    return topic


def check_filter(topic_filter: str) -> str:
    """A topic filter to subscribe to, or a usage error."""
    problem = _common_problem(topic_filter)
    if problem is None:
        levels = topic_filter.split("/")
        for index, level in enumerate(levels):
            if "#" in level and (level != "#" or index != len(levels) - 1):
                problem = "# must be a whole level, and the last one (iotbutton/#)"
                break
            if "+" in level and level != "+":
                problem = "+ must be a whole level (iotbutton/+)"
                break
    if problem:
        raise _bad(topic_filter, problem, "subscribe")
    return topic_filter


def _common_problem(topic: str) -> str | None:
    if not topic:
        return "it is empty"
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode text"
    if size > MAX_TOPIC_BYTES:
        return f"it is {size:,} bytes long; AWS IoT allows {MAX_TOPIC_BYTES}"
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in topic):
        return "it holds a control character"
    if topic.count("/") > MAX_SLASHES:
        return f"it has {topic.count('/') + 1} levels; AWS IoT allows {MAX_SLASHES + 1}"
    return None


def _bad(topic: str, problem: str, verb: str) -> IotButtonError:
    shown = topic if len(topic) <= 60 else topic[:57] + "..."
    return usage_error(
        "bad-topic",
        f"Cannot {verb} to the MQTT topic {shown!r}: {problem}.",
        "Topics are levels separated by /, e.g. iotbutton/G030JF0553648RUH"
        + (" (or iotbutton/# to watch every button)." if verb == "subscribe" else "."),
    )
