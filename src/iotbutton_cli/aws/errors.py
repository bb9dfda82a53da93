"""Turn botocore's exceptions into one-line :class:`IotButtonError` messages.

botocore is only imported when it is already loaded, so the CLI's error path never pays for it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from iotbutton_cli.errors import IotButtonError, credentials_error

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestThrottled",
        "RequestThrottledException",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"}
)
BAD_CREDENTIALS_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidAccessKeyId",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "NoSuchEntity",
        "NoSuchBucket",
        "NoSuchKey",
        "ParameterNotFound",
        "NotFoundException",
        "NotFound",  # SNS: a topic that does not exist
        "ResourceNotFound",  # SNS's tag operations, as moto answers them
    }
)
log = logging.getLogger("iotbutton.aws")
IAM_POLICY_URL = "https://github.com/iotbutton/iotbutton-cli/blob/main/docs/iam-policy.md"

# botocore's signing names that differ from the IAM action prefix.
_IAM_PREFIX = {"iotdata": "iot", "execute-api": "execute-api", "monitoring": "cloudwatch"}


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")).strip()
    return str(exc)


def iam_action(model: Any) -> str:
    """``iot:CreateThing`` for botocore's CreateThing operation model."""
    metadata = model.service_model.metadata
    prefix = metadata.get("signingName") or metadata.get("endpointPrefix", "")
    return f"{_IAM_PREFIX.get(prefix, prefix)}:{model.name}"


def after_call(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
    """botocore ``after-call`` hook: log the call (never its payload) and name the IAM action
    on errors, so messages can say which permission is missing."""
    status = getattr(http_response, "status_code", 0)
    action = iam_action(model)
    retries = parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    log.debug("AWS %s -> HTTP %s (retries: %s)", action, status, retries)
    if status >= 300 and "Error" in parsed:
        parsed["Error"]["IamAction"] = action


def translate(exc: BaseException) -> IotButtonError | None:
    """The user-facing error for a botocore exception, or None if ``exc`` is not one."""
    parsers = sys.modules.get("botocore.parsers")
    if parsers is not None and isinstance(exc, parsers.ResponseParserError):
        # Something answered that is not AWS: a web server at --endpoint-url, a captive portal.
        detail = str(exc).split("\n", 1)[0].split(", invalid", 1)[0]
        return IotButtonError(
            "not-aws",
            f"The endpoint answered with something that is not an AWS response: {detail}.",
            "Check --endpoint-url / AWS_ENDPOINT_URL, and any proxy or captive portal "
            "(HTTPS_PROXY) between you and AWS.",
        )
    exceptions = sys.modules.get("botocore.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.BotoCoreError | exceptions.ClientError):
        return None
    if isinstance(exc, exceptions.ClientError):
        return _translate_client_error(exc)
    return _translate_botocore_error(exc, exceptions)


def _translate_client_error(exc: Any) -> IotButtonError:
    code = error_code(exc)
    message = error_message(exc)
    action = exc.response.get("Error", {}).get("IamAction") or exc.operation_name
    if code in ACCESS_DENIED_CODES:
        return credentials_error(
            "access-denied",
            f"AWS denied {action}: {message}" if message else f"AWS denied {action}.",
            f"Grant {action} to these credentials; the whole policy is at {IAM_POLICY_URL}",
        )
    if code in BAD_CREDENTIALS_CODES:
        return credentials_error(
            "bad-credentials",
            f"AWS rejected the credentials ({code}): {message}",
            "Check the access key, refresh expired session credentials "
            "(e.g. `aws sso login`), or pick another --profile.",
        )
    if code in THROTTLING_CODES:
        return IotButtonError(
            "throttled",
            f"AWS kept throttling {action} after retries ({code}).",
            "Wait a minute and run the command again; it resumes where it stopped.",
        )
    return IotButtonError(
        "aws-error", f"{action} failed: {code}: {message}", "See the AWS documentation for " + code
    )


def _translate_botocore_error(exc: BaseException, exceptions: Any) -> IotButtonError:
    if isinstance(exc, exceptions.ProfileNotFound):
        return credentials_error("unknown-profile", str(exc), _profiles_hint())
    if isinstance(exc, exceptions.NoCredentialsError | exceptions.PartialCredentialsError):
        return credentials_error(
            "no-credentials",
            "No AWS credentials found."
            if isinstance(exc, exceptions.NoCredentialsError)
            else f"Incomplete AWS credentials: {exc}",
            "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE for a profile in "
            "~/.aws/credentials (`aws configure` writes one, if you have the AWS CLI), "
            "or try the offline sandbox with --sandbox.",
        )
    if isinstance(exc, exceptions.NoRegionError):
        return credentials_error(
            "no-region",
            "No AWS region is configured.",
            "Pass --region (e.g. --region us-east-1) or set AWS_REGION.",
        )
    if isinstance(exc, exceptions.TokenRetrievalError | exceptions.SSOError):
        return credentials_error(
            "sso-expired", f"Could not get SSO credentials: {exc}", "Run `aws sso login`."
        )
    if isinstance(exc, exceptions.EndpointConnectionError | exceptions.ConnectionError):
        return IotButtonError(
            "unreachable",
            f"Could not reach AWS: {exc}",
            "Check your network, the region, or --endpoint-url / AWS_ENDPOINT_URL.",
        )
    return IotButtonError("aws-error", f"AWS client error: {exc}", "Run again with -v for detail.")


def _profiles_hint() -> str:
    """Which profiles exist, read as botocore reads them (no AWS CLI needed to list them)."""
    import os

    import botocore.session

    files = [
        os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config",
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials",
    ]
    try:
        names = sorted(set(botocore.session.Session().available_profiles) - {"default"})
    except Exception:  # a broken config file: the hint still names the files
        names = []
    known = (
        f"Profiles found there: {', '.join(names)}."
        if names
        else "No named profiles are defined there."
    )
    return (
        f"Profiles live in {files[0]} ([profile NAME]) and {files[1]} ([NAME]). {known} "
        "Pass one with --profile, or unset AWS_PROFILE and drop --profile."
    )
