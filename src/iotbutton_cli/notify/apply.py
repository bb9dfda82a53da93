"""Make a planned change to one notifier resource, and remove the notifier's resources.

Each ``apply_*`` takes the :class:`~iotbutton_cli.notify.plan.Step` the planner made and returns
the step as it was applied. A create stays race-tolerant: when AWS says the resource already
exists (our own call retried after its answer was lost, or a deploy running elsewhere), it is
read again, adopted only if it is iotbutton's, and planned again against what is there. Every
resource is recorded in the registry the moment AWS confirms it.
"""

from __future__ import annotations

import json
from typing import Any

from iotbutton_cli.aws.calls import absent_is_fine
from iotbutton_cli.aws.errors import error_code, error_message
from iotbutton_cli.aws.retry import retry_while
from iotbutton_cli.aws.tags import MANAGED_BY_KEY, MANAGED_BY_VALUE, aws_tags
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError, not_ours
from iotbutton_cli.notify import current as aws_state
from iotbutton_cli.notify import plan
from iotbutton_cli.notify.plan import Step
from iotbutton_cli.notify.resources import (
    ARCHITECTURE,
    BUCKET_KIND,
    ENCRYPTION,
    FAILURES_FUNCTION_NAME,
    FUNCTION_KIND,
    FUNCTION_NAME,
    FUNCTION_URL_AUTH_TYPE,
    LOG_GROUP_KIND,
    PARAMETER_KIND,
    PUBLIC_ACCESS_BLOCK,
    ROLE_KIND,
    SECRET_PARAMETER,
    TABLE_ATTRIBUTES,
    TABLE_BILLING_MODE,
    TABLE_KEY_SCHEMA,
    TABLE_KIND,
    TABLE_TTL_ATTRIBUTE,
    URL_INVOKE_PERMISSION_SID,
    URL_PERMISSION_SID,
    DeployInput,
    Names,
    canonical,
    role_arn,
    trust_policy,
)
from iotbutton_cli.provisioning import ownership

# --- IAM ---------------------------------------------------------------------------------------


def apply_role(
    ctx: AppContext,
    step: Step,
    found: dict[str, Any] | None,
    service: str,
    policy: dict[str, Any],
    account: str | None = None,
) -> tuple[str, Step]:
    """A role trusted by ``service`` with one inline policy; returns (arn, step applied)."""
    iam = ctx.client("iam")
    name = step.name
    arn = found["Arn"] if found else role_arn(ctx, name)
    if step.action == "create":
        ctx.namespace.put(ROLE_KIND, name, {"arn": arn, "pending": True})
        try:
            arn = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=trust_policy(service, account),
                Description="Made by iotbutton",
                Tags=aws_tags(),
            )["Role"]["Arn"]
        except Exception as exc:
            if error_code(exc) != "EntityAlreadyExists":
                raise
            found = aws_state.role(iam, name)
            if found is None:  # gone again: let the next deploy make it
                raise
            aws_state.require_ours(
                ctx, ROLE_KIND, name, lambda: aws_state.iam_tags(iam, name), "IAM role"
            )
            arn, step = found["Arn"], plan.role_step(name, found, policy)
    ctx.namespace.confirm(ROLE_KIND, name, {"arn": arn, "inline_policies": [name]})
    if step.action == "create" or "inline policy" in step.changes:
        iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    return str(arn), step


def delete_role(ctx: AppContext, name: str) -> None:
    """Delete the inline policies first, as IAM requires; NotFound is done. Only a role with
    iotbutton's tag is deleted."""
    iam = ctx.client("iam")
    with absent_is_fine():
        if not ownership.tagged(aws_state.iam_tags(iam, name)):
            raise not_ours("IAM role", name, "it has no managed-by=iotbutton tag")
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        iam.delete_role(RoleName=name)
    ctx.namespace.remove(ROLE_KIND, name)


# --- CloudWatch Logs ---------------------------------------------------------------------------


def apply_log_group(ctx: AppContext, step: Step, retention_days: int) -> Step:
    logs = ctx.client("logs")
    name = step.name
    if step.action == "create":
        ctx.namespace.put(LOG_GROUP_KIND, name, {"pending": True})
        try:
            logs.create_log_group(logGroupName=name, tags={MANAGED_BY_KEY: MANAGED_BY_VALUE})
        except Exception as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
    ctx.namespace.confirm(LOG_GROUP_KIND, name, {"retention_days": retention_days})
    if step.action == "create" or "retention" in step.changes:
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
    return step


