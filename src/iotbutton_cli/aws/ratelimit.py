"""Client-side rate limits for the AWS IoT control plane: one token bucket per API operation.

AWS IoT Core throttles every control-plane API per account and Region (CreateKeysAndCertificate at
10 requests/s, AttachPolicy at 15/s, ...). Bulk commands run many calls at once; without a limit
they overshoot, AWS answers ThrottlingException, and botocore's adaptive retry then slows down
*every* IoT call of the client, not just the throttled one. A token bucket per operation, taken in
botocore's ``before-send`` event (once per HTTP attempt, so retries pay too), keeps each operation
at its published rate, and throttling stays the exception adaptive retry is there to absorb.

When it applies (``IOTBUTTON_RATE_LIMITER``):

- ``auto`` (default): only when the IoT client talks to AWS itself (an ``*.amazonaws.com``-style
  endpoint). The limits model AWS's quotas; the sandbox, a moto server or any other custom
  endpoint (``--endpoint-url``, ``AWS_ENDPOINT_URL``), and moto's in-process mock, have no such
  limits, and waiting for them would only make tests and the sandbox slower.
- ``on``: always, sandbox and custom endpoints included (benchmarks and tests that put a throttling
  proxy in front of moto).
- ``off``: never.

What the limits are:

- ``IOTBUTTON_RATE_LIMITS="CreateKeysAndCertificate=5,AttachPolicy=10"`` sets limits in requests
  per second for the operations named (AWS API names, optionally prefixed ``iot:``); ``*=N`` sets
  every other operation, listed or not; ``Op=none`` removes the limit of one operation. An account
  whose quotas were raised, or that shares its quota with another tool, says so here.
- ``IOTBUTTON_RATE_SCALE=0.5`` multiplies the defaults (not explicit ``IOTBUTTON_RATE_LIMITS``
  values), e.g. to leave half of each quota to something else running in the same account.

Defaults (:data:`DEFAULT_LIMITS`) are AWS's published default quotas, paced at most
:data:`MAX_DEFAULT_RATE`: AWS does not publish how many requests its buckets save up, and two
requests sent ``1/rate`` apart can arrive closer together (thread scheduling on a busy machine,
the network). A bucket that saves up one request beyond the rate absorbs ``1/rate`` of that: 10 ms
at 100/s, which a busy machine exceeds, 50 ms at 20/s. No operation needs more than 20/s for
iotbutton's work, which the certificate quotas hold at 10 buttons per second. Scaled defaults
(``IOTBUTTON_RATE_SCALE``) are capped at the scaled cap; explicit limits are used as given.
The sources: the "AWS IoT Core
API throttling limits" table of the AWS General Reference,
https://docs.aws.amazon.com/general/latest/gr/iot-core.html#throttling-limits, and the Service
Quotas codes given beside each value, which the account's own (possibly raised) values can be
read from: ``aws service-quotas get-service-quota --service-code iotcore --quota-code L-40B55430``.
Every IoT operation iotbutton makes has a default here (tests/test_ratelimit.py checks); any
other operation is not limited on the client.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from iotbutton_cli.errors import usage_error

MODE_ENV = "IOTBUTTON_RATE_LIMITER"
LIMITS_ENV = "IOTBUTTON_RATE_LIMITS"
SCALE_ENV = "IOTBUTTON_RATE_SCALE"
MODES = ("auto", "on", "off")

# AWS IoT Core's default control-plane quotas, requests per second per account and Region, with
# their Service Quotas codes (service code ``iotcore``). Every operation iotbutton makes.
DEFAULT_LIMITS: dict[str, float] = {
    # Provisioning a button: DescribeThing, CreateThing, CreateCertificateFromCsr, AttachPolicy,
    # AttachThingPrincipal. The certificate is the ceiling: 10 buttons per second.
    "DescribeThing": 350,  # L-0EF0F5EE
    "CreateThing": 100,  # L-64CBACAC
    # Not in the table this was checked against: taken to be CreateKeysAndCertificate's 10/s.
    "CreateCertificateFromCsr": 10,
    "CreateKeysAndCertificate": 10,  # L-40B55430
    "AttachPolicy": 15,  # L-CA7D4E3E
    "AttachThingPrincipal": 100,  # L-F64D1AA6
    # Retiring a certificate and deleting its thing: UpdateCertificate and DeleteCertificate are
    # the ceiling of `clean`, 10 buttons per second.
    "DetachPolicy": 15,  # L-EC88D510
    "UpdateCertificate": 10,  # L-77B523DC
    "DetachThingPrincipal": 100,  # L-B5EE4A16
    "DeleteCertificate": 10,  # L-EEB8F0B1
    "DeleteThing": 100,  # L-889800F7
    "DescribeCertificate": 10,  # L-FC864907
    # The policy and thing type, once per command.
    "CreatePolicy": 10,  # L-1B2EEF52
    "GetPolicy": 15,  # L-5CE9072D
    "CreatePolicyVersion": 10,
    "ListPolicyVersions": 10,
    "DeletePolicyVersion": 10,  # L-2990EF9F
    "DeletePolicy": 10,  # L-58129C66
    "CreateThingType": 15,  # L-8650816F
    "DescribeThingType": 100,  # L-DDCF8E97
    "DeprecateThingType": 15,  # L-7F1DBFAE
    "DeleteThingType": 15,  # L-CFBDB489
    # The notifier's topic rule and the data endpoint.
    "CreateTopicRule": 5,
    "ReplaceTopicRule": 5,
    "GetTopicRule": 200,
    "DeleteTopicRule": 20,
    "DescribeEndpoint": 10,  # L-F30831DF
    # Listing: `clean --discover` and the checks that look for what an interrupted run left.
    "ListThings": 10,  # L-57AAC135
    "ListThingPrincipals": 10,  # L-FC3EF4D9
    "ListPrincipalThings": 10,  # L-C481616A
    "ListThingTypes": 10,  # L-F9EBF527
    "ListCertificates": 10,  # L-97DA2C60
    "ListAttachedPolicies": 15,  # L-B2DA2A45
    "ListTargetsForPolicy": 10,  # L-D7C50543
    "ListTopicRules": 1,  # L-860C3E36
    "ListTagsForResource": 10,  # L-D127B7BE
    "TagResource": 10,  # L-06E76376
    "UntagResource": 10,  # L-8996ACA8
}

# The fastest any default is paced (requests/s): see the module docstring. Twice the certificate
# quotas that set the pace of bulk provisioning and clean.
MAX_DEFAULT_RATE = 20.0

# Host name suffixes of AWS's own endpoints (commercial, China, dual-stack, GovCloud, VPC
# endpoints): an IoT client resolved to one of these talks to real AWS quotas.
AWS_HOST_SUFFIXES = (
    ".amazonaws.com",
    ".amazonaws.com.cn",
    ".api.aws",
    ".api.amazonwebservices.com.cn",
)

_OPERATION = re.compile(r"^(?:iot:)?([A-Z][A-Za-z0-9]*|\*)$")
# Slower than one call in ten seconds is a command that looks hung; a scale outside these bounds
# would pace some default below that, or overflow.
MIN_RATE = 0.1
MAX_RATE = 1_000_000.0
MIN_SCALE = MIN_RATE / min(DEFAULT_LIMITS.values())
MAX_SCALE = 1000.0
_NO_LIMIT = ("none", "off", "unlimited", "inf")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; thread-safe.

    A caller reserves its token at once (the count may go negative) and then sleeps until the
    token is due, without holding the lock: concurrent callers are spaced ``1/rate`` apart in the
    order they arrived, and nobody spins or stampedes when a token frees up.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number, not {rate!r}")
        self.rate = float(rate)
        self.capacity = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; returns how many seconds from now it may be used."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass
class OperationStats:
    requests: int = 0
    waited: int = 0
    seconds_waited: float = 0.0


@dataclass
class RateLimiter:
    """A token bucket per operation, created on first use from ``limits`` (and ``default``)."""

    limits: Mapping[str, float | None]
    default: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    stats: dict[str, OperationStats] = field(default_factory=dict)
    _buckets: dict[str, TokenBucket | None] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def limit_for(self, operation: str) -> float | None:
        if operation in self.limits:
            return self.limits[operation]
        return self.default

    def acquire(self, operation: str) -> float:
        """Wait until ``operation`` may be sent; returns the seconds waited."""
        with self._lock:
            if operation not in self._buckets:
                rate = self.limit_for(operation)
                self._buckets[operation] = (
                    TokenBucket(rate, clock=self.clock, sleep=self.sleep) if rate else None
                )
            bucket = self._buckets[operation]
            stats = self.stats.setdefault(operation, OperationStats())
            stats.requests += 1
        if bucket is None:
            return 0.0
        waited = bucket.acquire()
        if waited:
            with self._lock:
                stats.waited += 1
                stats.seconds_waited += waited
        return waited

    def before_send(self, event_name: str = "", **_: Any) -> None:
        """botocore ``before-send.iot.<Operation>`` handler: one token per HTTP attempt.

        Returns None, so botocore sends the request itself afterwards.
        """
        self.acquire(event_name.rsplit(".", 1)[-1])


def parse_limits(text: str) -> tuple[dict[str, float | None], float | None, bool]:
    """``"Op=5,Other=none,*=20"`` → (limits by operation, the ``*`` limit, whether ``*`` is set)."""
    limits: dict[str, float | None] = {}
    default: float | None = None
    default_set = False
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (piece.strip() for piece in item.partition("="))
        match = _OPERATION.match(name)
        if not sep or match is None:
            raise _bad_limits(item)
        rate = _rate(value, item)
        if match.group(1) == "*":
            default, default_set = rate, True
        else:
            limits[match.group(1)] = rate
    return limits, default, default_set


def _rate(value: str, item: str) -> float | None:
    if value.lower() in _NO_LIMIT:
        return None
    try:
        rate = float(value)
    except ValueError:
        raise _bad_limits(item) from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise _bad_limits(item)
    return rate


def _bad_limits(item: str) -> Exception:
    return usage_error(
        "bad-rate-limits",
        f"{LIMITS_ENV} has an entry iotbutton cannot read: {item!r}.",
        "Write Operation=requests-per-second pairs, e.g. "
        f'{LIMITS_ENV}="CreateCertificateFromCsr=5,AttachPolicy=10", each rate from '
        f"{MIN_RATE} to {MAX_RATE:,.0f} (Op=none: no limit; *=N: every other operation).",
    )


def _scale(environ: Mapping[str, str]) -> float:
    text = environ.get(SCALE_ENV, "").strip()
    if not text:
        return 1.0
    try:
        scale = float(text)
    except ValueError:
        scale = -1.0
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise usage_error(
            "bad-rate-scale",
            f"{SCALE_ENV} must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}, not {text!r}.",
            "E.g. 0.5 to use half of each AWS quota, 2 if the account's quotas were doubled.",
        )
    return scale


def mode(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    value = environ.get(MODE_ENV, "").strip().lower() or "auto"
    if value not in MODES:
        raise usage_error(
            "bad-rate-limiter",
            f"{MODE_ENV} must be auto, on or off, not {value!r}.",
            "auto limits only calls to AWS itself; on also limits the sandbox and custom "
            "endpoints; off never limits.",
        )
    return value


def from_environment(environ: Mapping[str, str] | None = None) -> RateLimiter:
    """The limiter the environment asks for: AWS's defaults, scaled, then overridden."""
    environ = os.environ if environ is None else environ
    scale = _scale(environ)
    limits: dict[str, float | None] = {
        name: min(rate, MAX_DEFAULT_RATE) * scale for name, rate in DEFAULT_LIMITS.items()
    }
    overrides, default, default_set = parse_limits(environ.get(LIMITS_ENV, ""))
    if default_set:
        limits = {}
    limits.update(overrides)
    return RateLimiter(limits, default)


def is_aws_endpoint(url: str | None) -> bool:
    host = (urlsplit(url).hostname or "").lower() if url else ""
    return host.endswith(AWS_HOST_SUFFIXES)


def applies(client: Any, sandbox: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to limit this IoT client (see the module docstring for the modes)."""
    chosen = mode(environ)
    if chosen != "auto":
        return chosen == "on"
    if sandbox or _moto_mock_active():
        return False
    return is_aws_endpoint(getattr(client.meta, "endpoint_url", None))


def _moto_mock_active() -> bool:
    """moto's in-process ``mock_aws`` answers calls addressed to AWS's own host names; it has no
    quotas either. (moto is only ever imported by tests and the sandbox, never to reach AWS.)"""
    models = sys.modules.get("moto.core.models")
    return bool(getattr(getattr(models, "botocore_stubber", None), "enabled", False))


def install(client: Any, limiter: RateLimiter) -> None:
    """Make every HTTP attempt of the IoT ``client`` take a token for its operation first."""
    service_id = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-send.{service_id}", limiter.before_send)
