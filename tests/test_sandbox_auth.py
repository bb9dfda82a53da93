"""The sandbox's ports are closed to anyone without its keys: SigV4 on the AWS port, the deployed
Twilio secret on the Twilio port, a device certificate on the MQTT port; moto's management API is
never served; idle connections cannot hold the ports; another OS user can neither use the ports
nor read the state files.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from iotbutton_cli.sandbox import sigv4
from iotbutton_cli.sandbox.sigv4 import KeyPair
from support import notify_init_args

REGION = "us-east-1"
SECRET_PARAMETER = "/iotbutton/twilio-secret"
ACCOUNT_SID = "AC" + "1" * 32
API_KEY_SID = "SK" + "2" * 32
SMS = {"To": "+15551230001", "From": "+15005550006", "Body": "hello"}
STRANGER = KeyPair("AKIA" + "Z" * 16, "z" * 40)

# One call per service the tool uses, and the codes AWS answers with for (unknown key, wrong
# secret, no signature at all).
SERVICE_CALLS = {
    "iot": (lambda c: c.list_things(), "UnrecognizedClientException", "InvalidSignatureException",
            "MissingAuthenticationTokenException"),
    "iot-data": (lambda c: c.publish(topic="iotbutton/X", payload=b"{}"),
                 "UnrecognizedClientException", "InvalidSignatureException",
                 "MissingAuthenticationTokenException"),
    "lambda": (lambda c: c.list_functions(), "UnrecognizedClientException",
               "InvalidSignatureException", "MissingAuthenticationTokenException"),
    "ssm": (lambda c: c.get_parameter(Name=SECRET_PARAMETER, WithDecryption=True),
            "UnrecognizedClientException", "InvalidSignatureException",
            "MissingAuthenticationTokenException"),
    "logs": (lambda c: c.describe_log_groups(), "UnrecognizedClientException",
             "InvalidSignatureException", "MissingAuthenticationTokenException"),
    "iam": (lambda c: c.list_roles(), "InvalidClientTokenId", "SignatureDoesNotMatch",
            "MissingAuthenticationToken"),
    "sts": (lambda c: c.get_caller_identity(), "InvalidClientTokenId", "SignatureDoesNotMatch",
            "MissingAuthenticationToken"),
    "s3": (lambda c: c.list_buckets(), "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "AccessDenied"),
}  # fmt: skip
SIGNING_NAMES = {"iot": "iot", "iot-data": "iotdata", "lambda": "lambda", "ssm": "ssm",
                 "logs": "logs", "iam": "iam", "sts": "sts", "s3": "s3"}  # fmt: skip


# --- the verifier on its own -----------------------------------------------------------------

KEYS = KeyPair("AKIA" + "A" * 16, "a" * 40)


def signed(
    service: str,
    keys: KeyPair = KEYS,
    method: str = "POST",
    url: str = "http://127.0.0.1:4566/",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
    crt: bool = False,
) -> dict[str, Any]:
    """A WSGI environ for a request botocore signed (with its own signer, or awscrt's, which
    it uses when awscrt is installed), as waitress would hand it over."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.context.update(context or {})
    if crt:
        from botocore.crt.auth import CrtS3SigV4Auth, CrtSigV4Auth

        signer: Any = CrtS3SigV4Auth if service == "s3" else CrtSigV4Auth
    else:
        signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(Credentials(keys.access_key_id, keys.secret_access_key), service, REGION).add_auth(
        request
    )
    split = urllib.parse.urlsplit(url)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": split.path + (f"?{split.query}" if split.query else ""),
        "PATH_INFO": urllib.parse.unquote(split.path),
        "QUERY_STRING": split.query,
        "HTTP_HOST": split.netloc,
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


def test_key_pair_is_aws_shaped_and_new_each_time():
    first, second = KeyPair.generate(), KeyPair.generate()
    assert first != second
    for keys in (first, second):
        assert keys.access_key_id.startswith("AKIA") and len(keys.access_key_id) == 20
        assert (
            keys.access_key_id[4:].isalnum()
            and keys.access_key_id[4:].upper() == (keys.access_key_id[4:])
        )
        assert len(keys.secret_access_key) == 40
        assert keys.secret_access_key not in repr(keys)


