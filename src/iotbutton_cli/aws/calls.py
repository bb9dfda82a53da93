"""Calls where "it is not there" is an answer, not an error.

Reading, tagging or deleting something that may not exist is the normal case for a tool that
resumes and tears down: :func:`absent_ok` returns ``None`` for an absent resource, :func:`deleted`
says whether a delete removed something or found it already gone, and :func:`absent_is_fine`
wraps a block. What counts as "absent" lives here once, including the operations that say it in
their own way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from iotbutton_cli.aws.errors import NOT_FOUND_CODES, error_code

T = TypeVar("T")

# Operations that report an absent resource with a code that means something else elsewhere.
ABSENT_CODES_BY_OPERATION: dict[str, frozenset[str]] = {
    # IoT answers GetTopicRule for a rule that does not exist with UnauthorizedException.
    "GetTopicRule": frozenset({"UnauthorizedException"}),
    # HEAD requests have no body, so S3's answer carries only the HTTP status.
    "HeadBucket": frozenset({"404", "NotFound"}),
    "HeadObject": frozenset({"404", "NotFound"}),
    # SSM's tag operations call a missing parameter an invalid resource id.
    "ListTagsForResource": frozenset({"InvalidResourceId"}),
    "AddTagsToResource": frozenset({"InvalidResourceId"}),
    # A bucket without tags has no tag set; some S3-compatible stores answer a bare 404.
    "GetBucketTagging": frozenset({"NoSuchTagSet", "404"}),
    # A bucket's optional settings: "not set" is the bucket's answer, not an error.
    "GetPublicAccessBlock": frozenset({"NoSuchPublicAccessBlockConfiguration"}),
    "GetBucketEncryption": frozenset({"ServerSideEncryptionConfigurationNotFoundError"}),
}


def is_absent(exc: BaseException) -> bool:
    """True when AWS said the resource the call named does not exist, in any of its spellings."""
    code = error_code(exc)
    if code in NOT_FOUND_CODES:
        return True
    operation = getattr(exc, "operation_name", "")
    return code in ABSENT_CODES_BY_OPERATION.get(operation, frozenset())


def absent_ok(call: Callable[..., T], /, **kwargs: Any) -> T | None:
    """``call(**kwargs)``, or ``None`` when what it names does not exist; other errors propagate."""
    try:
        return call(**kwargs)
    except Exception as exc:
        if not is_absent(exc):
            raise
        return None


def deleted(call: Callable[..., Any], /, **kwargs: Any) -> bool:
    """Run a delete: ``True`` if it removed something, ``False`` if it was already gone."""
    try:
        call(**kwargs)
    except Exception as exc:
        if not is_absent(exc):
            raise
        return False
    return True


@contextlib.contextmanager
def absent_is_fine() -> Iterator[None]:
    """A block whose AWS calls may find their resource gone; other errors propagate."""
    try:
        yield
    except Exception as exc:
        if not is_absent(exc):
            raise
