"""SNS messages as the people subscribed would receive them: entries for the sandbox's outbox.

moto accepts ``Publish`` and stores it; it delivers nothing to an ``sms`` or ``email``
subscription. :func:`install` wraps moto's SNS backend so that, while a thread is
:func:`capturing`, every publish moto accepts adds one entry per subscription that would deliver
it (its filter policy matched; with ``MessageStructure=json``, the text for that protocol), and
a ``Publish(PhoneNumber=...)`` one ``sms`` entry. The caller writes them to the outbox only once
the whole request succeeded (the AWS endpoint: a 2xx answer).

An entry: ``{"kind": "sns", "time", "topic" (ARN, None for a direct SMS), "protocol" ("sms",
"email" or "email-json"), "to" (the number or address), "subject" (None for an SMS: it carries
none), "body" (the text delivered), "message_id"}``. Email subscriptions count as confirmed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("iotbutton.sandbox.sns")

KIND = "sns"
# The protocols a person receives; others (sqs, lambda, http, application) are not owners' mail.
PERSONAL_PROTOCOLS = ("sms", "email", "email-json")
# What AWS puts in an email's subject when the publish named none.
DEFAULT_EMAIL_SUBJECT = "AWS Notification Message"

_capture = threading.local()


@contextmanager
def capturing() -> Iterator[list[dict[str, Any]]]:
    """Collect, on this thread, the entries of the publishes moto accepts meanwhile."""
    previous = getattr(_capture, "entries", None)
    entries: list[dict[str, Any]] = []
    _capture.entries = entries
    try:
        yield entries
    finally:
        _capture.entries = previous


def install() -> None:
    """Wrap moto's ``SNSBackend.publish`` (idempotent; the wrapper is marked ``_iotbutton``)."""
    from moto.sns import models

    original = models.SNSBackend.publish
    if getattr(original, "_iotbutton", False):
        return

    def publish(
        self: Any,
        message: str,
        arn: str | None,
        phone_number: str | None = None,
        subject: str | None = None,
        message_attributes: dict[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
    ) -> str:
        message_id: str = original(
            self,
            message,
            arn,
            phone_number=phone_number,
            subject=subject,
            message_attributes=message_attributes,
            group_id=group_id,
            deduplication_id=deduplication_id,
            message_structure=message_structure,
        )
        entries = getattr(_capture, "entries", None)
        if entries is not None:
            entries.extend(
                deliveries(
                    self,
                    message,
                    arn,
                    phone_number,
                    subject,
                    message_attributes,
                    message_structure,
                    message_id,
                )
            )
        return message_id

    publish._iotbutton = True  # type: ignore[attr-defined]
    models.SNSBackend.publish = publish  # type: ignore[method-assign]


def deliveries(
    backend: Any,
    message: str,
    arn: str | None,
    phone_number: str | None,
    subject: str | None,
    message_attributes: dict[str, Any] | None,
    message_structure: str | None,
    message_id: str,
) -> list[dict[str, Any]]:
    """The entries one accepted publish makes (the caller holds MOTO_LOCK)."""
    if phone_number:
        return [entry(None, "sms", phone_number, None, message, message_id)]
    if arn is None or arn not in backend.topics:  # a platform endpoint: no person's message
        return []
    subscriptions, _ = backend.list_subscriptions_by_topic(topic_arn=arn)
    found = []
    for subscription in subscriptions:
        if subscription.protocol not in PERSONAL_PROTOCOLS:
            continue
        matcher = getattr(subscription, "_filter_policy_matcher", None)
        if matcher is not None and not matcher.matches(message_attributes, message):
            continue
        text = message
        if message_structure == "json":
            structured = json.loads(message)
            text = structured.get(subscription.protocol) or structured["default"]
        found.append(
            entry(
                arn,
                subscription.protocol,
                subscription.endpoint,
                subject,
                text,
                message_id,
                subscription_arn=subscription.arn,
            )
        )
    if not found:
        log.info(
            "SNS Publish %s to %s: no sms or email subscription, nothing delivered",
            message_id,
            arn,
        )
    return found


def entry(
    topic_arn: str | None,
    protocol: str,
    to: str,
    subject: str | None,
    text: str,
    message_id: str,
    subscription_arn: str | None = None,
) -> dict[str, Any]:
    """One outbox entry: what ``to`` receives over ``protocol``."""
    now = datetime.now(timezone.utc)
    body = text
    shown_subject: str | None = None
    if protocol == "email":
        shown_subject = subject or DEFAULT_EMAIL_SUBJECT
    elif protocol == "email-json":
        shown_subject = subject or DEFAULT_EMAIL_SUBJECT
        body = json.dumps(
            {
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": topic_arn,
                "Subject": subject,
                "Message": text,
                "Timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "UnsubscribeURL": (
                    f"https://sns.{(topic_arn or '::::').split(':')[3]}.amazonaws.com/"
                    f"?Action=Unsubscribe&SubscriptionArn={subscription_arn}"
                ),
            }
        )
    return {
        "kind": KIND,
        "time": now.isoformat(timespec="milliseconds"),
        "topic": topic_arn,
        "protocol": protocol,
        "to": to,
        "subject": shown_subject,
        "body": body,
        "message_id": message_id,
    }
