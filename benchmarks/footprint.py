"""How much a fresh install of iotbutton puts on disk, and how many packages it brings.

Builds the project into a new virtual environment (as ``pipx install`` would: one venv of its
own), then sums the files every installed distribution records (bytecode included), leaving out
pip and setuptools, which pipx shares between its venvs. ``--demo`` also runs ``iotbutton demo``
out of that install, to show the slim dependency set still carries the whole story.

    python benchmarks/footprint.py [--demo] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_BY_PIPX = {"pip", "setuptools", "wheel"}
MEASURE = r"""
import importlib.metadata as m, json, os
sizes = {}
for dist in m.distributions():
    total = 0
    for f in dist.files or []:
        try:
            total += os.path.getsize(dist.locate_file(f))
        except OSError:
            pass
    sizes[dist.metadata["Name"]] = total
print(json.dumps(sizes))
"""


def measure(env_dir: Path) -> dict[str, int]:
    python = env_dir / "bin" / "python"
    out = subprocess.run([python, "-c", MEASURE], check=True, capture_output=True, text=True)
    sizes: dict[str, int] = json.loads(out.stdout)
    return {name: size for name, size in sizes.items() if name.lower() not in SHARED_BY_PIPX}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="run `iotbutton demo` from the install")
    parser.add_argument("--keep", type=Path, help="build the venv here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env_dir = args.keep or Path(scratch) / "venv"
        venv.create(env_dir, with_pip=True, clear=True)
        subprocess.run(
            [
                env_dir / "bin" / "python",
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                str(ROOT),
            ],
            check=True,
        )
        sizes = measure(env_dir)
        total = sum(sizes.values())
        print(
            f"{len(sizes)} packages, {total / 1e6:.0f} MB installed (pip and setuptools left out)"
        )
        for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:12]:
            print(f"  {size / 1e6:6.1f} MB  {name}")
        if args.demo:
            home = Path(scratch) / "home"
            env = {**os.environ, "IOTBUTTON_HOME": str(home)}
            demo = subprocess.run([env_dir / "bin" / "iotbutton", "demo"], env=env, check=False)
            print(f"iotbutton demo from this install: exit {demo.returncode}")
            return demo.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
