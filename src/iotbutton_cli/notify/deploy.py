"""Deploy the notifier: role, log groups, config bucket and object, secret, function, rule.

Each step reads what AWS has, compares it with what it wants, and changes only what differs, so a
second deploy with nothing changed makes no mutating call. Each resource is recorded in the
registry the moment AWS confirms it, and ``clean`` removes them all.

Changes reach warm Lambda containers because the function's environment names the config object
by its content hash and the secret by its parameter version: a new config or secret changes the
environment, and Lambda starts fresh containers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.aws.errors import error_code, error_message, is_not_found
from iotbutton_cli.aws.retry import retry_while
from iotbutton_cli.aws.tags import MANAGED_BY_KEY, MANAGED_BY_VALUE, aws_tags
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError, not_ours
from iotbutton_cli.notify import rules
from iotbutton_cli.provisioning import ownership
from iotbutton_cli.registry import kinds

FUNCTION_NAME = "iotbutton-notifier"
SECRET_PARAMETER = "/iotbutton/twilio-secret"  # noqa: S105 - a name, not the secret
FUNCTION_LOG_GROUP = f"/aws/lambda/{FUNCTION_NAME}"
RULE_ERROR_LOG_GROUP = "/iotbutton/rule-errors"
RUNTIME = "python3.13"
ARCHITECTURE = "arm64"  # pure Python: Graviton is cheaper and as fast
MEMORY_MB = 128
TIMEOUT_SECONDS = 30
TWILIO_TIMEOUT_SECONDS = "5"  # 3 attempts x 5 s fit the 30 s function timeout
LOG_RETENTION_DAYS = 30
CONFIG_PREFIX = "notifier/config-"

ROLE_KIND = kinds.ROLES
LOG_GROUP_KIND = kinds.LOG_GROUPS
BUCKET_KIND = kinds.BUCKETS
PARAMETER_KIND = kinds.PARAMETERS
FUNCTION_KIND = kinds.FUNCTIONS


@dataclass(frozen=True)
class Names:
    """Resource names for one account and region (IAM and S3 names are global, hence suffixes)."""

    function_role: str
    rule_error_role: str
    bucket: str

    @classmethod
    def for_context(cls, ctx: AppContext) -> Names:
        return cls(
            function_role=f"iotbutton-notifier-{ctx.region}",
            rule_error_role=f"iotbutton-rule-errors-{ctx.region}",
            bucket=f"iotbutton-config-{ctx.account_id}-{ctx.region}",
        )


@dataclass
class StepResult:
    resource: str
    name: str
    action: str  # created | updated | unchanged


@dataclass
class DeployReport:
    function_arn: str = ""
    code_sha256: str = ""
    config_key: str = ""
    steps: list[StepResult] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return all(step.action == "unchanged" for step in self.steps)


@dataclass(frozen=True)
class DeployInput:
    """Everything a deploy needs from the user's machine; the secret never leaves this object
    except towards SSM."""

    lambda_document: dict[str, Any]
    secret: str = field(repr=False)
    bundle_data: bytes = field(repr=False)
    code_sha256: str = ""
    handler: str = "handler.lambda_handler"
    twilio_api_base: str | None = None  # the sandbox points Twilio calls at its stand-in
    # The default rule sends every button's clicks to the notifier; without it, only the
    # user's own rules (`rules create`) do, so they never message twice.
    default_rule: bool = True


def _trust(service: str, account: str | None = None) -> str:
    """Trust one AWS service; with ``account``, only on behalf of that account (so another
    account's IoT cannot use the role: the confused-deputy guard AWS recommends)."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def function_policy(ctx: AppContext, names: Names) -> dict[str, Any]:
    """Read the config objects and the one parameter; write its own log group. Nothing else.

    The config grant covers ``notifier/config-*`` rather than the current key: a redeploy with a
    new config switches the function to a new key, and IAM changes take seconds to reach Lambda,
    so an exact-key grant would fail the first clicks after each config change."""
    partition = ctx.partition
    log_group = ctx.arn("logs", f"log-group:{FUNCTION_LOG_GROUP}")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadConfig",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:{partition}:s3:::{names.bucket}/{CONFIG_PREFIX}*",
            },
            {
                "Sid": "ReadTwilioSecret",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": ctx.arn("ssm", f"parameter{SECRET_PARAMETER}"),
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group}:*",
            },
        ],
    }