def delete_log_group(ctx: AppContext, name: str) -> None:
    logs = ctx.client("logs")
    with absent_is_fine():
        if not ownership.tagged(aws_state.log_group_tags(logs, name)):
            raise not_ours("log group", name, "it has no managed-by=iotbutton tag")
        logs.delete_log_group(logGroupName=name)
    ctx.namespace.remove(LOG_GROUP_KIND, name)


# --- S3 ----------------------------------------------------------------------------------------


def apply_bucket(ctx: AppContext, step: Step) -> Step:
    """A private bucket: public access blocked, encrypted at rest, owned by this account."""
    s3 = ctx.client("s3")
    bucket = step.name
    record = {"arn": f"arn:{ctx.partition}:s3:::{bucket}"}
    settings = step
    if step.action == "create":
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if ctx.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
        # Recorded (as untagged) before it is asked for: CreateBucket takes no tags, so a run
        # killed between AWS's answer and the registry write would otherwise leave a bucket
        # neither recorded nor tagged, which the next deploy refuses and `clean` never removes.
        ctx.namespace.put(BUCKET_KIND, bucket, {**record, "untagged": True})
        try:
            s3.create_bucket(**kwargs)
        except Exception as exc:
            if error_code(exc) != "BucketAlreadyOwnedByYou":  # our own call, retried
                raise
        # A new bucket comes with settings of its own (S3 encrypts every new bucket): plan
        # them as for an existing one.
        settings = plan.bucket_step(bucket, aws_state.bucket_settings(ctx, bucket))
    ctx.namespace.put(BUCKET_KIND, bucket, record)
    if "tags" in settings.changes:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": aws_tags()})
        with ctx.namespace.transaction() as resources:
            resources.get(BUCKET_KIND, {}).get(bucket, {}).pop("untagged", None)
    if "public access block" in settings.changes:
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK
        )
    if "encryption" in settings.changes:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=ENCRYPTION)
    return step


def apply_config_object(ctx: AppContext, step: Step, bucket: str, source: DeployInput) -> Step:
    if step.action == "create":
        ctx.client("s3").put_object(
            Bucket=bucket,
            Key=step.name,
            Body=canonical(source.lambda_document),
            ContentType="application/json",
            ServerSideEncryption="AES256",
        )
    with ctx.namespace.transaction() as resources:
        record = resources.setdefault(BUCKET_KIND, {}).setdefault(bucket, {})
        objects = set(record.get("objects", []))
        objects.add(step.name)
        record["objects"] = sorted(objects)
    return step


def apply_stale_objects(ctx: AppContext, bucket: str, keep: str) -> Step | None:
    """Delete config objects the function no longer reads (after it switched to ``keep``)."""
    record = ctx.namespace.get(BUCKET_KIND, bucket) or {}
    step = plan.stale_objects_step(record.get("objects", []), keep)
    if step is None:
        return None
    s3 = ctx.client("s3")
    for key in record["objects"]:
        if key != keep:
            s3.delete_object(Bucket=bucket, Key=key)
    ctx.namespace.update(BUCKET_KIND, bucket, objects=[keep])
    return step


def delete_bucket(ctx: AppContext, bucket: str) -> None:
    """Empty the bucket (every version, in case versioning was turned on), then delete it.

    Only iotbutton's bucket: tagged, or (CreateBucket takes no tags) recorded as untagged by a
    deploy that stopped between creating and tagging it, and named as iotbutton names it."""
    s3 = ctx.client("s3")
    record = ctx.namespace.get(BUCKET_KIND, bucket) or {}
    with absent_is_fine():
        tags = aws_state.bucket_tags(s3, bucket, ctx.account_id)
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
    ctx.namespace.remove(BUCKET_KIND, bucket)


# --- SSM ---------------------------------------------------------------------------------------


def apply_secret(
    ctx: AppContext, step: Step, found: dict[str, Any] | None, secret: str
) -> tuple[int, Step]:
    """Store the Twilio secret as a SecureString; returns (version, step applied)."""
    ssm = ctx.client("ssm")
    if step.action == "create":
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
            if error_code(exc) != "ParameterAlreadyExists":
                raise
            found = aws_state.parameter(ssm)
            if found is None:  # gone again: let the next deploy make it
                raise
            aws_state.require_ours(
                ctx,
                PARAMETER_KIND,
                SECRET_PARAMETER,
                lambda: aws_state.parameter_tags(ssm, SECRET_PARAMETER),
                "SSM parameter",
            )
            step = plan.secret_step(SECRET_PARAMETER, found, secret)
        else:
            ctx.namespace.confirm(PARAMETER_KIND, SECRET_PARAMETER, {"version": version})
            return int(version), step
    assert found is not None  # only a create has nothing to start from
    version = found["Version"]
    if step.action == "update":
        version = ssm.put_parameter(
            Name=SECRET_PARAMETER, Value=secret, Type="SecureString", Overwrite=True
        )["Version"]
    ctx.namespace.confirm(PARAMETER_KIND, SECRET_PARAMETER, {"version": version})
    return int(version), step


