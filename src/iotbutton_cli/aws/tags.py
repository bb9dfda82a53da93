"""How iotbutton marks what it makes, so `clean --discover` can tell its resources from yours."""

from __future__ import annotations

MANAGED_BY_KEY = "managed-by"
MANAGED_BY_VALUE = "iotbutton"
THING_ATTRIBUTE = {"createdBy": "iotbutton-cli"}


def aws_tags() -> list[dict[str, str]]:
    return [{"Key": MANAGED_BY_KEY, "Value": MANAGED_BY_VALUE}]
