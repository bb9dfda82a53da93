"""A moto server with the sandbox's fixes installed, for the registry-scale benchmark.

Plain moto finds a certificate by scanning all of them, and signs each CSR with a new RSA key of
its own: both grow or dominate with thousands of buttons, and both are moto's cost, not
iotbutton's. The sandbox replaces them (``iotbutton_cli.sandbox.moto_fixes`` and
``csr_signing``), so this server answers as the sandbox does.

    python benchmarks/moto_with_fixes.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys

from moto.server import main

from iotbutton_cli.sandbox import csr_signing, moto_fixes

if __name__ == "__main__":
    csr_signing.install()
    moto_fixes.install()
    sys.exit(main(sys.argv[1:]))