@pytest.mark.parametrize("crt", [False, True], ids=["botocore", "awscrt"])
@pytest.mark.parametrize("service", sorted(set(SIGNING_NAMES.values())))
def test_verifier_accepts_what_botocore_signs_for_every_service(service, crt):
    body = b'{"a": "b c"}'
    environ = signed(
        service,
        KEYS,
        url="http://127.0.0.1:4566/things/G030%3AX/a%20b?z=1&a=%2F&a=0",
        body=body,
        headers={"Content-Type": "application/json", "X-Amz-Target": "Svc.Op"},
        crt=crt,
    )
    assert sigv4.verify(environ, body, KEYS) is None


def test_verifier_refuses_a_tampered_body():
    environ = signed("ssm", KEYS, body=b'{"Name": "/a"}')
    refusal = sigv4.verify(environ, b'{"Name": "/iotbutton/twilio-secret"}', KEYS)
    assert refusal is not None and refusal.reason == sigv4.SIGNATURE


def test_verifier_refuses_a_tampered_signed_header_and_path():
    environ = signed("ssm", KEYS, headers={"X-Amz-Target": "AmazonSSM.DescribeParameters"})
    tampered = {**environ, "HTTP_X_AMZ_TARGET": "AmazonSSM.DeleteParameter"}
    assert sigv4.verify(tampered, b"", KEYS).reason == sigv4.SIGNATURE
    moved = {**environ, "REQUEST_URI": "/other", "PATH_INFO": "/other"}
    assert sigv4.verify(moved, b"", KEYS).reason == sigv4.SIGNATURE
    unsigned_host = dict(environ)
    del unsigned_host["HTTP_HOST"]
    assert sigv4.verify(unsigned_host, b"", KEYS).reason == sigv4.SIGNATURE


def test_verifier_refuses_an_unknown_key_and_a_wrong_secret():
    stranger = sigv4.verify(signed("iot", STRANGER), b"", KEYS)
    assert (stranger.reason, stranger.service) == (sigv4.UNKNOWN_KEY, "iot")
    guessed = KeyPair(KEYS.access_key_id, "b" * 40)
    assert sigv4.verify(signed("iot", guessed), b"", KEYS).reason == sigv4.SIGNATURE


