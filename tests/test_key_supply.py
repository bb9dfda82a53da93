"""Keys made ahead for bulk provisioning (provisioning/keysupply.py): each handed out once, of the
asked type, and nothing left running or kept when the supply closes."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from iotbutton_cli.provisioning.keysupply import KeySupply


@pytest.mark.parametrize(
    ("key_type", "kind"), [("ec", ec.EllipticCurvePrivateKey), ("rsa", rsa.RSAPrivateKey)]
)
def test_every_key_is_new_and_of_its_type(key_type, kind):
    count = 6 if key_type == "rsa" else 40
    taken: list = []
    lock = threading.Lock()
    with KeySupply(key_type, count) as supply:

        def take() -> None:
            key = supply.take()
            with lock:
                taken.append(key)

        threads = [threading.Thread(target=take) for _ in range(count + 3)]  # 3 more than made
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(taken) == count + 3
    assert all(isinstance(key, kind) for key in taken)
    numbers = {key.private_numbers().public_numbers for key in taken}
    assert len(numbers) == count + 3  # no key handed out twice


def test_close_stops_the_makers_and_drops_what_was_not_taken():
    supply = KeySupply("ec", 1000)
    supply.take()
    supply.close()
    assert not any(thread.is_alive() for thread in supply._threads)
    assert supply._ready.empty()
    assert supply.take() is not None  # after close, a caller still gets a key (made then)


def test_a_maker_that_fails_leaves_the_caller_to_make_its_own(monkeypatch):
    from iotbutton_cli.provisioning import keysupply

    made = keysupply.make_private_key
    calls = {"n": 0}

    def fails_first(key_type: str):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("no key for you")
        return made(key_type)

    monkeypatch.setattr(keysupply, "make_private_key", fails_first)
    with KeySupply("ec", 1, makers=1) as supply:
        assert isinstance(supply.take(), ec.EllipticCurvePrivateKey)