def delete_parameter(ctx: AppContext, name: str) -> None:
    ssm = ctx.client("ssm")
    with absent_is_fine():
        if not ownership.tagged(aws_state.parameter_tags(ssm, name)):
            raise not_ours("SSM parameter", name, "it has no managed-by=iotbutton tag")
        ssm.delete_parameter(Name=name)
    ctx.namespace.remove(PARAMETER_KIND, name)


# --- DynamoDB ----------------------------------------------------------------------------------


def apply_table(ctx: AppContext, step: Step) -> Step:
    """The alarm ledger: on demand (a click costs fractions of a cent, idle costs nothing),
    items expiring by TTL, tagged at creation."""
    dynamodb = ctx.client("dynamodb")
    name = step.name
    settings = step
    if step.action == "create":
        ctx.namespace.put(TABLE_KIND, name, {"pending": True})
        try:
            dynamodb.create_table(
                TableName=name,
                KeySchema=TABLE_KEY_SCHEMA,
                AttributeDefinitions=TABLE_ATTRIBUTES,
                BillingMode=TABLE_BILLING_MODE,
                Tags=aws_tags(),
            )
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":  # our own call, retried
                raise
        dynamodb.get_waiter("table_exists").wait(TableName=name)
        settings = plan.table_step(name, aws_state.table_state(dynamodb, name))
    found = aws_state.table_state(dynamodb, name) or {}
    ctx.namespace.confirm(TABLE_KIND, name, {"arn": found.get("TableArn", "")})
    if "time to live" in settings.changes:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TABLE_TTL_ATTRIBUTE},
        )
    return step


def delete_table(ctx: AppContext, name: str) -> None:
    """Only a table with iotbutton's tag; its alarm history goes with it."""
    dynamodb = ctx.client("dynamodb")
    with absent_is_fine():
        arn = dynamodb.describe_table(TableName=name)["Table"]["TableArn"]
        if not ownership.tagged(aws_state.table_tags(dynamodb, arn)):
            raise not_ours("DynamoDB table", name, "it has no managed-by=iotbutton tag")
        dynamodb.delete_table(TableName=name)
    ctx.namespace.remove(TABLE_KIND, name)


# --- Lambda ------------------------------------------------------------------------------------

FUNCTION_DESCRIPTIONS = {
    FUNCTION_NAME: "Turns AWS IoT button clicks into Twilio SMS and calls (iotbutton)",
    FAILURES_FUNCTION_NAME: "Tells the owner of a click the iotbutton notifier gave up on",
}


def apply_function(
    ctx: AppContext,
    step: Step,
    found: dict[str, Any] | None,
    wanted: dict[str, Any],
    source: DeployInput,
    name: str = FUNCTION_NAME,
) -> tuple[str, str, Step]:
    """Create the function, or update only its code (if the hash differs) and its settings;
    returns (arn, code SHA-256, step applied). ``wanted`` is the planner's
    ``{"CodeSha256", "config"}``; ``name``: the notifier or its failures function (one bundle,
    two handlers)."""
    lam = ctx.client("lambda")
    config = wanted["config"]
    if step.action == "create":
        ctx.namespace.put(
            FUNCTION_KIND,
            name,
            {"arn": ctx.arn("lambda", f"function:{name}"), "pending": True},
        )
        try:
            created = retry_while(
                lambda: lam.create_function(
                    FunctionName=name,
                    Code={"ZipFile": source.bundle_data},
                    Architectures=[ARCHITECTURE],
                    Description=FUNCTION_DESCRIPTIONS.get(name, "Made by iotbutton"),
                    Tags={MANAGED_BY_KEY: MANAGED_BY_VALUE},
                    **config,
                ),
                _role_not_ready,
            )
        except Exception as exc:
            if not _function_exists(exc):
                raise
            found = aws_state.function_named(lam, name)
            if found is None:  # gone again: let the next deploy make it
                raise
            arn = found["FunctionArn"]
            aws_state.require_ours(
                ctx,
                FUNCTION_KIND,
                name,
                lambda: aws_state.function_tags(lam, arn),
                "Lambda function",
            )
            step = plan.function_step(name, found, wanted)
        else:
            ctx.namespace.confirm(FUNCTION_KIND, name, {"arn": created["FunctionArn"]})
            lam.get_waiter("function_active_v2").wait(FunctionName=name)
            return str(created["FunctionArn"]), str(created["CodeSha256"]), step
    assert found is not None  # only a create has nothing to start from
    ctx.namespace.confirm(FUNCTION_KIND, name, {"arn": found["FunctionArn"]})
    code_sha = found["CodeSha256"]
    if "code" in step.changes:
        code_sha = lam.update_function_code(
            FunctionName=name, ZipFile=source.bundle_data, Architectures=[ARCHITECTURE]
        )["CodeSha256"]
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    if any(change != "code" for change in step.changes):
        retry_while(
            lambda: lam.update_function_configuration(FunctionName=name, **config),
            _role_not_ready,
        )
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    return str(found["FunctionArn"]), str(code_sha), step