def rule_error_policy(ctx: AppContext) -> dict[str, Any]:
    log_group = ctx.arn("logs", f"log-group:{RULE_ERROR_LOG_GROUP}")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteRuleErrors",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group}:*",
            }
        ],
    }


def config_key_for(document: dict[str, Any]) -> str:
    digest = hashlib.sha256(_canonical(document)).hexdigest()[:16]
    return f"{CONFIG_PREFIX}{digest}.json"


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def deploy(
    ctx: AppContext,
    source: DeployInput,
    on_step: Callable[[StepResult], None] | None = None,
) -> DeployReport:
    """Bring every notifier resource to the wanted state, in dependency order."""
    ctx.before_changes()
    names = Names.for_context(ctx)
    report = DeployReport()
    config_key = config_key_for(source.lambda_document)
    report.config_key = config_key

    def step(resource: str, name: str, action: str) -> None:
        result = StepResult(resource, name, action)
        report.steps.append(result)
        if on_step:
            on_step(result)

    policy = function_policy(ctx, names)
    role_arn, action = ensure_role(ctx, names.function_role, "lambda.amazonaws.com", policy)
    step("IAM role", names.function_role, action)
    error_role_arn, action = ensure_role(
        ctx, names.rule_error_role, "iot.amazonaws.com", rule_error_policy(ctx), ctx.account_id
    )
    step("IAM role", names.rule_error_role, action)
    for group in (FUNCTION_LOG_GROUP, RULE_ERROR_LOG_GROUP):
        step("log group", group, ensure_log_group(ctx, group))
    step("S3 bucket", names.bucket, ensure_bucket(ctx, names.bucket))
    step("config object", config_key, ensure_config_object(ctx, names.bucket, config_key, source))
    version, action = ensure_secret(ctx, source.secret)
    step("SSM parameter", SECRET_PARAMETER, action)
    environment = {
        "IOTBUTTON_CONFIG_BUCKET": names.bucket,
        "IOTBUTTON_CONFIG_KEY": config_key,
        "IOTBUTTON_SECRET_PARAMETER": f"{SECRET_PARAMETER}:{version}",
        "IOTBUTTON_TWILIO_TIMEOUT": TWILIO_TIMEOUT_SECONDS,
    }
    if source.twilio_api_base:
        environment["TWILIO_API_BASE"] = source.twilio_api_base
    function_arn, code_sha, action = ensure_function(ctx, role_arn, environment, source)
    step("Lambda function", FUNCTION_NAME, action)
    report.function_arn, report.code_sha256 = function_arn, code_sha
    target = rules.RuleTarget(FUNCTION_NAME, function_arn, error_role_arn, RULE_ERROR_LOG_GROUP)
    if source.default_rule:
        action = rules.ensure_rule(ctx, rules.DEFAULT_RULE, rules.DEFAULT_SQL, target)
        step("topic rule", rules.DEFAULT_RULE, action)
    elif ctx.namespace.get(rules.KIND, rules.DEFAULT_RULE) is not None:
        rules.delete_rule(ctx, rules.DEFAULT_RULE)
        step("topic rule", rules.DEFAULT_RULE, "removed")
    removed = remove_stale_config_objects(ctx, names.bucket, keep=config_key)
    if removed:
        step("old config objects", ", ".join(removed), "updated")
    return report


def rule_target(ctx: AppContext) -> rules.RuleTarget:
    """The deployed notifier, for ``rules create``; refuses if ``notify deploy`` has not run."""
    function = ctx.namespace.get(FUNCTION_KIND, FUNCTION_NAME)
    role = ctx.namespace.get(ROLE_KIND, Names.for_context(ctx).rule_error_role)
    if function is None or role is None:
        raise IotButtonError(
            "notifier-not-deployed",
            "The notifier is not deployed in this account and region.",
            "Run `iotbutton notify deploy` first.",
        )
    return rules.RuleTarget(FUNCTION_NAME, function["arn"], role["arn"], RULE_ERROR_LOG_GROUP)


# --- IAM ---------------------------------------------------------------------------------------


