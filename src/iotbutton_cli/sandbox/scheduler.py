"""EventBridge Scheduler's schedules, run by the sandbox as Scheduler runs them.

moto stores schedules (``CreateSchedule`` and the rest) but never runs them. :class:`Scheduler`
does: a daemon thread in the sandbox process reads every schedule from moto about once a second,
keeps each one's next fire time (:func:`next_fire`: ``cron(...)`` in the schedule's IANA time
zone, daylight saving time as Scheduler handles it, ``rate(...)`` and ``at(...)``), and when one
is due, checks that the schedule's role lets Scheduler invoke the target (:func:`role_may_invoke`:
the role's trust policy and its permissions, as IAM would decide them) and hands the target's
``Input``, with Scheduler's context attributes filled in (:func:`target_input`), to the sandbox's
asynchronous Lambda queue, as Scheduler invokes a Lambda target. Only Lambda targets are
emulated; every run, and every run that could not be made, is a line in ``sandbox.log``.

:func:`run_now` is the same run made at once, from the CLI's process, over the sandbox's AWS
API (``iotbutton sandbox schedules run``); :func:`schedule_rows` what ``sandbox schedules`` lists.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.sandbox.protocol import SANDBOX_ACCOUNT, SANDBOX_REGION

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

log = logging.getLogger("iotbutton.sandbox")

SCHEDULER_SERVICE = "scheduler.amazonaws.com"
TICK_SECONDS = 1.0
# How far ahead a cron expression is searched for its next run: beyond that, none.
SEARCH_YEARS = 5
# A schedule first seen (or changed) up to this long after it was written still gets the runs
# due since it was written: the thread reads moto about once a second.
CATCH_UP = timedelta(seconds=5)
DEFAULT_INPUT = "{}"  # what a Lambda target gets from a schedule without an Input

# Scheduler's context attributes: it substitutes them in the target's Input.
SCHEDULE_ARN_ATTRIBUTE = "<aws.scheduler.schedule-arn>"
SCHEDULED_TIME_ATTRIBUTE = "<aws.scheduler.scheduled-time>"
EXECUTION_ID_ATTRIBUTE = "<aws.scheduler.execution-id>"
ATTEMPT_NUMBER_ATTRIBUTE = "<aws.scheduler.attempt-number>"

MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
WEEKDAYS = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)
}
RATE = re.compile(r"rate\(\s*([0-9]+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
AT = re.compile(r"at\(([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\)")
CRON = re.compile(r"cron\((.*)\)")
LAMBDA_ARN = re.compile(
    r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]+(:[^:]+)?"
)
# A schedule group's or a schedule's name, as Scheduler allows them.
NAME = re.compile(r"[0-9A-Za-z_.-]{1,64}")


# -- when schedules run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    """A parsed ``cron(minutes hours day-of-month month day-of-week year)``; ``None`` for a
    day field that is ``?`` (the other one decides)."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int] | None
    months: frozenset[int]
    weekdays: frozenset[int] | None  # 1 (SUN) to 7 (SAT)
    years: frozenset[int]

    def matches(self, day: date) -> bool:
        if day.year not in self.years or day.month not in self.months:
            return False
        if self.days is not None and day.day not in self.days:
            return False
        weekday = (day.weekday() + 1) % 7 + 1  # Python's Monday is 0; Scheduler's Sunday is 1
        return self.weekdays is None or weekday in self.weekdays


