"""Keys that never leave the device (`things create --csr`), EC keys (`--key-type ec`) and the
exclusive thing attachment, through the CLI against moto: what AWS is asked, what the registry
and the disk hold, and the one-line errors for CSRs AWS IoT would not sign."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from support import recorded

SERIAL = "G030JF0553648RUH"
OTHER = "G030JF0553648XYZ"


def device_csr(
    folder: Path, name: str = "device.csr", key: Any = None, common_name: str = SERIAL
) -> tuple[Path, Any]:
    """A CSR as a device makes it: its own key (RSA-2048 unless given) signs it; the key stays
    with the test, as it would on the device."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    path = folder / name
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path, key


def spki_sha256(public_key: Any) -> str:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def private_keys_under(home: Path) -> list[Path]:
    """Every file under the home that holds a private key (whatever its name)."""
    found = []
    for folder, _, names in os.walk(home):
        for name in names:
            path = Path(folder) / name
            if b"PRIVATE KEY" in path.read_bytes():
                found.append(path)
    return found


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every AWS API call the CLI makes in this process, with its parameters."""
    from botocore.client import BaseClient

    calls: list[tuple[str, dict[str, Any]]] = []
    make_call = BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        calls.append((operation_name, dict(api_params)))
        return make_call(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


def test_the_cli_offers_the_key_types_the_service_makes():
    from iotbutton_cli.cli.things import KeyType
    from iotbutton_cli.provisioning.devicekeys import KEY_TYPES

    assert tuple(kind.value for kind in KeyType) == KEY_TYPES


def test_a_csr_button_stores_no_private_key_anywhere(cli, iot, isolated_env, tmp_path):
    csr, device_key = device_csr(tmp_path)

    result = cli("things", "create", SERIAL, "--csr", str(csr))

    assert "created" in result.stdout
    cert_id = cli.json("certs", "show", SERIAL)["certificate_id"]
    assert private_keys_under(isolated_env) == []
    record = recorded(isolated_env, "certificates")[cert_id]
    assert set(record["files"]) == {"certificate", "public_key"}
    assert record["public_key_sha256"] == spki_sha256(device_key.public_key())
    from cryptography.hazmat.primitives import serialization

    public = serialization.load_pem_public_key(Path(record["files"]["public_key"]).read_bytes())
    assert spki_sha256(public) == spki_sha256(device_key.public_key())
    assert recorded(isolated_env, "certificate_requests") == {}
    described = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert described["status"] == "ACTIVE"
    assert Path(record["files"]["certificate"]).read_text() == described["certificatePem"]
    assert f"The certificate of {SERIAL} for its device: " in result.stderr

    [listed] = cli.json("things", "list")
    assert "private_key" not in listed["files"] and listed["half_done"] is False
    assert "│ device │" in cli("things", "list").stdout
    shown = cli("things", "show", SERIAL).stdout
    assert "on the device (its certificate came from a CSR)" in shown
    assert "on the device" in cli("certs", "show", SERIAL).stdout


def test_a_certificate_is_attached_to_its_thing_exclusively(cli, iot, aws_calls):
    cli("things", "create", SERIAL)

    attached = [params for name, params in aws_calls if name == "AttachThingPrincipal"]
    assert len(attached) == 1
    assert attached[0]["thingName"] == SERIAL
    assert attached[0]["thingPrincipalType"] == "EXCLUSIVE_THING"
    cert = cli.json("certs", "show", SERIAL)
    assert iot.list_principal_things_v2(principal=cert["arn"])["principalThingObjects"] == [
        {"thingName": SERIAL, "thingPrincipalType": "EXCLUSIVE_THING"}
    ]
    # As in AWS, no other thing can take that certificate now.
    iot.create_thing(thingName="THEIRS")
    with pytest.raises(Exception, match="InvalidRequestException"):
        iot.attach_thing_principal(thingName="THEIRS", principal=cert["arn"])


def test_ec_keys_are_p256_and_rsa_stays_the_default(cli, iot, isolated_env):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    [ec_button] = cli.json("things", "create", SERIAL, "--key-type", "ec")["buttons"]
    [rsa_button] = cli.json("things", "create", OTHER)["buttons"]

    certificates = recorded(isolated_env, "certificates")
    ec_files = certificates[ec_button["certificate_id"]]["files"]
    key = serialization.load_pem_private_key(Path(ec_files["private_key"]).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert oct(Path(ec_files["private_key"]).stat().st_mode & 0o777) == "0o600"
    rsa_files = certificates[rsa_button["certificate_id"]]["files"]
    key = serialization.load_pem_private_key(Path(rsa_files["private_key"]).read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048


def test_key_type_ec_for_many_buttons(cli, iot, isolated_env):
    from cryptography.hazmat.primitives import serialization

    result = cli.json("things", "create", "--count", "3", "--key-type", "ec")

    assert [b["action"] for b in result["buttons"]] == ["created"] * 3
    for record in recorded(isolated_env, "certificates").values():
        key = serialization.load_pem_private_key(
            Path(record["files"]["private_key"]).read_bytes(), None
        )
        assert key.curve.name == "secp256r1"  # type: ignore[union-attr]


def _not_pem(folder: Path) -> Path:
    path = folder / "not-pem.csr"
    path.write_text("hello, I am not a CSR\n")
    return path


def _der(folder: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem, _ = device_csr(folder, "pem.csr")
    path = folder / "device.der"
    request = x509.load_pem_x509_csr(pem.read_bytes())
    path.write_bytes(request.public_bytes(serialization.Encoding.DER))
    return path


def _bad_signature(folder: Path) -> Path:
    """A CSR whose signature is not its key's: one byte of the signature flipped."""
    import base64

    pem, _ = device_csr(folder, "good.csr")
    lines = pem.read_text().splitlines()
    der = bytearray(base64.b64decode("".join(lines[1:-1])))
    der[-5] ^= 0x01  # inside the signature, the last field
    body = base64.encodebytes(bytes(der)).decode().replace("\n", "")
    chunks = [body[i : i + 64] for i in range(0, len(body), 64)]
    path = folder / "tampered.csr"
    path.write_text("\n".join([lines[0], *chunks, lines[-1]]) + "\n")
    return path


