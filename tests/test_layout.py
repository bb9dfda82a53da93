"""The rooms of the package import downwards only, as the README's layout section says."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "iotbutton_cli"

# A room may import rooms on a lower level, or its own; never a higher one. These are the README's
# "Layout" lines read bottom up, right to left: keep the two in step.
LEVELS = {
    "notifier_lambda": 0,  # runs alone inside Lambda: imports nothing of ours
    "__version__": 0,
    "errors": 1,
    "logsetup": 2,
    "paths": 3,
    "aws": 4,
    "registry": 5,
    "sandbox": 6,
    "context": 7,
    "provisioning": 8,
    "device": 9,
    "notify": 10,
    "lifecycle": 11,
    "demo": 12,
    "cli": 13,
    "__main__": 14,
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "iotbutton_cli"


def _imports(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "iotbutton_cli":
                rooms |= {alias.name for alias in node.names}
            elif node.module.startswith("iotbutton_cli."):
                rooms.add(_room(node.module))
        elif isinstance(node, ast.Import):
            rooms |= {_room(a.name) for a in node.names if a.name.startswith("iotbutton_cli.")}
    return rooms


def _own_room(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py")


def test_every_room_has_a_level() -> None:
    rooms = {_own_room(path) for path in SRC.rglob("*.py")} - {"__init__"}
    assert rooms - {"data"} <= set(LEVELS), sorted(rooms - set(LEVELS))


def test_imports_go_downwards_only() -> None:
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        room = _own_room(path)
        if room == "__init__":
            continue
        for target in _imports(path) - {room}:
            if LEVELS[target] >= LEVELS[room]:
                upward.append(f"{path.relative_to(SRC)} imports {target}")
    assert upward == []


def test_the_lambda_package_imports_nothing_of_ours() -> None:
    for path in (SRC / "notifier_lambda").rglob("*.py"):
        assert _imports(path) <= {"notifier_lambda"}, path