def test_verifier_refuses_a_timestamp_more_than_15_minutes_off():
    environ = signed("sts", KEYS)
    signed_at = datetime.datetime.strptime(environ["HTTP_X_AMZ_DATE"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    minutes = datetime.timedelta(minutes=1)
    assert sigv4.verify(environ, b"", KEYS, now=signed_at + 14 * minutes) is None
    late = sigv4.verify(environ, b"", KEYS, now=signed_at + 16 * minutes)
    early = sigv4.verify(environ, b"", KEYS, now=signed_at - 16 * minutes)
    assert late.reason == early.reason == sigv4.EXPIRED
    assert "Signature expired" in late.message


def test_verifier_refuses_missing_and_malformed_authorization():
    environ = signed("iot", KEYS)
    del environ["HTTP_AUTHORIZATION"]
    assert sigv4.verify(environ, b"", KEYS).reason == sigv4.MISSING
    for header in (
        "Basic dXNlcjpwYXNz",
        "AWS AKIAAAAAAAAAAAAAAAAA:c2lnbmF0dXJl",
        "AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/20240101/us-east-1/iot, "
        "SignedHeaders=host, Signature=00",
    ):
        assert sigv4.verify({**environ, "HTTP_AUTHORIZATION": header}, b"", KEYS).reason == (
            sigv4.MALFORMED
        ), header


def test_verifier_checks_s3_payload_hashes():
    body = b"the config"
    environ = signed("s3", KEYS, method="PUT", url="http://127.0.0.1:4566/bucket/key", body=body)
    assert environ["HTTP_X_AMZ_CONTENT_SHA256"] != "UNSIGNED-PAYLOAD"  # botocore over http
    assert sigv4.verify(environ, body, KEYS) is None
    assert sigv4.verify(environ, b"other config", KEYS).reason == sigv4.CONTENT_SHA256
    streaming = {**environ, "HTTP_X_AMZ_CONTENT_SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
    assert sigv4.verify(streaming, body, KEYS).reason == sigv4.CONTENT_SHA256


def test_verifier_accepts_an_unsigned_payload_for_s3_only():
    url = "http://127.0.0.1:4566/bucket/key"
    # What botocore sends when S3 payload signing is turned off.
    s3_config = Config(s3={"payload_signing_enabled": False})
    environ = signed("s3", KEYS, "PUT", url, b"x", context={"client_config": s3_config})
    assert environ["HTTP_X_AMZ_CONTENT_SHA256"] == "UNSIGNED-PAYLOAD"
    assert sigv4.verify(environ, b"x", KEYS) is None
    elsewhere = signed(
        "lambda", KEYS, "PUT", url, b"x", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    )
    assert sigv4.verify(elsewhere, b"x", KEYS).reason == sigv4.CONTENT_SHA256


# --- the AWS port, through boto3 -------------------------------------------------------------


def client(service: str, url: str, keys: KeyPair | None, **config: Any) -> Any:
    settings = Config(retries={"max_attempts": 1, "mode": "standard"}, **config)
    if keys is None:
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=REGION,
            config=settings.merge(Config(signature_version=UNSIGNED)),
        )
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        config=settings,
    )


def error_code(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("service", sorted(SERVICE_CALLS))
def test_every_service_refuses_strangers_with_its_own_error_code(sandbox_aws, service):
    call, unknown_key, bad_signature, unsigned = SERVICE_CALLS[service]
    url = sandbox_aws.url
    guessed = KeyPair(sandbox_aws.keys.access_key_id, "x" * 40)

    assert error_code(lambda: call(client(service, url, STRANGER))) == (unknown_key, 403)
    assert error_code(lambda: call(client(service, url, guessed))) == (bad_signature, 403)
    assert error_code(lambda: call(client(service, url, None))) == (unsigned, 403)
    if service != "ssm":
        call(client(service, url, sandbox_aws.keys))  # and the sandbox's own key works


def test_the_right_key_works_and_a_stranger_changes_nothing(sandbox_aws):
    keys = sandbox_aws.keys
    ssm = client("ssm", sandbox_aws.url, keys)
    ssm.put_parameter(Name=SECRET_PARAMETER, Value="the-secret", Type="SecureString")
    s3 = client("s3", sandbox_aws.url, keys)
    s3.create_bucket(Bucket="iotbutton-config")
    # PutObject and DeleteObjects carry the checksum headers newer botocore adds.
    s3.put_object(Bucket="iotbutton-config", Key="notifier/config ü.json", Body=b"{}")
    s3.delete_objects(
        Bucket="iotbutton-config", Delete={"Objects": [{"Key": "notifier/config ü.json"}]}
    )
    iot = client("iot", sandbox_aws.url, keys)
    iot.create_thing(thingName="G030JF0553648RUH")

    stranger_iot = client("iot", sandbox_aws.url, STRANGER)
    with pytest.raises(ClientError):
        stranger_iot.delete_thing(thingName="G030JF0553648RUH")
    with pytest.raises(ClientError):
        client("ssm", sandbox_aws.url, STRANGER).put_parameter(
            Name=SECRET_PARAMETER, Value="mine", Type="SecureString", Overwrite=True
        )

    assert [t["thingName"] for t in iot.list_things()["things"]] == ["G030JF0553648RUH"]
    parameter = ssm.get_parameter(Name=SECRET_PARAMETER, WithDecryption=True)["Parameter"]
    assert parameter["Value"] == "the-secret"


def test_an_old_signature_is_refused(sandbox_aws, monkeypatch):
    import botocore.auth
    import botocore.crt.auth

    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)

    def clock(remove_tzinfo: bool = True) -> datetime.datetime:
        return long_ago.replace(tzinfo=None) if remove_tzinfo else long_ago

    # botocore signs with awscrt's signer when awscrt is installed (it is: awsiotsdk needs it).
    monkeypatch.setattr(botocore.auth, "get_current_datetime", clock)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", clock)
    ssm = client("ssm", sandbox_aws.url, sandbox_aws.keys)
    sts = client("sts", sandbox_aws.url, sandbox_aws.keys)
    s3 = client("s3", sandbox_aws.url, sandbox_aws.keys)
    assert error_code(ssm.describe_parameters) == ("InvalidSignatureException", 403)
    assert error_code(sts.get_caller_identity) == ("SignatureDoesNotMatch", 403)
    assert error_code(s3.list_buckets) == ("RequestTimeTooSkewed", 403)


@pytest.mark.parametrize(
    "path",
    ["/moto-api/reset", "/moto-api/", "/moto-api", "//moto-api/reset", "/%6Doto-api/reset",
     "/moto-api/data.json", "/moto-api/reset-auth"],
)  # fmt: skip
def test_moto_api_is_never_served_signed_or_not(sandbox_aws, path):
    iot = client("iot", sandbox_aws.url, sandbox_aws.keys)
    iot.create_thing(thingName="survivor")
    for method in ("GET", "POST"):
        plain = urllib.request.Request(f"{sandbox_aws.url}{path}", method=method, data=b"")
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(plain, timeout=10)
        assert raised.value.code == 404, (method, path)
        request = AWSRequest(method=method, url=f"{sandbox_aws.url}{path}", data=b"")
        keys = sandbox_aws.keys
        SigV4Auth(Credentials(keys.access_key_id, keys.secret_access_key), "iot", REGION).add_auth(
            request
        )
        prepared = request.prepare()
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(
                urllib.request.Request(
                    prepared.url, method=method, data=b"", headers=dict(prepared.headers)
                ),
                timeout=10,
            )
        assert raised.value.code == 404, (method, path, "signed")
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["survivor"]


def test_lambda_functions_run_with_the_sandbox_key(sandbox_aws):
    """As Lambda hands a function its role's credentials: the function can call the sandbox."""
    import io
    import zipfile

    code = (
        "import os, boto3\n"
        "def lambda_handler(event, context):\n"
        "    ssm = boto3.client('ssm')\n"
        "    value = ssm.get_parameter(Name=event['name'], WithDecryption=True)['Parameter']\n"
        "    return {'key': os.environ['AWS_ACCESS_KEY_ID'], 'value': value['Value']}\n"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", code)
    keys, url = sandbox_aws.keys, sandbox_aws.url
    client("ssm", url, keys).put_parameter(Name="/p", Value="read-it", Type="SecureString")
    role = client("iam", url, keys).create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    lam = client("lambda", url, keys)
    lam.create_function(
        FunctionName="reader",
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="handler.lambda_handler",
        Code={"ZipFile": buffer.getvalue()},
        Timeout=30,
    )
    response = lam.invoke(FunctionName="reader", Payload=json.dumps({"name": "/p"}))
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, payload
    assert payload == {"key": keys.access_key_id, "value": "read-it"}


# --- idle connections ------------------------------------------------------------------------


def open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sockets.append(socket.create_connection(("127.0.0.1", port), timeout=30))
    return sockets


def wait_closed_by_server(sockets: list[socket.socket], timeout: float = 60.0) -> bool:
    """True once the server has closed every one of ``sockets`` (EOF or reset on read)."""
    deadline = time.monotonic() + timeout
    for sock in sockets:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if sock.recv(1) != b"":
                return False
        except (ConnectionResetError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                return False
    return True


@pytest.fixture
def many_files():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def sandbox(cli):
    info = cli.json("sandbox", "start")
    yield info
    cli("sandbox", "stop")


def test_1005_idle_connections_do_not_block_the_aws_port(cli, many_files, sandbox, monkeypatch):
    """Past waitress's old connection limit (1000) and select()'s 1024 descriptors."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    port = int(urllib.parse.urlsplit(sandbox["aws_url"]).port or 0)
    idle = open_idle(port, 1005)
    try:
        cli("--sandbox", "things", "create", "G030JF0553648RUH")
        listed = cli.json("--sandbox", "things", "list")
    finally:
        for sock in idle:
            sock.close()
    assert [button["serial"] for button in listed] == ["G030JF0553648RUH"]


def still_open(sockets: list[socket.socket]) -> bool:
    """True if the server has closed none of ``sockets``."""
    for sock in sockets:
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                return False
        except BlockingIOError:
            continue
        except OSError:
            return False
    return True


def test_the_aws_port_serves_beside_1005_connections_it_keeps(
    cli, many_files, tmp_path, monkeypatch
):
    """Served alongside the idle connections, not after evicting them: with idle channels
    kept for an hour, only a connection limit above 1005 and poll() (this process's
    descriptors are past 1024: the clients' and the server's ends are both here) let it answer."""
    from iotbutton_cli.sandbox.aws_server import SandboxAWS, reset_moto

    server = SandboxAWS(tmp_path / "state", channel_timeout=3600, cleanup_interval=3600)
    server.start()
    reset_moto()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.keys.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.keys.secret_access_key)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    idle = open_idle(server.port, 1005)
    try:
        cli("things", "create", "G030JF0553648RUH")
        listed = cli.json("things", "list")
        assert still_open(idle), "the server dropped idle connections to serve this one"
    finally:
        for sock in idle:
            sock.close()
        server.stop()
    assert [button["serial"] for button in listed] == ["G030JF0553648RUH"]


def test_idle_aws_connections_are_closed(tmp_path):
    from iotbutton_cli.sandbox.aws_server import SandboxAWS

    server = SandboxAWS(tmp_path / "state", channel_timeout=1, cleanup_interval=1)
    server.start()
    try:
        idle = open_idle(server.port, 5)
        assert wait_closed_by_server(idle), "waitress kept idle connections open"
        for sock in idle:
            sock.close()
    finally:
        server.stop()


def request_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def twilio_post(
    base_url: str,
    user: str | None,
    secret: str,
    account: str = ACCOUNT_SID,
    sms: dict[str, str] = SMS,
) -> Any:
    request = urllib.request.Request(
        f"{base_url}/2010-04-01/Accounts/{account}/Messages.json",
        data=urllib.parse.urlencode(sms).encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if user is not None:
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_idle_twilio_connections_time_out_and_do_not_block_a_request():
    from iotbutton_cli.sandbox.twilio import TwilioStandIn

    before = request_threads()
    with TwilioStandIn(credentials={ACCOUNT_SID: "s" * 32}, idle_timeout=0.5) as stand_in:
        port = int(stand_in.base_url.rsplit(":", 1)[1])
        idle = open_idle(port, 200)
        try:
            status, _ = twilio_post(stand_in.base_url, ACCOUNT_SID, "s" * 32)
            assert status == 201
            assert wait_closed_by_server(idle), "the stand-in kept idle connections open"
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 30
        while request_threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert request_threads() == before, "threads of idle connections are still there"


def test_the_stand_in_closes_idle_connections_by_default():
    from iotbutton_cli.sandbox import twilio

    assert twilio.TwilioStandIn().idle_timeout == twilio.IDLE_TIMEOUT_SECONDS == 15.0


# --- the Twilio port accepts the deployed secret only ----------------------------------------


def deploy_notifier(cli: Any, secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`notify init` and `notify deploy` in the sandbox: the account ACCOUNT_SID, From
    +15005550006, the Twilio secret ``secret``."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", secret)
    cli("--sandbox", *notify_init_args("Grandma"))
    cli("--sandbox", "notify", "deploy")


def test_twilio_stand_in_accepts_only_the_deployed_account_and_secret(cli, sandbox, monkeypatch):
    twilio = sandbox["twilio_url"]
    anything = twilio_post(twilio, ACCOUNT_SID, "anything")
    assert anything == (401, anything[1]) and anything[1]["code"] == 20003, "nothing deployed yet"

    deploy_notifier(cli, "first-secret", monkeypatch)
    assert twilio_post(twilio, ACCOUNT_SID, "first-secret")[0] == 201
    assert twilio_post(twilio, API_KEY_SID, "first-secret")[0] == 401, "the config names no key"
    assert twilio_post(twilio, ACCOUNT_SID, "wrong")[0] == 401
    assert twilio_post(twilio, None, "")[0] == 401
    other_account = "AC" + "3" * 32
    assert twilio_post(twilio, ACCOUNT_SID, "first-secret", account=other_account)[0] == 401
    not_ours = twilio_post(twilio, ACCOUNT_SID, "first-secret", sms={**SMS, "From": "+15557770000"})
    assert (not_ours[0], not_ours[1]["code"]) == (400, 21606), "From: a number the account owns"
    keys = KeyPair(sandbox["access_key_id"], sandbox["secret_access_key"])
    client("ssm", sandbox["aws_url"], keys).put_parameter(
        Name=SECRET_PARAMETER, Value="second-secret", Type="SecureString", Overwrite=True
    )
    assert twilio_post(twilio, ACCOUNT_SID, "first-secret")[0] == 401
    assert twilio_post(twilio, ACCOUNT_SID, "second-secret")[0] == 201

    outbox = cli.json("sandbox", "outbox")
    assert [(e["auth_user"], e["http_status"]) for e in outbox] == [
        (ACCOUNT_SID, 201),
        (ACCOUNT_SID, 400),
        (ACCOUNT_SID, 201),
    ], "refused requests never reach the outbox"
    log = Path(sandbox["outbox"]).with_name("sandbox.log").read_text()
    assert "twilio stand-in refused POST" in log
    for secret in ("first-secret", "second-secret", sandbox["secret_access_key"]):
        assert secret not in log


def test_what_the_notifier_sent_can_be_read_back_and_moves_on(cli, sandbox, monkeypatch):
    """Through the sandbox: an SMS `notify send` sent with the deployed secret, fetched and
    listed with that secret, is delivered a moment later; reads stay out of the outbox."""
    deploy_notifier(cli, "the-secret", monkeypatch)
    cli("--sandbox", "notify", "send")
    [sent] = cli.json("sandbox", "outbox")
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages"
    deadline = time.monotonic() + 20
    while True:
        status, fetched = twilio_get(sandbox["twilio_url"], f"{path}/{sent['sid']}.json")
        if fetched.get("status") == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    listed = twilio_get(sandbox["twilio_url"], f"{path}.json?PageSize=1")[1]
    refused = twilio_get(sandbox["twilio_url"], f"{path}.json", secret="wrong")

    assert (status, fetched["status"], fetched["to"]) == (200, "delivered", SMS["To"])
    assert [m["sid"] for m in listed["messages"]] == [sent["sid"]]
    assert listed["next_page_uri"] is None and listed["page_size"] == 1
    assert (refused[0], refused[1]["code"]) == (401, 20003)
    assert len(cli.json("sandbox", "outbox")) == 1, "reads are not recorded"


def twilio_get(base_url: str, path: str, secret: str = "the-secret") -> Any:
    request = urllib.request.Request(f"{base_url}{path}")
    token = base64.b64encode(f"{ACCOUNT_SID}:{secret}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# --- the credentials, for the owner only -----------------------------------------------------


def test_status_and_env_hand_the_owner_the_keys(cli, sandbox, isolated_env):
    status = cli.json("sandbox", "status")
    assert status["access_key_id"] == sandbox["access_key_id"]
    assert status["secret_access_key"] == sandbox["secret_access_key"]
    assert status["access_key_id"].startswith("AKIA") and len(status["secret_access_key"]) == 40
    assert "process" not in status
    human = cli("sandbox", "status").stdout + cli("sandbox", "start").stdout
    assert sandbox["secret_access_key"] not in human

    state = isolated_env / "state" / "sandbox"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "sandbox.json").stat().st_mode) == 0o600
    assert (
        json.loads((state / "sandbox.json").read_text())["secret_access_key"]
        == (sandbox["secret_access_key"])
    )
    assert stat.S_IMODE((state / "sandbox.log").stat().st_mode) == 0o600
    assert sandbox["secret_access_key"] not in (state / "sandbox.log").read_text()

    assert cli.json("sandbox", "env") == {
        "AWS_ACCESS_KEY_ID": sandbox["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": sandbox["secret_access_key"],
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": sandbox["aws_url"],
    }
    lines = cli("sandbox", "env").stdout.splitlines()
    assert lines == [
        f"export AWS_ACCESS_KEY_ID={shlex.quote(sandbox['access_key_id'])}",
        f"export AWS_SECRET_ACCESS_KEY={shlex.quote(sandbox['secret_access_key'])}",
        "export AWS_REGION=us-east-1",
        "export AWS_DEFAULT_REGION=us-east-1",
        f"export AWS_ENDPOINT_URL={shlex.quote(sandbox['aws_url'])}",
        "unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_PROFILE",
    ]


def test_sandbox_env_works_for_a_boto3_script_in_a_shell(cli, sandbox, tmp_path):
    import sys

    cli("--sandbox", "things", "create", "G030JF0553648RUH")
    exports = tmp_path / "sandbox.env"
    exports.write_text(cli("sandbox", "env").stdout)
    script = (
        "import boto3; print([t['thingName'] for t in boto3.client('iot').list_things()['things']])"
    )
    environment = {**os.environ, "AWS_PROFILE": "someone-else", "AWS_SESSION_TOKEN": "stale"}
    result = subprocess.run(
        ["bash", "-c", f'eval "$(cat {exports})" && "{sys.executable}" -c "{script}"'],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['G030JF0553648RUH']"


def test_sandbox_env_needs_a_running_sandbox(cli):
    result = cli("sandbox", "env", code=1)
    assert result.stdout == ""
    assert "The sandbox is not running." in result.stderr
    assert "iotbutton sandbox start" in result.stderr
    error = cli.json("sandbox", "env", code=1)["error"]
    assert error["code"] == "sandbox-not-running" and error["hint"]


# --- another OS user -------------------------------------------------------------------------

# Run by /usr/bin/python3 as another user: the standard library only, and nothing but the ports
# (and the paths, to show it cannot open them). Prints one JSON object of what it saw.
STRANGER_SCRIPT = r"""
import base64, datetime, hashlib, hmac, json, os, socket, ssl, sys, urllib.error, urllib.request
given = json.load(sys.stdin)
aws, twilio, mqtt_port = given["aws_url"], given["twilio_url"], given["mqtt_port"]
host = aws.split("//", 1)[1]
seen = {}

def call(url, method="POST", body=b"", headers=None):
    request = urllib.request.Request(url, data=body if method != "GET" else None, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()

def sign(key, secret, service, method, path, body, headers):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {**{k.lower(): v for k, v in headers.items()}, "host": host, "x-amz-date": now}
    names = sorted(headers)
    canonical = "\n".join([method, path, "", "".join(f"{n}:{headers[n].strip()}\n" for n in names),
                           ";".join(names), hashlib.sha256(body).hexdigest()])
    scope = f"{now[:8]}/us-east-1/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", now, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (now[:8], "us-east-1", service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return headers

def aws_code(status, headers, text):
    code = headers.get("x-amzn-ErrorType") or ""
    if not code and "<Code>" in text:
        code = text.split("<Code>", 1)[1].split("</Code>", 1)[0]
    return [status, code]

get_secret = json.dumps({"Name": "/iotbutton/twilio-secret", "WithDecryption": True}).encode()
ssm_headers = {"Content-Type": "application/x-amz-json-1.1",
               "X-Amz-Target": "AmazonSSM.GetParameter"}
sts_body = b"Action=GetCallerIdentity&Version=2011-06-15"
sts_headers = {"Content-Type": "application/x-www-form-urlencoded"}
for name, (key, secret) in given["keys"].items():
    signed = sign(key, secret, "ssm", "POST", "/", get_secret, ssm_headers)
    status, headers, text = call(aws + "/", body=get_secret, headers=signed)
    seen[f"ssm {name}"] = aws_code(status, headers, text) + [text if status == 200 else ""]
    signed = sign(key, secret, "sts", "POST", "/", sts_body, sts_headers)
    seen[f"sts {name}"] = aws_code(*call(aws + "/", body=sts_body, headers=signed))
    thing = "/things/" + given["thing"]
    signed = sign(key, secret, "iot", "DELETE", thing, b"", {})
    seen[f"iot delete {name}"] = aws_code(*call(aws + thing, "DELETE", headers=signed))
seen["ssm unsigned"] = aws_code(*call(aws + "/", body=get_secret, headers=ssm_headers))
seen["moto reset"] = call(aws + "/moto-api/reset")[0]
seen["moto dashboard"] = call(aws + "/moto-api/", "GET")[0]

form = b"To=%2B15551230001&From=%2B15005550006&Body=forged"
messages = twilio + "/2010-04-01/Accounts/" + given["account_sid"] + "/Messages.json"
plain = {"Content-Type": "application/x-www-form-urlencoded"}
for name, secret in given["twilio_secrets"].items():
    token = base64.b64encode(f"{given['account_sid']}:{secret}".encode()).decode()
    auth = {**plain, "Authorization": "Basic " + token}
    status, _, text = call(messages, body=form, headers=auth)
    seen[f"twilio {name}"] = [status, json.loads(text).get("code")]
status, _, text = call(messages, body=form, headers=plain)
seen["twilio no auth"] = [status, json.loads(text).get("code")]

# TLS 1.2: the server's refusal of a client without a certificate fails the handshake itself.
# TLS 1.3: the client's half of the handshake ends first; the server's refusal ends the connection.
for version in ("TLSv1_2", "TLSv1_3"):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
    try:
        with socket.create_connection(("127.0.0.1", mqtt_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04evil")  # CONNECT
                answer = tls.recv(4)
                seen["mqtt " + version] = "CONNACK" if answer[:1] == b"\x20" else "closed"
    except (ssl.SSLError, OSError) as exc:
        seen["mqtt " + version] = "refused: " + type(exc).__name__

for path in given["private_paths"]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path).close()
        seen[path] = "readable"
    except PermissionError:
        seen[path] = "denied"
print(json.dumps(seen))
"""

PLAIN_PYTHON = "/usr/bin/python3"


def other_user() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run a probe as another OS user with runuser")
    if shutil.which("runuser") is None:
        pytest.skip("needs runuser (util-linux) to run a probe as another OS user")
    if not os.access(PLAIN_PYTHON, os.X_OK):
        pytest.skip(f"needs {PLAIN_PYTHON}, which another user can run (the venv's is not theirs)")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("needs the user nobody")
    return "nobody"


def probe(given: dict[str, Any], user: str | None) -> dict[str, Any]:
    command = [PLAIN_PYTHON, "-I", "-c", STRANGER_SCRIPT]
    if user is not None:
        command = [str(shutil.which("runuser")), "-u", user, "--", *command]
    result = subprocess.run(
        command,
        input=json.dumps(given),
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture
def world_reachable_home(monkeypatch):
    """A home that every user may enter, so only the sandbox's own modes protect its state."""
    home = Path(tempfile.mkdtemp(prefix="iotbutton-auth-", dir="/tmp"))
    home.chmod(0o755)
    monkeypatch.setenv("IOTBUTTON_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_another_os_user_finds_every_port_closed(cli, world_reachable_home, monkeypatch):
    user = other_user()
    info = cli.json("sandbox", "start")
    try:
        keys = KeyPair(info["access_key_id"], info["secret_access_key"])
        cli("--sandbox", "things", "create", "G030JF0553648RUH")
        deploy_notifier(cli, "deployed-secret", monkeypatch)
        state = world_reachable_home / "state"
        given = {
            "aws_url": info["aws_url"],
            "twilio_url": info["twilio_url"],
            "mqtt_port": info["mqtt_port"],
            "account_sid": ACCOUNT_SID,
            "thing": "G030JF0553648RUH",
            # The key id is not a secret (AWS shows it in errors): knowing it is not enough.
            "keys": {
                "made up": ["AKIA" + "Q" * 16, "q" * 40],
                "guessed": [keys.access_key_id, "g" * 40],
            },
            "twilio_secrets": {"wrong": "guessed-secret", "empty": ""},
            "private_paths": [
                str(state),
                str(state / "sandbox"),
                str(state / "sandbox" / "sandbox.json"),
                str(state / "sandbox" / "outbox.jsonl"),
                str(world_reachable_home / "registry.json"),
            ],
        }
        # The probe itself is right: with the keys (given here by the test, not read from the
        # state folder) the same requests succeed.
        owner = probe(
            {**given, "keys": {"right": [keys.access_key_id, keys.secret_access_key]},
             "thing": "NO-SUCH-THING", "twilio_secrets": {"right": "deployed-secret"},
             "private_paths": []},
            user=None,
        )  # fmt: skip
        assert owner["ssm right"][0] == 200 and "deployed-secret" in owner["ssm right"][2]
        assert owner["sts right"][0] == 200
        assert owner["iot delete right"][0] == 404  # let in, and told there is no such thing
        assert owner["twilio right"][0] == 201

        seen = probe(given, user)

        assert seen["ssm made up"][:2] == [403, "UnrecognizedClientException"]
        assert seen["ssm guessed"][:2] == [403, "InvalidSignatureException"]
        assert seen["ssm unsigned"] == [403, "MissingAuthenticationTokenException"]
        assert seen["sts made up"] == [403, "InvalidClientTokenId"]
        assert seen["sts guessed"] == [403, "SignatureDoesNotMatch"]
        assert seen["iot delete made up"] == [403, "UnrecognizedClientException"]
        assert seen["iot delete guessed"] == [403, "InvalidSignatureException"]
        assert seen["moto reset"] == seen["moto dashboard"] == 404
        assert (
            seen["twilio wrong"] == seen["twilio empty"] == seen["twilio no auth"] == [401, 20003]
        )
        assert seen["mqtt TLSv1_2"].startswith("refused: SSL"), "the handshake did not fail"
        assert seen["mqtt TLSv1_3"] != "CONNACK", "a client without a certificate got in"
        for path in given["private_paths"]:
            if Path(path).exists():
                assert seen[path] == "denied", path
        assert seen[str(state / "sandbox" / "sandbox.json")] == "denied"

        assert [b["serial"] for b in cli.json("--sandbox", "things", "list")] == [
            "G030JF0553648RUH"
        ]
        outbox = cli.json("sandbox", "outbox")
        assert len(outbox) == 1, "only the owner's own probe reached the outbox"
        ssm = client("ssm", info["aws_url"], keys)
        parameter = ssm.get_parameter(Name=SECRET_PARAMETER, WithDecryption=True)["Parameter"]
        assert parameter["Value"] == "deployed-secret"
    finally:
        cli("sandbox", "stop")
