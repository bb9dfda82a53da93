"""Function URLs in the sandbox, as Lambda serves them: unsigned HTTP turned into a payload-format
2.0 event, the function's answer turned back into HTTP, and only when the function's resource
policy makes its NONE-auth URL public (both grants AWS wants since October 2025)."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile

import boto3
import pytest

ECHO = """
import json
def handler(event, context):
    return {"statusCode": 201, "headers": {"X-Seen": event["requestContext"]["http"]["method"]},
            "body": json.dumps({"path": event["rawPath"], "query": event["rawQueryString"],
                                "body": event["body"], "b64": event["isBase64Encoded"],
                                "type": event["headers"].get("content-type")})}
"""


@pytest.fixture
def lam(sandbox_aws):
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName="echo", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as bundle:
        bundle.writestr("echo.py", ECHO)
    client = boto3.client("lambda", region_name="us-east-1")
    client.create_function(
        FunctionName="echo",
        Runtime="python3.13",
        Role=role,
        Handler="echo.handler",
        Code={"ZipFile": code.getvalue()},
    )
    return client


def make_public(lam, url: bool = True, invoke: bool = True) -> str:
    created = lam.create_function_url_config(FunctionName="echo", AuthType="NONE")
    if url:
        lam.add_permission(
            FunctionName="echo",
            StatementId="url",
            Action="lambda:InvokeFunctionUrl",
            Principal="*",
            FunctionUrlAuthType="NONE",
        )
    if invoke:
        lam.add_permission(
            FunctionName="echo",
            StatementId="invoke",
            Action="lambda:InvokeFunction",
            Principal="*",
            InvokedViaFunctionUrl=True,
        )
    return str(created["FunctionUrl"])


def post(url: str, body: bytes = b"a=1&b=2") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_public_url_runs_the_function_unsigned_and_answers_with_its_response(lam, sandbox_aws):
    url = make_public(lam)
    assert url == f"{sandbox_aws.url}/lambda-url/echo/"
    assert lam.get_function_url_config(FunctionName="echo")["FunctionUrl"] == url

    status, headers, body = post(url + "status?alarm=x%2Fy")

    assert status == 201 and headers["X-Seen"] == "POST"
    assert json.loads(body) == {
        "path": "/status",
        "query": "alarm=x%2Fy",
        "body": "a=1&b=2",
        "b64": False,
        "type": "application/x-www-form-urlencoded",
    }


@pytest.mark.parametrize(("url", "invoke"), [(False, True), (True, False)])
def test_without_both_public_grants_the_url_is_forbidden(lam, url, invoke):
    address = make_public(lam, url=url, invoke=invoke)

    status, _, body = post(address)

    assert status == 403 and json.loads(body) == {"Message": "Forbidden"}


def test_a_function_without_a_url_is_not_found(lam, sandbox_aws):
    assert post(f"{sandbox_aws.url}/lambda-url/echo/")[0] == 404
    assert post(f"{sandbox_aws.url}/lambda-url/nosuch/")[0] == 404
