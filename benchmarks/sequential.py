"""The baseline: a plain sequential boto3 loop, the way the classic AWS IoT examples provision.

    python benchmarks/sequential.py provision COUNT PREFIX MANIFEST [--endpoint-url URL]
    python benchmarks/sequential.py teardown MANIFEST [--endpoint-url URL]

``provision`` makes the same calls as ``iotbutton things create`` (a policy and a thing type once;
per button CreateThing, an RSA key made here and signed with CreateCertificateFromCsr, AttachPolicy,
AttachThingPrincipal), writes each certificate and key to files as the examples do, and records
what it made in MANIFEST.
``teardown`` undoes it in AWS's order (DetachPolicy, UpdateCertificate INACTIVE,
DetachThingPrincipal, DeleteCertificate, DeleteThing, then policy and thing type). Default boto3
settings, one call at a time, no registry, no locking: the floor a shell loop would reach.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

POLICY = "bench-loop-policy"
THING_TYPE = "bench-loop-type"
POLICY_DOCUMENT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": "arn:aws:iot:us-east-1:123456789012:client/"
            "${iot:Connection.Thing.ThingName}",
        },
        {
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": "arn:aws:iot:us-east-1:123456789012:topic/iotbutton/"
            "${iot:Connection.Thing.ThingName}",
        },
    ],
}


def provision(iot, count: int, prefix: str, manifest: Path) -> None:
    folder = manifest.parent / (manifest.stem + "-certs")
    folder.mkdir(parents=True, exist_ok=True)
    iot.create_policy(policyName=POLICY, policyDocument=json.dumps(POLICY_DOCUMENT))
    iot.create_thing_type(thingTypeName=THING_TYPE)
    made = []
    for index in range(count):
        name = f"{prefix}{index:04d}"
        iot.create_thing(thingName=name, thingTypeName=THING_TYPE)
        private_key, csr = key_and_csr(name)
        cert = iot.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)
        (folder / f"{name}.cert.pem").write_text(cert["certificatePem"])
        key = folder / f"{name}.private.key"
        key.write_text(private_key)
        os.chmod(key, 0o600)
        iot.attach_policy(policyName=POLICY, target=cert["certificateArn"])
        iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
        made.append({"thing": name, "id": cert["certificateId"], "arn": cert["certificateArn"]})
    manifest.write_text(json.dumps(made))


def key_and_csr(name: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem.decode(), csr.public_bytes(serialization.Encoding.PEM).decode()


def teardown(iot, manifest: Path) -> None:
    for item in json.loads(manifest.read_text()):
        iot.detach_policy(policyName=POLICY, target=item["arn"])
        iot.update_certificate(certificateId=item["id"], newStatus="INACTIVE")
        iot.detach_thing_principal(thingName=item["thing"], principal=item["arn"])
        iot.delete_certificate(certificateId=item["id"])
        iot.delete_thing(thingName=item["thing"])
    iot.delete_policy(policyName=POLICY)
    iot.deprecate_thing_type(thingTypeName=THING_TYPE)
    iot.delete_thing_type(thingTypeName=THING_TYPE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint-url")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("provision")
    make.add_argument("count", type=int)
    make.add_argument("prefix")
    make.add_argument("manifest", type=Path)
    undo = commands.add_parser("teardown")
    undo.add_argument("manifest", type=Path)
    args = parser.parse_args(argv)

    import boto3

    iot = boto3.client("iot", region_name="us-east-1", endpoint_url=args.endpoint_url)
    if args.command == "provision":
        provision(iot, args.count, args.prefix, args.manifest)
    else:
        teardown(iot, args.manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
