"""Nothing leaks: with -v (every AWS call logged) and -vv (botocore's debug log, which prints
request and response bodies) the Twilio secret, private keys and AWS credentials appear nowhere in
the output."""

from __future__ import annotations

from support import TWILIO_SECRET, notify_init_args

AWS_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN"


def test_verbose_output_holds_no_secret(
    cli, sandbox_aws, twilio_standin, monkeypatch, isolated_env
):
    # The sandbox accepts only its own key; a session token beside it is ignored, as here.
    aws_secret = sandbox_aws.keys.secret_access_key
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    base = ["--twilio-api-base", twilio_standin.base_url]
    results = [
        cli("-vv", "things", "create", "G030JF0553648RUH"),
        cli("-v", "things", "show", "G030JF0553648RUH", "--json"),
        cli("-vv", "certs", "rotate", "G030JF0553648RUH"),
        cli("-v", *notify_init_args()),
        cli("-v", "notify", "check"),
        cli("-vv", "notify", "deploy", *base),
        cli("-v", "notify", "deploy", *base, "--json"),
        cli("-v", "notify", "show", "--json"),
        cli("-v", "notify", "test"),
        cli("-v", "notify", "send", *base, "--json"),
        cli("-v", "clean", "--yes"),
    ]
    everything = "".join(r.stdout + r.stderr for r in results)

    assert "iot:CreateCertificateFromCsr" in everything  # -v really logs the calls
    assert "Response body" in everything  # -vv: botocore's too
    assert "****" in everything  # and masked
    for secret in (TWILIO_SECRET, aws_secret, AWS_TOKEN, "PRIVATE KEY"):
        assert secret not in everything, secret
    for path in isolated_env.rglob("*"):
        if path.is_file() and not path.name.endswith("-private.pem.key"):
            text = path.read_text(errors="ignore")
            assert TWILIO_SECRET not in text and aws_secret not in text, path


SECRET_SHAPES = [
    "Qz#9!",  # short: shorter than anything a text search would dare to mask
    "q\"uo'te\\back\\slash",
    "sécrèt-naïve-☃-日本語",
    "emoji-😀-and-\u00a0-nbsp",
    "tab\tand spaces  and+plus&amp=",
]


def spellings(secret: str) -> set[str]:
    """Every way a secret can be written into a log line: as is, JSON-escaped, repr-escaped,
    form-encoded."""
    import json
    from urllib.parse import quote_plus

    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
        quote_plus(secret),
    }


def test_secrets_of_every_shape_stay_out_of_the_debug_log(
    cli, sandbox_aws, twilio_standin, monkeypatch
):
    """`notify deploy -vv` logs botocore's request and response bodies: the PutParameter that
    stores the secret and, when the secret changes, the decrypted GetParameter answer holding the
    old one. Masked by structure, whatever the secret looks like."""
    base = ["--twilio-api-base", twilio_standin.base_url]
    cli(*notify_init_args())
    output = ""
    for secret in SECRET_SHAPES:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", secret)
        result = cli("-vv", "notify", "deploy", *base)
        output += result.stdout + result.stderr
    assert "Response body" in output and "GetParameter" in output and "PutParameter" in output
    for secret in SECRET_SHAPES:
        for spelling in spellings(secret):
            assert spelling not in output, (secret, spelling)