def _rsa_1024(folder: Path) -> Path:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return device_csr(folder, "rsa1024.csr", key)[0]


def _ec_p224(folder: Path) -> Path:
    from cryptography.hazmat.primitives.asymmetric import ec

    return device_csr(folder, "p224.csr", ec.generate_private_key(ec.SECP224R1()))[0]


def _ed25519(folder: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERIAL)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, None)
    path = folder / "ed25519.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_not_pem, "is not a PEM certificate signing request"),
        (_der, "is a DER file"),
        (_bad_signature, "has a signature that does not verify"),
        (_rsa_1024, "carries an RSA key of 1024 bits; AWS IoT signs RSA keys of 2048 bits"),
        (_ec_p224, "carries an EC key on secp224r1; AWS IoT signs"),
        (_ed25519, "carries an unsupported Ed25519 key; AWS IoT signs"),
    ],
)
def test_a_csr_aws_would_not_sign_is_one_line_before_any_aws_call(
    cli, iot, isolated_env, tmp_path, make, says
):
    path = make(tmp_path)

    result = cli("things", "create", SERIAL, "--csr", str(path), code=2)

    first, *rest = result.stderr.splitlines()
    assert first.startswith(f"Error: The CSR {path} {says}"), result.stderr
    assert rest and rest[0].startswith("Hint:") and "Traceback" not in result.stderr
    assert iot.list_things()["things"] == [] and iot.list_certificates()["certificates"] == []
    as_json = cli.json("things", "create", SERIAL, "--csr", str(path), code=2)
    assert as_json["error"]["code"] == "bad-csr" and as_json["error"]["exit_status"] == 2


def test_csr_is_for_one_button_and_not_with_a_key_type(cli, iot, tmp_path):
    csr, _ = device_csr(tmp_path)

    many = cli.json("things", "create", "--count", "2", "--csr", str(csr), code=2)
    both = cli.json("things", "create", SERIAL, "--csr", str(csr), "--key-type", "ec", code=2)

    assert many["error"]["code"] == "csr-one-button"
    assert both["error"]["code"] == "csr-and-key-type"
    assert iot.list_things()["things"] == []
    missing = cli("things", "create", SERIAL, "--csr", str(tmp_path / "nope.csr"), code=2)
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_rerun_with_the_same_csr_changes_nothing_and_another_key_is_refused(
    cli, iot, tmp_path, isolated_env
):
    csr, _ = device_csr(tmp_path)
    first = cli.json("things", "create", SERIAL, "--csr", str(csr))["buttons"][0]

    again = cli.json("things", "create", SERIAL, "--csr", str(csr))["buttons"][0]
    plain = cli.json("things", "create", SERIAL)["buttons"][0]
    other, _ = device_csr(tmp_path, "other.csr")
    refused = cli.json("things", "create", SERIAL, "--csr", str(other), code=1)["buttons"][0]

    assert again == plain == {**first, "action": "unchanged"}
    assert refused["error"]["code"] == "has-certificate"
    assert f"iotbutton certs rotate {SERIAL} --csr {other}" in refused["error"]["hint"]
    assert len(iot.list_certificates()["certificates"]) == 1
    assert private_keys_under(isolated_env) == []