def parse_cron(expression: str) -> Cron:
    """``cron(...)``'s six fields; a ``ValueError`` names what is wrong, or what the sandbox
    does not emulate (``L``, ``W`` and ``#``)."""
    found = CRON.fullmatch(expression.strip())
    if found is None:
        raise ValueError(f"{expression!r} is not a cron(...) expression")
    fields = found.group(1).split()
    if len(fields) != 6:
        raise ValueError(
            f"{expression} has {len(fields)} fields, not 6 (minutes hours day-of-month month "
            "day-of-week year)"
        )
    minutes, hours, days, months, weekdays, years = fields
    if days == "?" and weekdays == "?":
        raise ValueError(f"{expression}: day-of-month and day-of-week cannot both be ?")
    if days != "?" and weekdays != "?":
        raise ValueError(f"{expression}: one of day-of-month and day-of-week must be ?")
    return Cron(
        minutes=tuple(sorted(_cron_field(expression, minutes, 0, 59))),
        hours=tuple(sorted(_cron_field(expression, hours, 0, 23))),
        days=None if days == "?" else _cron_field(expression, days, 1, 31),
        months=_cron_field(expression, months, 1, 12, MONTHS),
        weekdays=None if weekdays == "?" else _cron_field(expression, weekdays, 1, 7, WEEKDAYS),
        years=_cron_field(expression, years, 1970, 2199),
    )


def _cron_field(
    expression: str, text: str, low: int, high: int, names: Mapping[str, int] | None = None
) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{expression}: {part!r} has no step of at least 1")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        else:
            start, dash, end = base.partition("-")
            first = _cron_value(expression, start, low, high, names)
            last = _cron_value(expression, end, low, high, names) if dash else first
            if slash and not dash:
                last = high  # "a/n": from a on, every n
            if first > last:
                raise ValueError(f"{expression}: the range {base!r} runs backwards")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _cron_value(
    expression: str, text: str, low: int, high: int, names: Mapping[str, int] | None
) -> int:
    upper = text.upper()
    if names is not None and upper in names:
        return names[upper]
    if text.isdigit() and text.isascii():
        value = int(text)
        if low <= value <= high:
            return value
        raise ValueError(f"{expression}: {text} is not from {low} to {high}")
    if any(mark in upper for mark in ("L", "W", "#")):
        raise ValueError(
            f"{expression}: L, W and # (last, nearest weekday, nth weekday) are not emulated "
            "by the sandbox"
        )
    raise ValueError(f"{expression}: {text!r} is not a value of its field")


def time_zone(zone: str | None) -> ZoneInfo:
    """The IANA time zone (UTC when none is given)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{zone!r} is not an IANA time zone") from exc


def next_fire(
    expression: str,
    zone: str | None,
    after: datetime,
    created: datetime | None = None,
) -> datetime | None:
    """The first time after ``after`` (UTC, aware) that ``expression`` runs, evaluated in
    ``zone``; None when it never runs again (an ``at()`` that has passed, a cron with no run in
    the next :data:`SEARCH_YEARS` years). ``rate(N unit)`` runs every N units from ``created``
    (its first run is ``created`` itself, as Scheduler starts a rate schedule at once).

    Daylight saving time as Scheduler handles it: a local time that does not exist (the hour the
    clocks skip) does not run, and one that happens twice (the hour they repeat) runs once, the
    first time. ``ValueError`` for an expression that is wrong or not emulated."""
    after = after.astimezone(timezone.utc)
    text = expression.strip()
    tz = time_zone(zone)
    rate = RATE.fullmatch(text)
    if rate is not None:
        count, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if count < 1:
            raise ValueError(f"{expression}: the rate must be at least 1")
        period = timedelta(**{f"{unit}s": count})  # a day is 24 hours, DST or not
        start = (created or after).astimezone(timezone.utc)
        if after < start:
            return start
        return start + period * ((after - start) // period + 1)
    at = AT.fullmatch(text)
    if at is not None:
        year, month, day, hour, minute, second = (int(part) for part in at.groups())
        try:
            local = datetime(year, month, day, hour, minute, second, tzinfo=tz)
        except ValueError as exc:
            raise ValueError(f"{expression}: {exc}") from exc
        fire = local.astimezone(timezone.utc)
        return fire if fire > after else None
    if text.startswith("cron("):
        return _next_cron(parse_cron(text), tz, after)
    raise ValueError(f"{expression!r} is not a cron(...), rate(...) or at(...) expression")


def _next_cron(cron: Cron, tz: ZoneInfo, after: datetime) -> datetime | None:
    """Day by day from ``after``'s local date, then the matching hours and minutes in order."""
    day = after.astimezone(tz).date()
    last = day + timedelta(days=366 * SEARCH_YEARS)
    while day <= last:
        if day.year not in cron.years:  # a whole year that cannot match
            if day.year > max(cron.years):
                return None
            day = date(day.year + 1, 1, 1)
            continue
        if day.month not in cron.months:  # a whole month
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
            continue
        if cron.matches(day):
            for hour in cron.hours:
                for minute in cron.minutes:
                    fire = _utc_of_local(day, hour, minute, tz)
                    if fire is not None and fire > after:
                        return fire
        day += timedelta(days=1)
    return None