def ensure_role(
    ctx: AppContext, name: str, service: str, policy: dict[str, Any], account: str | None = None
) -> tuple[str, str]:
    """A role trusted by ``service`` with one inline policy; returns (arn, action)."""
    iam = ctx.client("iam")
    action = "unchanged"
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except Exception as exc:
        if not is_not_found(exc):
            raise
        role = None
    if role is None:
        ctx.namespace.put(
            ROLE_KIND,
            name,
            {"arn": f"arn:{ctx.partition}:iam::{ctx.account_id}:role/{name}", "pending": True},
        )
        try:
            role = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=_trust(service, account),
                Description="Made by iotbutton",
                Tags=aws_tags(),
            )["Role"]
            action = "created"
        except Exception as exc:
            # Our own call retried after its answer was lost, or a deploy running elsewhere:
            # the role is there now, and is taken only if it carries our tag (below).
            if error_code(exc) != "EntityAlreadyExists":
                raise
            role = iam.get_role(RoleName=name)["Role"]
    if action != "created":
        _require_ours(ctx, ROLE_KIND, name, lambda: _iam_tags(iam, name), "IAM role")
    ctx.namespace.confirm(ROLE_KIND, name, {"arn": role["Arn"], "inline_policies": [name]})
    try:
        current = iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]
    except Exception as exc:
        if not is_not_found(exc):
            raise
        current = None
    if isinstance(current, str):
        current = json.loads(current)
    if current != policy:
        iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        action = "updated" if action == "unchanged" else action
    return str(role["Arn"]), action


def _iam_tags(iam: Any, name: str) -> list[dict[str, str]]:
    return list(iam.list_role_tags(RoleName=name).get("Tags", []))


def _require_ours(
    ctx: AppContext,
    kind: str,
    name: str,
    tags: Callable[[], list[dict[str, str]] | dict[str, str]],
    label: str,
) -> None:
    """An existing resource is ours if recorded, or tagged by us (a run that stopped early, or
    another machine). Tags are fetched only when the registry does not know the resource (a
    record still pending proves nothing: our create may never have happened)."""
    recorded = ctx.namespace.get(kind, name)
    if recorded is not None and not recorded.get("pending"):
        return
    if ownership.tagged(tags()):
        return
    ctx.namespace.forget_pending(kind, name)
    raise IotButtonError(
        "resource-not-ours",
        f"The {label} {name} exists but was not made by iotbutton.",
        "Delete or rename it; iotbutton never changes resources it did not make.",
    )


def delete_role(ctx: AppContext, name: str) -> None:
    """Delete the inline policies first, as IAM requires; NotFound is done. Only a role with
    iotbutton's tag is deleted."""
    iam = ctx.client("iam")
    try:
        if not ownership.tagged(_iam_tags(iam, name)):
            raise not_ours("IAM role", name, "it has no managed-by=iotbutton tag")
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        iam.delete_role(RoleName=name)
    except Exception as exc:
        if not is_not_found(exc):
            raise
    ctx.namespace.remove(ROLE_KIND, name)


# --- CloudWatch Logs ---------------------------------------------------------------------------


def ensure_log_group(ctx: AppContext, name: str) -> str:
    logs = ctx.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == name), None)
    action = "unchanged"
    if group is None:
        ctx.namespace.put(LOG_GROUP_KIND, name, {"pending": True})
        try:
            logs.create_log_group(logGroupName=name, tags={MANAGED_BY_KEY: MANAGED_BY_VALUE})
        except Exception as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
        action = "created"
        group = {}
    else:
        _require_ours(ctx, LOG_GROUP_KIND, name, lambda: _log_group_tags(logs, name), "log group")
    ctx.namespace.confirm(LOG_GROUP_KIND, name, {"retention_days": LOG_RETENTION_DAYS})
    if group.get("retentionInDays") != LOG_RETENTION_DAYS:
        logs.put_retention_policy(logGroupName=name, retentionInDays=LOG_RETENTION_DAYS)
        action = "updated" if action == "unchanged" else action
    return action


def _log_group_tags(logs: Any, name: str) -> dict[str, str]:
    return dict(logs.list_tags_log_group(logGroupName=name).get("tags", {}))


