"""Keys that never leave the device, EC keys, the exclusive thing attachment and ALPN on port 443,
end to end against the sandbox's broker (TLS with client certificates, IoT policies evaluated)
with a client we did not write (paho-mqtt) and with awsiotsdk (`sim click`).

A publish the policy denies is still acknowledged by the sandbox (as it logs and drops it), so
each check that a click got through is the monitor (`sim subscribe`) seeing it arrive.
"""

from __future__ import annotations

import json
import ssl
import threading
from pathlib import Path
from typing import Any

import boto3

from support import Watcher
from test_device_keys import device_csr, private_keys_under

SERIAL = "G030JF0553648RUH"
TOPIC = f"iotbutton/{SERIAL}"
WAIT = 20


def paho_publish(
    sandbox: dict[str, Any],
    client_id: str,
    certificate: Path | str,
    key: Path | str,
    alpn: list[str] | None = None,
) -> dict[str, Any]:
    """Connect as a device would and publish one LONG click at QoS 1. Says whether the broker
    accepted the connection, whether the PUBACK came, and the ALPN protocol the TLS handshake
    settled on."""
    import paho.mqtt.client as mqtt

    context = ssl.create_default_context(cafile=sandbox["ca_file"])
    context.load_cert_chain(str(certificate), str(key))
    if alpn:
        context.set_alpn_protocols(alpn)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.tls_set_context(context)
    connected, ended, acked = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, Any] = {"connected": False, "acked": False, "alpn": None}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome["connected"] = not reason.is_failure
        sock = client.socket()
        outcome["alpn"] = sock.selected_alpn_protocol() if sock is not None else None
        connected.set()

    def on_disconnect(*_args: Any) -> None:
        ended.set()
        connected.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = lambda *_args: acked.set()
    client.connect_async(sandbox["mqtt_host"], sandbox["mqtt_port"], keepalive=30)
    client.loop_start()
    try:
        connected.wait(WAIT)
        if outcome["connected"] and not ended.is_set():
            payload = {"serialNumber": SERIAL, "batteryVoltage": "1650mV", "clickType": "LONG"}
            client.publish(TOPIC, json.dumps(payload), qos=1)
            outcome["acked"] = acked.wait(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome


def sandbox_iot(sandbox: dict[str, Any]) -> Any:
    return boto3.Session(
        aws_access_key_id=sandbox["access_key_id"],
        aws_secret_access_key=sandbox["secret_access_key"],
        region_name="us-east-1",
    ).client("iot", endpoint_url=sandbox["aws_url"])


def test_a_csr_button_connects_with_the_devices_own_key(cli, sandbox, tmp_path):
    from cryptography.hazmat.primitives import serialization

    csr, device_key = device_csr(tmp_path)
    cli("--sandbox", "things", "create", SERIAL, "--csr", str(csr))
    key_file = tmp_path / "device.key"
    key_file.write_bytes(
        device_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    certificate = cli.json("--sandbox", "certs", "show", SERIAL)["files"]["certificate"]
    assert private_keys_under(Path(certificate).parent) == []  # the button's folder holds none

    watcher = Watcher()
    outcome = paho_publish(sandbox, SERIAL, certificate, key_file)

    assert outcome["connected"] and outcome["acked"]
    [click] = watcher.received()
    assert click["topic"] == TOPIC and click["payload"]["clickType"] == "LONG"


def test_iotbutton_cannot_play_a_csr_button_it_has_no_key_for(cli, sandbox, tmp_path):
    csr, _ = device_csr(tmp_path)
    cli("--sandbox", "things", "create", SERIAL, "--csr", str(csr))

    result = cli("--sandbox", "sim", "click", SERIAL, code=1)

    assert result.stderr.startswith(f"Error: Button {SERIAL} has no private key on this machine")
    assert "Traceback" not in result.stderr


def test_an_ec_button_clicks_through_awsiotsdk(cli, sandbox):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cli("--sandbox", "things", "create", SERIAL, "--key-type", "ec")
    key_path = cli.json("--sandbox", "certs", "show", SERIAL)["files"]["private_key"]
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"

    watcher = Watcher()
    cli("--sandbox", "sim", "click", "--double")

    [click] = watcher.received()
    assert click["topic"] == TOPIC and click["payload"]["clickType"] == "DOUBLE"


def test_the_exclusive_thing_is_the_connections_thing_whatever_the_client_id(
    cli, sandbox, tmp_path
):
    """A policy that lets any client id connect (as a device whose client id is not ours to
    choose would need) still resolves ${iot:Connection.Thing.ThingName} to the button's thing
    through the exclusive attachment; attached non-exclusively, the same certificate under a
    client id that names no thing of it has no thing, so the statement allows nothing."""
    cli("--sandbox", "things", "create", SERIAL)
    shown = cli.json("--sandbox", "certs", "show", SERIAL)
    iot = sandbox_iot(sandbox)
    arn = shown["arn"]
    account = arn.split(":")[4]
    thing = "${iot:Connection.Thing.ThingName}"
    iot.create_policy(
        policyName="any-client-id",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Connect",
                        "Resource": f"arn:aws:iot:us-east-1:{account}:client/*",
                        "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
                    },
                    {
                        "Effect": "Allow",
                        "Action": "iot:Publish",
                        "Resource": f"arn:aws:iot:us-east-1:{account}:topic/iotbutton/{thing}",
                    },
                ],
            }
        ),
    )
    iot.attach_policy(policyName="any-client-id", target=arn)
    files = shown["files"]

    watcher = Watcher()
    exclusive = paho_publish(sandbox, "esp32-a4cf12", files["certificate"], files["private_key"])
    assert exclusive["connected"] and exclusive["acked"]
    [click] = watcher.received()
    assert click["topic"] == TOPIC

    iot.detach_thing_principal(thingName=SERIAL, principal=arn)
    iot.attach_thing_principal(thingName=SERIAL, principal=arn)  # non-exclusive
    refused = paho_publish(sandbox, "esp32-a4cf12", files["certificate"], files["private_key"])
    assert not (refused["connected"] and refused["acked"])


def test_port_443_offers_alpn_and_the_sandbox_takes_it(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    files = cli.json("--sandbox", "certs", "show", SERIAL)["files"]

    watcher = Watcher()
    result = cli("--sandbox", "sim", "click", "--port", "443")
    assert "(ALPN x-amzn-mqtt-ca)" in result.stdout
    [click] = watcher.received()
    assert click["topic"] == TOPIC

    # A client we did not write, offering the protocol as AWS IoT Core wants it on port 443.
    outcome = paho_publish(
        sandbox, SERIAL, files["certificate"], files["private_key"], alpn=["x-amzn-mqtt-ca"]
    )
    assert outcome["connected"] and outcome["alpn"] == "x-amzn-mqtt-ca"


def test_any_other_port_is_a_one_line_usage_error(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)

    result = cli("--sandbox", "sim", "click", "--port", "1883", code=2)

    assert "on port 8883 or 443, not 1883." in result.stderr
    assert "Traceback" not in result.stderr
    wait = cli("--sandbox", "sim", "click", "--port", "443", "--wait", code=2)
    assert "--wait" in wait.stderr and "--port" in wait.stderr
