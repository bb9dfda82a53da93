"""The per-operation rate limiter: token buckets, configuration, and bulk work against "AWS".

The end-to-end tests put benchmarks/awsproxy.py in front of a moto server: 100 ms per request, and
every IoT operation throttled at 5 requests/s the way AWS throttles (400 ThrottlingException) --
lower than AWS's 10/s so that, even on a busy 2-core machine, the client without a limiter
clearly exceeds it. No assertion is about wall time: counts of requests and rejections, and the
rates the proxy saw.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import pytest

from iotbutton_cli.aws import ratelimit
from iotbutton_cli.aws.ratelimit import RateLimiter, TokenBucket
from iotbutton_cli.errors import ExitStatus, IotButtonError

RATE = 5.0
LATENCY = 0.1
PROVISION_OPS = (
    "DescribeThing",
    "CreateThing",
    "CreateCertificateFromCsr",
    "AttachPolicy",
    "AttachThingPrincipal",
)
TEARDOWN_OPS = (
    "DetachPolicy",
    "UpdateCertificate",
    "DetachThingPrincipal",
    "DeleteCertificate",
    "DeleteThing",
)


def _load_awsproxy():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "awsproxy.py"
    spec = importlib.util.spec_from_file_location("awsproxy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("awsproxy", module)
    spec.loader.exec_module(module)
    return module


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


# --- token buckets -----------------------------------------------------------------------------


def test_bucket_spaces_callers_one_over_rate_apart():
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert clock.slept == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_bucket_saves_up_at_most_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    clock.now = 60.0  # a long idle time saves up 3 tokens, not 600
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_bucket_refills_with_time():
    clock = FakeClock()
    bucket = TokenBucket(4, clock=clock, sleep=clock.sleep)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.25)
    clock.now = 0.5  # the reserved token was due at 0.25; the next one is due at 0.5
    assert bucket.reserve() == pytest.approx(0.0)
    assert bucket.reserve() == pytest.approx(0.25)


def test_bucket_is_thread_safe_every_slot_handed_out_once():
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    due: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            wait = bucket.reserve()
            with lock:
                due.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(due) == pytest.approx([index / 10 for index in range(400)])


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_bucket_refuses_a_rate_that_is_not_positive(rate):
    with pytest.raises(ValueError):
        TokenBucket(rate)


def test_limiter_has_one_bucket_per_operation():
    clock = FakeClock()
    limiter = RateLimiter(
        {"CreateKeysAndCertificate": 10, "DescribeThing": None},
        clock=clock,
        sleep=clock.sleep,
    )
    assert [limiter.acquire("CreateKeysAndCertificate") for _ in range(3)] == pytest.approx(
        [0.0, 0.1, 0.2]
    )
    assert limiter.acquire("AttachPolicy") == 0.0  # no limit, no default
    assert [limiter.acquire("DescribeThing") for _ in range(3)] == [0.0, 0.0, 0.0]
    stats = limiter.stats["CreateKeysAndCertificate"]
    assert (stats.requests, stats.waited) == (3, 2)
    assert stats.seconds_waited == pytest.approx(0.3)


def test_limiter_default_covers_every_other_operation():
    clock = FakeClock()
    limiter = RateLimiter({}, default=2, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire("ListThings") for _ in range(2)] == pytest.approx([0.0, 0.5])


# --- configuration -----------------------------------------------------------------------------


def test_defaults_are_aws_published_rates():
    limiter = ratelimit.from_environment({})
    assert limiter.limit_for("CreateKeysAndCertificate") == 10
    assert limiter.limit_for("AttachPolicy") == 15
    assert limiter.limit_for("UpdateCertificate") == 10
    assert limiter.limit_for("DeleteCertificate") == 10
    assert limiter.limit_for("ListJobs") is None  # not used by iotbutton: not limited
    assert ratelimit.DEFAULT_LIMITS["AttachThingPrincipal"] == 100


def test_fast_defaults_are_paced_at_the_cap_and_explicit_limits_as_given():
    """A quota of 100/s leaves 10 ms of arrival jitter to a bucket of two; the cap leaves 50."""
    limiter = ratelimit.from_environment({})
    assert limiter.limit_for("AttachThingPrincipal") == ratelimit.MAX_DEFAULT_RATE == 20
    assert limiter.limit_for("DescribeThing") == 20
    scaled = ratelimit.from_environment({"IOTBUTTON_RATE_SCALE": "2"})
    assert scaled.limit_for("DescribeThing") == 40
    assert scaled.limit_for("CreateCertificateFromCsr") == 20
    explicit = ratelimit.from_environment({"IOTBUTTON_RATE_LIMITS": "DescribeThing=300"})
    assert explicit.limit_for("DescribeThing") == 300


def test_every_iot_operation_iotbutton_makes_has_a_default():
    """A new IoT call (direct, or through a paginator) needs its AWS quota in DEFAULT_LIMITS."""
    import re

    import botocore.session

    model = botocore.session.get_session().get_service_model("iot")
    by_method = {
        re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(): name for name in model.operation_names
    }
    used = set()
    source = Path(__file__).resolve().parents[1] / "src" / "iotbutton_cli"
    for path in source.rglob("*.py"):
        for line in path.read_text().splitlines():
            if not re.search(r"\biot\b|client\(\"iot\"\)", line):
                continue
            names = re.findall(r"\biot\.(\w+)|\)\.(\w+)\(|\"(\w+)\"", line)
            used.update(by_method[name] for found in names for name in found if name in by_method)
    assert {"CreateCertificateFromCsr", "DetachPolicy", "ListThings"} <= used
    assert used <= set(ratelimit.DEFAULT_LIMITS), used - set(ratelimit.DEFAULT_LIMITS)


def test_limits_from_the_environment():
    limiter = ratelimit.from_environment(
        {
            "IOTBUTTON_RATE_LIMITS": " CreateKeysAndCertificate=5, iot:AttachPolicy=none,"
            "ListThings=2.5 ",
            "IOTBUTTON_RATE_SCALE": "0.5",
        }
    )
    assert limiter.limit_for("CreateKeysAndCertificate") == 5  # explicit values are not scaled
    assert limiter.limit_for("AttachPolicy") is None
    assert limiter.limit_for("ListThings") == 2.5
    assert limiter.limit_for("UpdateCertificate") == 5  # default 10, scaled
    assert limiter.limit_for("DescribeThing") == 10  # default 350, paced at the cap, scaled


def test_star_sets_every_operation_not_named():
    limiter = ratelimit.from_environment({"IOTBUTTON_RATE_LIMITS": "*=10,DescribeThing=none"})
    assert limiter.limit_for("CreateThing") == 10
    assert limiter.limit_for("ListThings") == 10
    assert limiter.limit_for("DescribeThing") is None


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("IOTBUTTON_RATE_LIMITS", "CreateKeysAndCertificate", "bad-rate-limits"),
        ("IOTBUTTON_RATE_LIMITS", "CreateKeysAndCertificate=fast", "bad-rate-limits"),
        ("IOTBUTTON_RATE_LIMITS", "CreateKeysAndCertificate=0", "bad-rate-limits"),
        ("IOTBUTTON_RATE_LIMITS", "create_thing=5", "bad-rate-limits"),
        ("IOTBUTTON_RATE_SCALE", "-1", "bad-rate-scale"),
        ("IOTBUTTON_RATE_SCALE", "half", "bad-rate-scale"),
        ("IOTBUTTON_RATE_LIMITER", "sometimes", "bad-rate-limiter"),
    ],
)
def test_bad_settings_are_usage_errors(name, value, code):
    def configure() -> None:
        ratelimit.mode({name: value})
        ratelimit.from_environment({name: value})

    with pytest.raises(IotButtonError) as caught:
        configure()
    assert caught.value.code == code
    assert caught.value.exit_status == ExitStatus.USAGE


@pytest.mark.parametrize(
    ("mode", "endpoint", "sandbox", "applies"),
    [
        ("", None, False, True),  # AWS itself
        ("auto", "https://iot-fips.us-east-1.amazonaws.com", False, True),
        ("auto", "http://127.0.0.1:5000", False, False),  # moto, a proxy, LocalStack...
        ("auto", None, True, False),  # the sandbox
        ("on", "http://127.0.0.1:5000", True, True),
        ("off", None, False, False),
    ],
)
def test_when_the_limiter_applies(mode, endpoint, sandbox, applies):
    import boto3

    client = boto3.client("iot", region_name="us-east-1", endpoint_url=endpoint)
    environ = {"IOTBUTTON_RATE_LIMITER": mode} if mode else {}
    assert ratelimit.applies(client, sandbox, environ) is applies


def test_moto_in_process_mock_is_not_limited(iot):
    assert not ratelimit.applies(iot, sandbox=False, environ={})


def test_cli_refuses_bad_limits(cli, monkeypatch, moto_url):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("IOTBUTTON_RATE_LIMITS", "CreateKeysAndCertificate=lots")
    result = cli("things", "create", "--json", code=int(ExitStatus.USAGE))
    assert "IOTBUTTON_RATE_LIMITS" in result.stdout + result.stderr


# --- every HTTP attempt takes a token ----------------------------------------------------------


def test_retries_take_a_token_each(fault_proxy, monkeypatch):
    from iotbutton_cli.context import AppContext

    monkeypatch.setenv("IOTBUTTON_RATE_LIMITER", "on")
    fault_proxy.add("POST", r"^/keys-and-certificate", 400, "ThrottlingException", times=2)
    ctx = AppContext()
    ctx.client("iot").create_keys_and_certificate(setAsActive=True)
    assert ctx.rate_limiter.stats["CreateKeysAndCertificate"].requests == 3


@pytest.mark.parametrize(
    ("limiter", "retry_mode", "expected"),
    [
        ("on", None, "standard"),  # paced by its buckets: a throttle is that call's alone
        ("off", None, "adaptive"),  # no buckets: adaptive mode slows the client down
        ("on", "adaptive", "adaptive"),  # AWS_RETRY_MODE wins, as in the AWS CLI
    ],
)
def test_a_rate_limited_iot_client_retries_in_standard_mode(
    moto_url, monkeypatch, limiter, retry_mode, expected
):
    from iotbutton_cli.context import AppContext

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("IOTBUTTON_RATE_LIMITER", limiter)
    if retry_mode:
        monkeypatch.setenv("AWS_RETRY_MODE", retry_mode)
    ctx = AppContext()
    iot = ctx.client("iot")
    assert iot.meta.config.retries["mode"] == expected
    assert ctx.client("sts").meta.config.retries["mode"] == (retry_mode or "adaptive")
    iot.list_things()
    taken = ctx.rate_limiter.stats.get("ListThings")
    assert (taken.requests if taken else 0) == (1 if limiter == "on" else 0)  # one token a call


def test_custom_endpoint_is_not_limited_by_default(moto_url, monkeypatch):
    from iotbutton_cli.context import AppContext

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    ctx = AppContext()
    ctx.client("iot").create_keys_and_certificate(setAsActive=True)
    assert ctx.rate_limiter.stats == {}


# --- bulk work against a throttling, slow "AWS" -------------------------------------------------


@pytest.fixture
def slow_aws(moto_url, monkeypatch):
    """AWS_ENDPOINT_URL: 100 ms per request, every IoT operation throttled above RATE/s."""
    proxy = _load_awsproxy().AwsProxy(moto_url, latency=LATENCY, default_limit=RATE, burst=2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.start())
    yield proxy
    proxy.stop()


def _assert_at_rate(proxy, operations):
    for operation in operations:
        assert proxy.of(operation), operation
        assert proxy.max_in_window(operation, 1.0) <= RATE * 1.2 + 1, operation
        assert proxy.mean_rate(operation) <= RATE * 1.1, operation


@pytest.mark.slow
def test_bulk_provisioning_and_clean_stay_at_the_rate_limit(cli, slow_aws, monkeypatch):
    monkeypatch.setenv("IOTBUTTON_RATE_LIMITER", "on")
    monkeypatch.setenv("IOTBUTTON_RATE_LIMITS", f"*={RATE:g}")
    report = cli.json("things", "create", "--count", "20")
    assert [b["action"] for b in report["buttons"]] == ["created"] * 20
    keys = slow_aws.of("CreateCertificateFromCsr")
    assert len(keys) == 20 + sum(record.throttled for record in keys)
    _assert_at_rate(slow_aws, PROVISION_OPS)
    _assert_no_storm(slow_aws)

    slow_aws.clear()
    cleaned = cli.json("clean", "--yes")
    assert cleaned["complete"]
    _assert_at_rate(slow_aws, TEARDOWN_OPS)
    _assert_no_storm(slow_aws)


def _assert_no_storm(proxy):
    """A request that arrives early (the machine was busy) may be turned away once, rarely; the
    same call never twice."""
    assert proxy.max_rejections_per_call() <= 1
    assert proxy.throttled() <= 0.05 * len(proxy.of())


@pytest.mark.slow
def test_without_the_limiter_the_same_work_is_throttled(cli, slow_aws, monkeypatch):
    """The control: the proxy really throttles, and adaptive retry alone still gets through."""
    monkeypatch.setenv("IOTBUTTON_RATE_LIMITER", "off")
    report = cli.json("things", "create", "--count", "16")
    assert [b["action"] for b in report["buttons"]] == ["created"] * 16
    assert slow_aws.throttled() >= 5