def delete_log_group(ctx: AppContext, name: str) -> None:
    logs = ctx.client("logs")
    try:
        if not ownership.tagged(_log_group_tags(logs, name)):
            raise not_ours("log group", name, "it has no managed-by=iotbutton tag")
        logs.delete_log_group(logGroupName=name)
    except Exception as exc:
        if not is_not_found(exc):
            raise
    ctx.namespace.remove(LOG_GROUP_KIND, name)


# --- S3 ----------------------------------------------------------------------------------------

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def ensure_bucket(ctx: AppContext, bucket: str) -> str:
    """A private bucket: public access blocked, encrypted at rest, owned by this account."""
    s3 = ctx.client("s3")
    action = "unchanged"
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=ctx.account_id)
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            if error_code(exc) == "403":
                raise IotButtonError(
                    "bucket-not-ours",
                    f"The S3 bucket {bucket} belongs to another account.",
                    "S3 bucket names are global; this one is taken.",
                ) from exc
            raise
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if ctx.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
        # Recorded (as untagged) before it is asked for: CreateBucket takes no tags, so a run
        # killed between AWS's answer and the registry write would otherwise leave a bucket
        # neither recorded nor tagged, which the next deploy refuses and `clean` never removes.
        ctx.namespace.put(
            BUCKET_KIND, bucket, {"arn": f"arn:{ctx.partition}:s3:::{bucket}", "untagged": True}
        )
        try:
            s3.create_bucket(**kwargs)
        except Exception as exc:
            if error_code(exc) != "BucketAlreadyOwnedByYou":  # our own call, retried
                raise
        action = "created"
    else:
        _require_ours(
            ctx, BUCKET_KIND, bucket, lambda: _bucket_tags(s3, bucket, ctx.account_id), "S3 bucket"
        )
    ctx.namespace.put(BUCKET_KIND, bucket, {"arn": f"arn:{ctx.partition}:s3:::{bucket}"})
    if (ctx.namespace.get(BUCKET_KIND, bucket) or {}).get("untagged"):
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": aws_tags()})
        with ctx.namespace.transaction() as resources:
            resources.get(BUCKET_KIND, {}).get(bucket, {}).pop("untagged", None)
    if _public_access_block(s3, bucket) != PUBLIC_ACCESS_BLOCK:
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK
        )
        action = "updated" if action == "unchanged" else action
    if not _encrypted(s3, bucket):
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=ENCRYPTION)
        action = "updated" if action == "unchanged" else action
    return action


def _bucket_tags(s3: Any, bucket: str, account: str) -> list[dict[str, str]]:
    try:
        return list(s3.get_bucket_tagging(Bucket=bucket, ExpectedBucketOwner=account)["TagSet"])
    except Exception as exc:
        if error_code(exc) == "NoSuchTagSet":
            return []
        raise


def _public_access_block(s3: Any, bucket: str) -> dict[str, bool]:
    try:
        response = s3.get_public_access_block(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) == "NoSuchPublicAccessBlockConfiguration":
            return {}
        raise
    return dict(response["PublicAccessBlockConfiguration"])


def _encrypted(s3: Any, bucket: str) -> bool:
    try:
        s3.get_bucket_encryption(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return False
        raise
    return True


def ensure_config_object(ctx: AppContext, bucket: str, key: str, source: DeployInput) -> str:
    """The config is named by its hash: if the key exists, its content is already right."""
    s3 = ctx.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
        action = "unchanged"
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            raise
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=_canonical(source.lambda_document),
            ContentType="application/json",
            ServerSideEncryption="AES256",
        )
        action = "created"
    _record_object(ctx, bucket, key)
    return action


def _record_object(ctx: AppContext, bucket: str, key: str) -> None:
    with ctx.namespace.transaction() as resources:
        record = resources.setdefault(BUCKET_KIND, {}).setdefault(bucket, {})
        objects = set(record.get("objects", []))
        objects.add(key)
        record["objects"] = sorted(objects)