def _utc_of_local(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime | None:
    """The UTC time of a local wall-clock time (its first occurrence); None if the clocks skip
    it."""
    naive = datetime(day.year, day.month, day.day, hour, minute)
    utc = naive.replace(tzinfo=tz).astimezone(timezone.utc)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return utc


def iso(moment: datetime) -> str:
    """``2026-12-07T07:00:00Z``: Scheduler's form of a time, to the second, in UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def target_input(
    text: str | None,
    schedule_arn: str,
    scheduled_time: datetime,
    attempt: int = 1,
    execution_id: str | None = None,
) -> str:
    """The target's ``Input`` as Scheduler sends it: its context attributes replaced (only
    there: the rest of the target's settings are taken as they are)."""
    values = {
        SCHEDULE_ARN_ATTRIBUTE: schedule_arn,
        SCHEDULED_TIME_ATTRIBUTE: iso(scheduled_time),
        EXECUTION_ID_ATTRIBUTE: execution_id or str(uuid.uuid4()),
        ATTEMPT_NUMBER_ATTRIBUTE: str(attempt),
    }
    result = DEFAULT_INPUT if text is None else text
    for attribute, value in values.items():
        result = result.replace(attribute, value)
    return result


# -- what a schedule says ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleFacts:
    """A schedule's settings that decide when it runs and what it invokes, from moto or from
    GetSchedule (the same names)."""

    group: str
    name: str
    arn: str
    expression: str
    zone: str
    state: str
    target: dict[str, Any]
    created: datetime | None = None
    modified: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    after_completion: str | None = None

    @classmethod
    def of(cls, answer: Mapping[str, Any]) -> ScheduleFacts:
        """From GetSchedule's answer (or moto's ``Schedule.to_dict()``)."""
        return cls(
            group=str(answer.get("GroupName") or "default"),
            name=str(answer["Name"]),
            arn=str(answer.get("Arn", "")),
            expression=str(answer.get("ScheduleExpression", "")),
            zone=str(answer.get("ScheduleExpressionTimezone") or "UTC"),
            state=str(answer.get("State") or "ENABLED"),
            target=dict(answer.get("Target") or {}),
            created=_moment(answer.get("CreationDate")),
            modified=_moment(answer.get("LastModificationDate")),
            start=_moment(answer.get("StartDate")),
            end=_moment(answer.get("EndDate")),
            after_completion=answer.get("ActionAfterCompletion"),
        )

    @property
    def label(self) -> str:
        return f"{self.group}/{self.name}"

    @property
    def target_arn(self) -> str:
        return str(self.target.get("Arn", ""))

    @property
    def role_arn(self) -> str:
        return str(self.target.get("RoleArn", ""))

    @property
    def group_arn(self) -> str:
        prefix = self.arn.split(":schedule/", 1)[0]
        return f"{prefix}:schedule-group/{self.group}"

    @property
    def one_time(self) -> bool:
        return self.expression.strip().startswith("at(")

    @property
    def signature(self) -> str:
        """What a change of makes the next run be computed again."""
        return json.dumps(
            [self.expression, self.zone, self.target, _text(self.start), _text(self.end)],
            sort_keys=True,
            default=str,
        )

    def next_run(self, after: datetime) -> datetime | None:
        """The first run after ``after``, within the schedule's StartDate and EndDate (as
        :func:`next_fire`, whatever the state); ``ValueError`` as it."""
        since = after
        if self.start is not None and self.start > after:
            since = self.start - timedelta(microseconds=1)  # StartDate itself may run
        fire = next_fire(self.expression, self.zone, since, self.start or self.created)
        if fire is not None and self.end is not None and fire > self.end:
            return None
        return fire


def _moment(value: Any) -> datetime | None:
    """A time as moto keeps it (seconds since the epoch) or boto3 parses it (a datetime)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str) and value:
        try:
            return _moment(float(value))
        except ValueError:
            pass
        try:
            return _moment(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def is_lambda_arn(arn: str) -> bool:
    return LAMBDA_ARN.fullmatch(arn) is not None


# -- may the role invoke the function ----------------------------------------------------------


def role_may_invoke(
    role_arn: str,
    function_arn: str,
    source_arn: str | None = None,
    account: str = SANDBOX_ACCOUNT,
) -> str | None:
    """None if Scheduler may invoke ``function_arn`` as ``role_arn`` (read from the sandbox's
    moto), else why not. ``source_arn``: the schedule group's ARN, for a trust policy's
    ``aws:SourceArn`` condition."""
    from moto.iam.models import iam_backends

    from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

    with MOTO_LOCK:
        backend = iam_backends[account]["aws"]
        try:
            role = backend.get_role_by_arn(role_arn)
        except Exception:
            return f"its role {role_arn or '(none)'} does not exist"
        trust = role.assume_role_policy_document
        documents: list[Any] = list(role.policies.values())
        for policy in role.managed_policies.values():
            documents += [
                version.document
                for version in policy.versions
                if version.version_id == policy.default_version_id
            ]
    return role_refusal(trust, documents, function_arn, account, source_arn)


def role_refusal_over_api(
    iam: Any,
    role_arn: str,
    function_arn: str,
    source_arn: str | None = None,
    account: str = SANDBOX_ACCOUNT,
) -> str | None:
    """:func:`role_may_invoke`, read with IAM calls (GetRole, the inline policies and the
    attached managed policies' default versions)."""
    from iotbutton_cli.aws.errors import error_code

    role_name = role_arn.rsplit("/", 1)[-1] if ":role/" in role_arn else ""
    if not role_name:
        return f"its role {role_arn or '(none)'} does not exist"
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return f"its role {role_arn} does not exist"
        raise
    if role.get("Arn") != role_arn:
        return f"its role {role_arn} does not exist"
    documents: list[Any] = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for policy_name in page.get("PolicyNames", []):
            answer = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)
            documents.append(answer["PolicyDocument"])
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        for attached in page.get("AttachedPolicies", []):
            arn = attached["PolicyArn"]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            answer = iam.get_policy_version(PolicyArn=arn, VersionId=version)
            documents.append(answer["PolicyVersion"]["Document"])
    return role_refusal(
        role.get("AssumeRolePolicyDocument"), documents, function_arn, account, source_arn
    )


def role_refusal(
    trust: Any,
    policies: Iterable[Any],
    function_arn: str,
    account: str = SANDBOX_ACCOUNT,
    source_arn: str | None = None,
) -> str | None:
    """None if a role with this trust policy and these permission policies lets Scheduler
    invoke the function, else why not, as IAM decides it: the trust policy must allow
    ``sts:AssumeRole`` to ``scheduler.amazonaws.com`` (its conditions on ``aws:SourceAccount``
    and ``aws:SourceArn`` met), and a policy must allow ``lambda:InvokeFunction`` on the function
    (``*`` wildcards; ``ARN:*`` counts too) with none denying it."""
    context = {"aws:sourceaccount": account}
    if source_arn:
        context["aws:sourcearn"] = source_arn
    unmet: list[str] = []
    trusted = False
    for statement in _statements(trust):
        if statement.get("Effect") != "Allow" or not _action_matches(statement, "sts:AssumeRole"):
            continue
        if SCHEDULER_SERVICE not in _services(statement.get("Principal")):
            continue
        why = _unmet_condition(statement.get("Condition"), context)
        if why is None:
            trusted = True
            break
        unmet.append(why)
    if not trusted:
        detail = f" ({unmet[0]})" if unmet else ""
        return f"its trust policy does not let {SCHEDULER_SERVICE} assume it{detail}"
    allowed = False
    for document in policies:
        for statement in _statements(document):
            if not _action_matches(statement, "lambda:InvokeFunction"):
                continue
            if not _resource_matches(statement, function_arn):
                continue
            if _unmet_condition(statement.get("Condition"), context) is not None:
                continue
            if statement.get("Effect") == "Deny":
                return f"a policy of it denies lambda:InvokeFunction on {function_arn}"
            if statement.get("Effect") == "Allow":
                allowed = True
    if not allowed:
        return f"no policy of it allows lambda:InvokeFunction on {function_arn}"
    return None


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            try:
                document = json.loads(unquote(document))
            except ValueError:
                return []
    if not isinstance(document, dict):
        return []
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    return [s for s in statements if isinstance(s, dict)] if isinstance(statements, list) else []


def _listed(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def _services(principal: Any) -> list[str]:
    if principal == "*":
        return [SCHEDULER_SERVICE]
    if isinstance(principal, dict):
        return _listed(principal.get("Service"))
    return []


def _wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` any one (nothing else is special)."""
    expression = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    flags = re.IGNORECASE if ignore_case else 0
    return re.fullmatch(expression, value, flags) is not None


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    return any(_wildcard(p, action, ignore_case=True) for p in _listed(statement.get("Action")))


def _resource_matches(statement: Mapping[str, Any], arn: str) -> bool:
    return any(
        _wildcard(pattern, arn) or pattern == f"{arn}:*"
        for pattern in _listed(statement.get("Resource"))
    )


CONDITION_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda pattern, value: pattern == value,
    "StringLike": _wildcard,
    "ArnEquals": lambda pattern, value: pattern == value,
    "ArnLike": _wildcard,
}


def _unmet_condition(condition: Any, context: Mapping[str, str]) -> str | None:
    """None when every condition holds with what Scheduler's request carries (``context``,
    keys in lower case), else the first that does not."""
    if not isinstance(condition, dict):
        return None
    for operator, tests in condition.items():
        negated = operator.startswith(("StringNot", "ArnNot"))
        test = CONDITION_TESTS.get(operator.replace("Not", "", 1) if negated else operator)
        if test is None or not isinstance(tests, dict):
            return f"its condition {operator} is not emulated"
        for key, wanted in tests.items():
            value = context.get(str(key).lower())
            if value is None:
                if negated:
                    continue  # a key that is not there is not equal to anything
                return f"its condition on {key} is not met: Scheduler sends no such key"
            matched = any(test(pattern, value) for pattern in _listed(wanted))
            if matched == negated:
                return f"its condition {operator} on {key} is not met by {value}"
    return None


# -- the sandbox's thread ---------------------------------------------------------------------


@dataclass
class _Plan:
    signature: str
    next: datetime | None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Scheduler:
    """Runs the schedules in the sandbox's moto: :meth:`tick` is one look at them, which the
    thread takes about every ``interval`` seconds, at ``clock``'s time. ``invoker`` is the
    sandbox's :class:`~.async_invoke.AsyncInvoker`, which takes the Lambda targets' events."""

    def __init__(
        self,
        invoker: Any,
        clock: Callable[[], datetime] = _utc_now,
        interval: float = TICK_SECONDS,
        account: str = SANDBOX_ACCOUNT,
        region: str = SANDBOX_REGION,
    ) -> None:
        self.invoker = invoker
        self.clock = clock
        self.interval = interval
        self.account = account
        self.region = region
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.tick()
            except Exception:  # never lose the thread: say it and look again
                log.exception("the scheduler could not read the schedules")

    def next_runs(self) -> dict[str, datetime | None]:
        """What the thread holds as each enabled schedule's next run ("group/name" keys)."""
        return {f"{group}/{name}": plan.next for (group, name), plan in self._plans.items()}

    def tick(self) -> None:
        now = self.clock()
        seen = set()
        for facts in self._schedules():
            key = (facts.group, facts.name)
            seen.add(key)
            try:
                self._consider(key, facts, now)
            except Exception:
                log.exception("schedule %s: could not run it", facts.label)
        for key in set(self._plans) - seen:  # deleted
            del self._plans[key]

    def _consider(self, key: tuple[str, str], facts: ScheduleFacts, now: datetime) -> None:
        if facts.state != "ENABLED":
            self._plans.pop(key, None)  # enabled again: its runs count from then
            return
        plan = self._plans.get(key)
        if plan is None or plan.signature != facts.signature:
            plan = _Plan(facts.signature, self._first_run(facts, now))
            self._plans[key] = plan
        if plan.next is None or now < plan.next:
            return
        due, plan.next = plan.next, self._next_run(facts, max(plan.next, now))
        self.fire(facts, due)  # runs missed while the clock jumped are not made up

    def _first_run(self, facts: ScheduleFacts, now: datetime) -> datetime | None:
        """From when the schedule was written (a run due since then counts, a rate schedule's
        first one included), unless that is longer ago than the thread could have missed."""
        since = now - CATCH_UP
        if facts.modified is not None and facts.modified > since:
            since = facts.modified
        return self._next_run(facts, since - timedelta(microseconds=1), first=True)

    def _next_run(
        self, facts: ScheduleFacts, after: datetime, first: bool = False
    ) -> datetime | None:
        try:
            fire = facts.next_run(after)
        except ValueError as exc:
            if first:
                log.warning("schedule %s never runs in the sandbox: %s", facts.label, exc)
            return None
        if fire is not None:
            log.debug("schedule %s runs next at %s", facts.label, iso(fire))
        return fire

    def fire(self, facts: ScheduleFacts, scheduled: datetime) -> None:
        """One run, for ``scheduled``: the Lambda target invoked asynchronously if the role may
        invoke it; a one-time schedule deleted afterwards if it says so."""
        source = f"schedule {facts.label}"
        target = facts.target_arn
        if is_lambda_arn(target):
            self._invoke(facts, scheduled, source, target)
        else:
            log.warning(
                "%s: due at %s, not run: only Lambda function targets are emulated, not %s",
                source,
                iso(scheduled),
                target or "(none)",
            )
        if facts.one_time and facts.after_completion == "DELETE":
            self._delete(facts)

    def _invoke(self, facts: ScheduleFacts, scheduled: datetime, source: str, target: str) -> None:
        from iotbutton_cli.sandbox.async_invoke import AsyncEvent

        refused = role_may_invoke(facts.role_arn, target, facts.group_arn, self.account)
        if refused is not None:
            # Scheduler's invocation fails: its retries and dead-letter queue are not emulated.
            log.warning(
                "%s: due at %s, Scheduler could not invoke %s: %s",
                source,
                iso(scheduled),
                target,
                refused,
            )
            return
        text = target_input(facts.target.get("Input"), facts.arn, scheduled)
        try:
            event = json.loads(text)
        except ValueError:
            log.warning(
                "%s: due at %s, not run: its Input is not JSON, which Lambda refuses",
                source,
                iso(scheduled),
            )
            return
        log.info("%s: runs for %s, invoking %s", source, iso(scheduled), target)
        self.invoker.submit(AsyncEvent(target, event, source=source))

    def _delete(self, facts: ScheduleFacts) -> None:
        from moto.scheduler.models import scheduler_backends

        from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

        with MOTO_LOCK:
            try:
                scheduler_backends[self.account][self.region].delete_schedule(
                    facts.group, facts.name
                )
            except Exception:  # deleted already
                return
        log.info("schedule %s: deleted after its run (ActionAfterCompletion DELETE)", facts.label)

    def _schedules(self) -> list[ScheduleFacts]:
        from moto.scheduler.models import scheduler_backends

        from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

        with MOTO_LOCK:
            backend = scheduler_backends[self.account][self.region]
            return [
                ScheduleFacts.of(schedule.to_dict())
                for group in list(backend.schedule_groups.values())
                for schedule in list(group.schedules.values())
            ]


# -- from the CLI, over the sandbox's AWS API --------------------------------------------------


def schedule_rows(
    client: Callable[[str], Any], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Every schedule in every group, sorted by group and name, as ``sandbox schedules --json``
    prints them; ``next_run`` is None for a disabled schedule and for one that never runs
    again (or whose expression the sandbox does not emulate)."""
    scheduler = client("scheduler")
    now = now or datetime.now(timezone.utc)
    rows = []
    for page in scheduler.get_paginator("list_schedule_groups").paginate():
        for group in page.get("ScheduleGroups", []):
            pages = scheduler.get_paginator("list_schedules").paginate(GroupName=group["Name"])
            for listed in (item for page in pages for item in page.get("Schedules", [])):
                try:
                    answer = scheduler.get_schedule(GroupName=group["Name"], Name=listed["Name"])
                except Exception as exc:  # deleted since it was listed
                    from iotbutton_cli.aws.errors import error_code

                    if error_code(exc) == "ResourceNotFoundException":
                        continue
                    raise
                rows.append(_row(ScheduleFacts.of(answer), now))
    return sorted(rows, key=lambda row: (row["group"], row["name"]))


def _row(facts: ScheduleFacts, now: datetime) -> dict[str, Any]:
    try:
        fire = facts.next_run(now) if facts.state == "ENABLED" else None
    except ValueError:
        fire = None
    return {
        "group": facts.group,
        "name": facts.name,
        "expression": facts.expression,
        "timezone": facts.zone,
        "state": facts.state,
        "target": facts.target_arn,
        "next_run": None if fire is None else iso(fire),
    }


def run_now(
    client: Callable[[str], Any], group: str, name: str, now: datetime | None = None
) -> dict[str, Any]:
    """Run a schedule now, as if the clock had reached its next run: its Input, with that time
    as ``<aws.scheduler.scheduled-time>``, sent to its Lambda target asynchronously
    (``Invoke`` with ``InvocationType=Event``) if its role lets Scheduler invoke it. The
    schedule itself is left as it is (it still runs at that time)."""
    from iotbutton_cli.aws.errors import error_code

    label = f"{group}/{name}"
    try:
        answer = client("scheduler").get_schedule(GroupName=group, Name=name)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise IotButtonError(
                "schedule-not-found",
                f"The sandbox has no schedule {label}.",
                "List them with `iotbutton sandbox schedules`.",
            ) from None
        raise
    facts = ScheduleFacts.of(answer)
    target = facts.target_arn
    if not is_lambda_arn(target):
        raise IotButtonError(
            "schedule-not-emulated",
            f"The schedule {label} targets {target or 'nothing'}: only Lambda function targets "
            "are emulated.",
            "Give it a Lambda function ARN as its target, or run it against AWS.",
        )
    try:
        scheduled = facts.next_run(now or datetime.now(timezone.utc))
    except ValueError as exc:
        raise IotButtonError(
            "schedule-not-emulated",
            f"The schedule {label} cannot be run in the sandbox: {exc}.",
            "Use an expression the sandbox emulates: cron(...) without L, W or #, rate(...) "
            "or at(...).",
        ) from None
    if scheduled is None:
        raise IotButtonError(
            "schedule-no-next-run",
            f"The schedule {label} ({facts.expression}) has no run after now to stand for.",
            "A one-time at() schedule whose time has passed, or one past its EndDate, never "
            "runs again: give it a new expression to run it.",
        )
    refused = role_refusal_over_api(client("iam"), facts.role_arn, target, facts.group_arn)
    if refused is not None:
        raise IotButtonError(
            "schedule-role-refused",
            f"Scheduler may not invoke {target} for {label}: {refused}.",
            f"Let its role trust {SCHEDULER_SERVICE} and allow lambda:InvokeFunction on the "
            "function (`iotbutton --sandbox notify deploy` makes the release schedule's role).",
        )
    payload = target_input(facts.target.get("Input"), facts.arn, scheduled)
    answer = client("lambda").invoke(
        FunctionName=target, InvocationType="Event", Payload=payload.encode()
    )
    return {
        "schedule": label,
        "scheduled_time": iso(scheduled),
        "target": target,
        "status": int(answer.get("StatusCode", 0)),
    }