def apply_function_url(
    ctx: AppContext, step: Step, granted: list[str] | tuple[str, ...] = ()
) -> tuple[str, Step]:
    """The function's public URL for Twilio's receipts, and the grants that make it public
    (those not ``granted`` already: a statement id Lambda has is not added twice); returns
    (URL, step applied)."""
    lam = ctx.client("lambda")
    if step.action == "create":
        try:
            lam.create_function_url_config(
                FunctionName=FUNCTION_NAME, AuthType=FUNCTION_URL_AUTH_TYPE
            )
        except Exception as exc:
            if error_code(exc) != "ResourceConflictException":  # our own call, retried
                raise
    elif "auth type" in step.changes:
        lam.update_function_url_config(FunctionName=FUNCTION_NAME, AuthType=FUNCTION_URL_AUTH_TYPE)
    if step.action == "create" or "public permission" in step.changes:
        _require_url_grants(lam)
        grants = (
            (
                URL_PERMISSION_SID,
                {"Action": "lambda:InvokeFunctionUrl", "FunctionUrlAuthType": "NONE"},
            ),
            (
                URL_INVOKE_PERMISSION_SID,
                {"Action": "lambda:InvokeFunction", "InvokedViaFunctionUrl": True},
            ),
        )
        for sid, grant in grants:
            if sid in granted:
                continue
            try:
                lam.add_permission(
                    FunctionName=FUNCTION_NAME, StatementId=sid, Principal="*", **grant
                )
            except Exception as exc:
                if error_code(exc) != "ResourceConflictException":  # already granted
                    raise
    url = str(lam.get_function_url_config(FunctionName=FUNCTION_NAME)["FunctionUrl"])
    ctx.namespace.update(FUNCTION_KIND, FUNCTION_NAME, url=url)
    return url, step


def _require_url_grants(lam: Any) -> None:
    """A public function URL needs AddPermission's InvokedViaFunctionUrl (October 2025), which
    older botocore does not know: say so in one line instead of a ParamValidationError."""
    shape = lam.meta.service_model.operation_model("AddPermission").input_shape
    if "InvokedViaFunctionUrl" not in shape.members:
        import botocore

        raise IotButtonError(
            "boto3-too-old",
            f"This botocore ({botocore.__version__}) cannot grant a function URL's public "
            "invoke permission (InvokedViaFunctionUrl), which AWS requires since October 2025.",
            "Upgrade it: `pip install -U boto3` (or `pipx upgrade iotbutton-cli`).",
        )


def _function_exists(exc: BaseException) -> bool:
    return error_code(exc) == "ResourceConflictException" and "exist" in error_message(exc)


def _role_not_ready(exc: BaseException) -> bool:
    """A new IAM role takes seconds before Lambda can assume it."""
    return error_code(exc) == "InvalidParameterValueException" and (
        "cannot be assumed" in error_message(exc) or "role" in error_message(exc).lower()
    )


def delete_function(ctx: AppContext, name: str) -> None:
    lam = ctx.client("lambda")
    with absent_is_fine():
        arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        if not ownership.tagged(aws_state.function_tags(lam, arn)):
            raise not_ours("Lambda function", name, "it has no managed-by=iotbutton tag")
        lam.delete_function(FunctionName=name)
    ctx.namespace.remove(FUNCTION_KIND, name)