def test_a_csr_button_cannot_be_clicked_from_here(cli, iot, tmp_path):
    csr, _ = device_csr(tmp_path)
    cli("things", "create", SERIAL, "--csr", str(csr))

    click = cli("sim", "click", SERIAL, code=1)
    send = cli.json("sim", "send", "--as", SERIAL, "--message", "{}", code=1)

    assert click.stderr.splitlines()[0] == (
        f"Error: Button {SERIAL} has no private key on this machine: its key is on the device "
        "(its certificate came from a CSR), so iotbutton cannot connect as it."
    )
    assert send["error"]["code"] == "no-private-key"


def test_rotating_a_csr_button_needs_the_devices_new_csr(cli, iot, tmp_path, isolated_env):
    csr, _ = device_csr(tmp_path)
    old = cli.json("things", "create", SERIAL, "--csr", str(csr))["buttons"][0]["certificate_id"]

    refused = cli.json("certs", "rotate", SERIAL, code=2)
    assert refused["error"]["code"] == "csr-required"
    assert iot.describe_certificate(certificateId=old)["certificateDescription"]["status"] == (
        "ACTIVE"
    )

    new_csr, new_key = device_csr(tmp_path, "new.csr")
    said = cli("certs", "rotate", SERIAL, "--csr", str(new_csr))
    rotated = cli.json("certs", "show", SERIAL)

    assert rotated["certificate_id"] != old and "Give the device its new certificate" in said.stderr
    assert set(rotated["files"]) == {"certificate", "public_key"}
    assert {c["certificateId"] for c in iot.list_certificates()["certificates"]} == {
        rotated["certificate_id"]
    }
    record = recorded(isolated_env, "certificates")[rotated["certificate_id"]]
    assert record["public_key_sha256"] == spki_sha256(new_key.public_key())
    # And back to a key made here, on purpose.
    cli("certs", "rotate", SERIAL, "--key-type", "rsa")
    assert "private_key" in cli.json("certs", "show", SERIAL)["files"]


def test_a_csr_button_is_deleted_and_cleaned_like_any(cli, iot, tmp_path, isolated_env):
    csr, _ = device_csr(tmp_path)
    cli("things", "create", SERIAL, "--csr", str(csr))
    files = cli.json("certs", "show", SERIAL)["files"]

    cli("things", "delete", SERIAL, "--yes")
    assert not any(Path(path).exists() for path in files.values())
    cli("things", "create", OTHER, "--csr", str(csr))
    cli("clean", "--yes")
    assert iot.list_things()["things"] == [] and iot.list_certificates()["certificates"] == []


def test_a_damaged_files_record_is_still_refused(cli, iot, isolated_env):
    """The registry's check takes the certificate and public key alone (a device's key), and
    still refuses anything else."""
    cli("things", "create", SERIAL)
    path = isolated_env / "registry.json"
    document = json.loads(path.read_text())
    (namespace,) = document["namespaces"].values()
    (record,) = namespace["resources"]["certificates"].values()
    del record["files"]["public_key"]
    path.write_text(json.dumps(document))

    result = cli("things", "list", code=1)

    assert "files is not the certificate, private_key and public_key paths" in result.stderr


def test_a_lost_csr_certificate_is_found_by_the_devices_key(
    cli, sandbox_aws, tmp_path, monkeypatch
):
    """A run that died after AWS signed the device's CSR left a certificate nothing records:
    its request names the CSR's public key, and the sandbox's AWS (which, like AWS, signs the
    CSR's own key) lets the next run find and retire it."""
    import boto3

    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning import certs
    from iotbutton_cli.provisioning.devicekeys import read_device_csr
    from iotbutton_cli.registry import keyfiles

    csr, device_key = device_csr(tmp_path)
    cli("things", "create", OTHER)  # the policy, the thing type
    iot = boto3.client("iot")
    made_before = {c["certificateId"] for c in iot.list_certificates()["certificates"]}

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(keyfiles, "write_key_files", dies)
    ctx = AppContext()
    with pytest.raises(OSError):
        certs.create_certificate(ctx, {"thing": SERIAL}, device_csr=read_device_csr(csr))
    (request,) = ctx.namespace.items(certs.REQUEST_KIND).values()
    assert request["public_key_sha256"] == spki_sha256(device_key.public_key())
    assert request["key_file"] is None and request["until"]
    lost = {c["certificateId"] for c in iot.list_certificates()["certificates"]} - made_before
    assert len(lost) == 1

    assert certs.reclaim_lost_certificates(ctx) == sorted(lost)
    remaining = {c["certificateId"] for c in iot.list_certificates()["certificates"]}
    assert remaining == made_before and ctx.namespace.items(certs.REQUEST_KIND) == {}
