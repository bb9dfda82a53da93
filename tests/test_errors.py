"""Every way a user or AWS can say no: one line, a hint, the documented exit status."""

from __future__ import annotations

import json

import pytest


def assert_one_line_error(result, first_line_part: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and first_line_part in lines[0], result.stderr
    assert len(lines) == 2 and lines[1].startswith("Hint: "), result.stderr
    assert "Traceback" not in result.stderr


def test_missing_credentials(cli, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = cli("things", "list", code=3)
    assert_one_line_error(result, "No AWS credentials found.")
    assert "--sandbox" in result.stderr


def test_unknown_profile(cli):
    result = cli("--profile", "nope", "things", "list", code=3)
    assert_one_line_error(result, "The config profile (nope) could not be found")
    assert "aws configure" not in result.stderr  # the AWS CLI may not be installed


def test_unknown_profile_hint_lists_the_profiles_there_are(cli, tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-east-1\n[profile work]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    result = cli("--profile", "wrok", "things", "list", code=3)
    assert_one_line_error(result, "(wrok) could not be found")
    hint = result.stderr.strip().splitlines()[1]
    assert str(config) in hint and "Profiles found there: work." in hint


def test_profile_from_environment(cli, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "ghost")
    assert_one_line_error(cli("things", "list", code=3), "(ghost) could not be found")


def test_missing_region(cli, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = cli("things", "list", code=3)
    assert_one_line_error(result, "No AWS region is configured.")


@pytest.mark.parametrize(
    ("region", "suggestion"), [("us-east-9", "us-east-2"), ("eu-wset-1", "eu-west-1")]
)
def test_unknown_region(cli, region, suggestion):
    result = cli("--region", region, "things", "list", code=3)
    assert_one_line_error(result, f"Unknown AWS region '{region}'.")
    assert f"Did you mean {suggestion}?" in result.stderr


def test_region_without_iot(cli, aws):
    # AWS IoT Core is not offered in every region (botocore's endpoint data says which).
    result = cli("--region", "af-south-1", "things", "list", code=3)
    assert_one_line_error(result, "AWS IoT Core is not available in af-south-1.")


def test_region_env_precedence(cli, aws, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-9")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    cli("things", "list")  # AWS_REGION wins, as in the AWS CLI
    assert_one_line_error(cli("--region", "xx-east-1", "things", "list", code=3), "xx-east-1")


def test_unreachable_endpoint(cli, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = cli("--endpoint-url", "http://127.0.0.1:9", "things", "list", code=1)
    assert_one_line_error(result, "Could not reach AWS")


def test_bad_max_attempts(cli, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "lots")
    assert_one_line_error(cli("things", "list", code=2), "AWS_MAX_ATTEMPTS must be")


def test_rejected_credentials(cli, fault_proxy):
    fault_proxy.add(
        "GET",
        r"^/policies/",
        403,
        "ExpiredTokenException",
        "The security token included in the request is expired",
    )
    result = cli("things", "create", "G030JF0553648RUH", code=3)
    assert_one_line_error(result, "AWS rejected the credentials (ExpiredTokenException)")
    assert "aws sso login" in result.stderr


def test_access_denied_names_the_iam_action(cli, fault_proxy):
    fault_proxy.add(
        "GET",
        r"^/policies/iotbutton-button",
        403,
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/u is not authorized",
    )
    result = cli("things", "create", "G030JF0553648RUH", code=3)
    assert_one_line_error(result, "AWS denied iot:GetPolicy")
    assert "Grant iot:GetPolicy" in result.stderr


def test_access_denied_in_json_mode(cli, fault_proxy):
    fault_proxy.add("GET", r"^/policies/", 403, "AccessDeniedException", "not authorized")
    result = cli("things", "create", "G030JF0553648RUH", "--json", code=3)
    assert json.loads(result.stdout)["error"]["code"] == "access-denied"
    assert result.stderr == ""


def test_throttling_is_retried_then_succeeds(cli, fault_proxy, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    fault = fault_proxy.add(
        "POST", r"^/certificates\?", 429, "ThrottlingException", "Rate exceeded", times=2
    )
    [button] = cli.json("things", "create", "G030JF0553648RUH")["buttons"]
    assert button["action"] == "created"
    assert fault.hits == 2


def test_throttling_after_retries(cli, fault_proxy, monkeypatch, isolated_env):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    fault_proxy.add("POST", r"^/certificates\?", 429, "ThrottlingException", "Rate exceeded")
    result = cli("things", "create", "G030JF0553648RUH", "--json", code=1)
    [button] = json.loads(result.stdout)["buttons"]
    assert button["action"] == "failed"
    assert button["error"]["code"] == "throttled"
    assert "iot:CreateCertificateFromCsr" in button["error"]["message"]
    # The thing was recorded before the throttled call: a re-run resumes, nothing is lost.
    fault_proxy.faults.clear()
    [button] = cli.json("things", "create", "G030JF0553648RUH")["buttons"]
    assert button["action"] == "resumed"


def test_throttled_single_command_prints_one_line(cli, fault_proxy, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    fault_proxy.add("GET", r"^/endpoint", 400, "ThrottlingException", "Rate exceeded")
    assert_one_line_error(cli("endpoint", code=1), "AWS kept throttling iot:DescribeEndpoint")


def test_unexpected_aws_error(cli, fault_proxy, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    fault_proxy.add("GET", r"^/endpoint", 500, "InternalFailure", "boom")
    result = cli("endpoint", code=1)
    assert_one_line_error(result, "iot:DescribeEndpoint failed: InternalFailure")
