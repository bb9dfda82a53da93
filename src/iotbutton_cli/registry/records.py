"""The fields of each kind's records, as types (docs/reference.md, "The registry file").

Every field is optional to the type checker: records are written field by field as AWS confirms
each step, a record an older iotbutton wrote may lack a field, and ``shape.py`` checks what the
code relies on when the file is read. Every record may also carry the fields of
:class:`Recorded`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast

from iotbutton_cli.registry import kinds


class Recorded(TypedDict, total=False):
    recorded: str  # when it was first recorded (UTC)
    pending: bool  # recorded before AWS was asked for it; AWS has not confirmed it yet
    discovered: bool  # added by `clean --discover`


class KeyFilePaths(TypedDict, total=False):
    certificate: str
    private_key: str  # absent when the key is on the device (`things create --csr`)
    public_key: str


class ThingRecord(Recorded, total=False):
    arn: str
    thing_type: str | None
    certificate: str | None  # the id of the certificate in use


class CertificateRecord(Recorded, total=False):
    arn: str
    thing: str | None  # the serial; None for the monitor's certificate
    role: str | None  # "monitor" for the monitor's certificate
    status: str | None  # ACTIVE / INACTIVE, as iotbutton last set it
    policies: list[str]  # IoT policies attached
    thing_attached: bool | None
    files: KeyFilePaths
    public_key_sha256: str  # SHA-256 of the public key (DER SubjectPublicKeyInfo), hex


class CertificateRequestRecord(Recorded, total=False):
    since: str
    until: str | None  # once the CreateCertificateFromCsr call has ended
    thing: str | None
    role: str | None
    pid: int
    host: str | None
    key_file: str | None
    public_key_sha256: str | None


class LeftoverFileRecord(Recorded, total=False):
    reason: str | None


class PolicyRecord(Recorded, total=False):
    arn: str


class ThingTypeRecord(Recorded, total=False):
    arn: str
    deprecated_at: str | None  # set by `clean` when it deprecates the type


class TopicRuleRecord(Recorded, total=False):
    arn: str
    function: str | None  # the function it invokes
    sql: str


class LambdaPermissionRecord(Recorded, total=False):
    function: str
    rule: str | None


class FunctionRecord(Recorded, total=False):
    arn: str
    url: str  # its function URL, where Twilio posts delivery receipts


class LogGroupRecord(Recorded, total=False):
    retention_days: int
    metric_filter: str  # on the rule-error group: the filter that counts rule errors


class ParameterRecord(Recorded, total=False):
    version: int  # the version the function reads; never the value


class BucketRecord(Recorded, total=False):
    arn: str
    objects: list[str]  # config object keys iotbutton wrote and has not yet deleted
    untagged: bool  # created, not yet tagged (CreateBucket takes no tags)


class TableRecord(Recorded, total=False):
    arn: str


class TopicRecord(Recorded, total=False):
    arn: str
    subscriptions: list[str]  # "<protocol>:<endpoint>"


class MetricAlarmRecord(Recorded, total=False):
    arn: str


class RoleRecord(Recorded, total=False):
    arn: str
    inline_policies: list[str]


class ScheduleRecord(Recorded, total=False):
    arn: str
    group: str  # the schedule group it is in (its id is ``<group>/<name>``)


class ScheduleGroupRecord(Recorded, total=False):
    arn: str


AnyRecord = (
    ThingRecord
    | CertificateRecord
    | CertificateRequestRecord
    | LeftoverFileRecord
    | PolicyRecord
    | ThingTypeRecord
    | TopicRuleRecord
    | LambdaPermissionRecord
    | FunctionRecord
    | LogGroupRecord
    | ParameterRecord
    | BucketRecord
    | TableRecord
    | TopicRecord
    | MetricAlarmRecord
    | RoleRecord
    | ScheduleRecord
    | ScheduleGroupRecord
)

# Each kind's record type.
RECORD_TYPES: dict[str, type] = {
    kinds.THINGS: ThingRecord,
    kinds.CERTIFICATES: CertificateRecord,
    kinds.CERTIFICATE_REQUESTS: CertificateRequestRecord,
    kinds.LEFTOVER_FILES: LeftoverFileRecord,
    kinds.POLICIES: PolicyRecord,
    kinds.THING_TYPES: ThingTypeRecord,
    kinds.TOPIC_RULES: TopicRuleRecord,
    kinds.LAMBDA_PERMISSIONS: LambdaPermissionRecord,
    kinds.FUNCTIONS: FunctionRecord,
    kinds.LOG_GROUPS: LogGroupRecord,
    kinds.PARAMETERS: ParameterRecord,
    kinds.BUCKETS: BucketRecord,
    kinds.TABLES: TableRecord,
    kinds.TOPICS: TopicRecord,
    kinds.METRIC_ALARMS: MetricAlarmRecord,
    kinds.ROLES: RoleRecord,
    kinds.SCHEDULES: ScheduleRecord,
    kinds.SCHEDULE_GROUPS: ScheduleGroupRecord,
}


def certificate(record: Mapping[str, Any] | None) -> CertificateRecord:
    """A certificate's record as read from the registry (empty if there is none)."""
    return cast(CertificateRecord, record or {})


def certificate_request(record: Mapping[str, Any] | None) -> CertificateRequestRecord:
    return cast(CertificateRequestRecord, record or {})


def thing_type(record: Mapping[str, Any] | None) -> ThingTypeRecord:
    return cast(ThingTypeRecord, record or {})
