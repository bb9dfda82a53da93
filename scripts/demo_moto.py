"""Try iotbutton without an AWS account: the real CLI against a local moto server.

Provisions three buttons, shows them, rotates one certificate, revokes another, then tears
everything down and checks that nothing is left. Files go to a temporary IOTBUTTON_HOME.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile


def main() -> int:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request lines

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with tempfile.TemporaryDirectory(prefix="iotbutton-demo-") as home:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_REGION": "us-east-1",
            "IOTBUTTON_HOME": home,
        }
        env.pop("AWS_PROFILE", None)

        def iotbutton(*args: str, show: bool = True) -> str:
            if show:
                print(f"\n$ iotbutton {shlex.join(args)}", flush=True)
            result = subprocess.run(
                [sys.executable, "-m", "iotbutton_cli", *args],
                env=env,
                text=True,
                stdout=subprocess.PIPE,
            )
            if show:
                print(result.stdout, end="", flush=True)
            if result.returncode != 0:
                raise SystemExit(f"iotbutton {' '.join(args)} exited {result.returncode}")
            return result.stdout

        iotbutton("things", "create", "--count", "3")
        serials = [
            b["serial"] for b in json.loads(iotbutton("things", "list", "--json", show=False))
        ]
        iotbutton("things", "list")
        iotbutton("things", "show", serials[0])
        iotbutton("certs", "rotate", serials[0])
        iotbutton("certs", "revoke", serials[1], "--yes")
        iotbutton("endpoint")
        iotbutton("clean", "--yes")  # exits non-zero if anything is left
        iotbutton("things", "list")
    server.stop()
    print(
        f"\nDone: {len(serials)} buttons provisioned, rotated, revoked and removed again; "
        "nothing is left in the local stand-in account."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