def remove_stale_config_objects(ctx: AppContext, bucket: str, keep: str) -> list[str]:
    """Delete config objects the function no longer reads (after it switched to ``keep``)."""
    record = ctx.namespace.get(BUCKET_KIND, bucket) or {}
    stale = [key for key in record.get("objects", []) if key != keep]
    s3 = ctx.client("s3")
    for key in stale:
        s3.delete_object(Bucket=bucket, Key=key)
    if stale:
        ctx.namespace.update(BUCKET_KIND, bucket, objects=[keep])
    return stale


def delete_bucket(ctx: AppContext, bucket: str) -> None:
    """Empty the bucket (every version, in case versioning was turned on), then delete it.

    Only iotbutton's bucket: tagged, or (CreateBucket takes no tags) recorded as untagged by a
    deploy that stopped between creating and tagging it, and named as iotbutton names it."""
    s3 = ctx.client("s3")
    record = ctx.namespace.get(BUCKET_KIND, bucket) or {}
    try:
        tags = _bucket_tags(s3, bucket, ctx.account_id)
        named_ours = bucket == Names.for_context(ctx).bucket
        if not (ownership.tagged(tags) or (record.get("untagged") and named_ours and not tags)):
            raise not_ours("S3 bucket", bucket, "it has no managed-by=iotbutton tag")
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            doomed = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if doomed:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except Exception as exc:
        if not is_not_found(exc):
            raise
    ctx.namespace.remove(BUCKET_KIND, bucket)


# --- SSM ---------------------------------------------------------------------------------------


def ensure_secret(ctx: AppContext, secret: str) -> tuple[int, str]:
    """Store the Twilio secret as a SecureString; returns (version, action)."""
    ssm = ctx.client("ssm")
    try:
        current = ssm.get_parameter(Name=SECRET_PARAMETER, WithDecryption=True)["Parameter"]
    except Exception as exc:
        if not is_not_found(exc):
            raise
        current = None
    if current is None:
        ctx.namespace.put(PARAMETER_KIND, SECRET_PARAMETER, {"pending": True})
        try:
            version = ssm.put_parameter(
                Name=SECRET_PARAMETER,
                Value=secret,
                Type="SecureString",
                Description="Twilio secret for the iotbutton notifier",
                Tags=aws_tags(),
            )["Version"]
        except Exception as exc:
            # Our own call retried after its answer was lost (or a deploy running elsewhere):
            # handled as an existing parameter, taken only if it carries our tag.
            if error_code(exc) != "ParameterAlreadyExists":
                raise
            current = ssm.get_parameter(Name=SECRET_PARAMETER, WithDecryption=True)["Parameter"]
        else:
            ctx.namespace.confirm(PARAMETER_KIND, SECRET_PARAMETER, {"version": version})
            return int(version), "created"
    _require_ours(
        ctx,
        PARAMETER_KIND,
        SECRET_PARAMETER,
        lambda: _parameter_tags(ssm, SECRET_PARAMETER),
        "SSM parameter",
    )
    if current["Type"] == "SecureString" and current["Value"] == secret:
        ctx.namespace.confirm(PARAMETER_KIND, SECRET_PARAMETER, {"version": current["Version"]})
        return int(current["Version"]), "unchanged"
    version = ssm.put_parameter(
        Name=SECRET_PARAMETER, Value=secret, Type="SecureString", Overwrite=True
    )["Version"]
    ctx.namespace.confirm(PARAMETER_KIND, SECRET_PARAMETER, {"version": version})
    return int(version), "updated"


def _parameter_tags(ssm: Any, name: str) -> list[dict[str, str]]:
    return list(ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"])


def delete_parameter(ctx: AppContext, name: str) -> None:
    ssm = ctx.client("ssm")
    try:
        if not ownership.tagged(_parameter_tags(ssm, name)):
            raise not_ours("SSM parameter", name, "it has no managed-by=iotbutton tag")
        ssm.delete_parameter(Name=name)
    except Exception as exc:
        if not (is_not_found(exc) or error_code(exc) == "InvalidResourceId"):
            raise
    ctx.namespace.remove(PARAMETER_KIND, name)


# --- Lambda ------------------------------------------------------------------------------------


def _function_config(role_arn: str, environment: dict[str, str], handler: str) -> dict[str, Any]:
    return {
        "Role": role_arn,
        "Handler": handler,
        "Runtime": RUNTIME,
        "MemorySize": MEMORY_MB,
        "Timeout": TIMEOUT_SECONDS,
        "Environment": {"Variables": environment},
    }


def ensure_function(
    ctx: AppContext, role_arn: str, environment: dict[str, str], source: DeployInput
) -> tuple[str, str, str]:
    """Create the function, or update only its code (if the hash differs) and its settings."""
    lam = ctx.client("lambda")
    wanted = _function_config(role_arn, environment, source.handler)
    try:
        current = lam.get_function(FunctionName=FUNCTION_NAME)["Configuration"]
    except Exception as exc:
        if not is_not_found(exc):
            raise
        current = None
    if current is None:
        ctx.namespace.put(
            FUNCTION_KIND,
            FUNCTION_NAME,
            {"arn": ctx.arn("lambda", f"function:{FUNCTION_NAME}"), "pending": True},
        )
        try:
            created = retry_while(
                lambda: lam.create_function(
                    FunctionName=FUNCTION_NAME,
                    Code={"ZipFile": source.bundle_data},
                    Architectures=[ARCHITECTURE],
                    Description="Turns AWS IoT button clicks into Twilio SMS and calls (iotbutton)",
                    Tags={MANAGED_BY_KEY: MANAGED_BY_VALUE},
                    **wanted,
                ),
                _role_not_ready,
            )
        except Exception as exc:
            # Our own call retried after its answer was lost (or a deploy running elsewhere):
            # handled as an existing function, taken only if it carries our tag.
            if not _function_exists(exc):
                raise
            current = lam.get_function(FunctionName=FUNCTION_NAME)["Configuration"]
        else:
            ctx.namespace.confirm(FUNCTION_KIND, FUNCTION_NAME, {"arn": created["FunctionArn"]})
            lam.get_waiter("function_active_v2").wait(FunctionName=FUNCTION_NAME)
            return str(created["FunctionArn"]), str(created["CodeSha256"]), "created"
    _require_ours(
        ctx,
        FUNCTION_KIND,
        FUNCTION_NAME,
        lambda: [
            {"Key": key, "Value": value}
            for key, value in lam.list_tags(Resource=current["FunctionArn"]).get("Tags", {}).items()
        ],
        "Lambda function",
    )
    ctx.namespace.confirm(FUNCTION_KIND, FUNCTION_NAME, {"arn": current["FunctionArn"]})
    action = "unchanged"
    code_sha = current["CodeSha256"]
    if code_sha != source.code_sha256:
        code_sha = lam.update_function_code(
            FunctionName=FUNCTION_NAME, ZipFile=source.bundle_data, Architectures=[ARCHITECTURE]
        )["CodeSha256"]
        lam.get_waiter("function_updated_v2").wait(FunctionName=FUNCTION_NAME)
        action = "updated"
    if _config_differs(current, wanted):
        retry_while(
            lambda: lam.update_function_configuration(FunctionName=FUNCTION_NAME, **wanted),
            _role_not_ready,
        )
        lam.get_waiter("function_updated_v2").wait(FunctionName=FUNCTION_NAME)
        action = "updated"
    return str(current["FunctionArn"]), str(code_sha), action


def _config_differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    for key, value in wanted.items():
        have = current.get(key)
        if key == "Environment":
            have = {"Variables": (have or {}).get("Variables", {})}
        if have != value:
            return True
    return False


def _function_exists(exc: BaseException) -> bool:
    return error_code(exc) == "ResourceConflictException" and "exist" in error_message(exc)


def _role_not_ready(exc: BaseException) -> bool:
    """A new IAM role takes seconds before Lambda can assume it."""
    return error_code(exc) == "InvalidParameterValueException" and (
        "cannot be assumed" in error_message(exc) or "role" in error_message(exc).lower()
    )


def delete_function(ctx: AppContext, name: str) -> None:
    lam = ctx.client("lambda")
    try:
        arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        if not ownership.tagged(lam.list_tags(Resource=arn).get("Tags", {})):
            raise not_ours("Lambda function", name, "it has no managed-by=iotbutton tag")
        lam.delete_function(FunctionName=name)
    except Exception as exc:
        if not is_not_found(exc):
            raise
    ctx.namespace.remove(FUNCTION_KIND, name)
