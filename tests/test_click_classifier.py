"""Press patterns become the AWS IoT button's clicks, with its timings, on a clock of the test's.

No real time passes: every edge carries its time, and ``tick`` is called as the runner's timer
would call it, at each deadline the classifier names.
"""

from __future__ import annotations

import pytest

from iotbutton_cli.device.clicks import ButtonClicks, Click, Timings
from iotbutton_cli.errors import ExitStatus, IotButtonError


def play(pattern: list[tuple[str, float]], timings: Timings | None = None) -> list[Click]:
    """Edges ('down' / 'up' at a time in seconds) fed as a pin reports them; between them and
    after the last, the classifier is ticked at every deadline it names, as the runner does."""
    clicks = ButtonClicks(timings)
    found: list[Click] = []
    end = pattern[-1][1] + 60
    for what, at in [*pattern, ("end", end)]:
        while (deadline := clicks.next_deadline()) is not None and deadline <= at:
            found += clicks.tick(deadline)
        if what != "end":
            found += clicks.edge(what == "down", at)
    assert clicks.next_deadline() is None
    return found


def types(clicks: list[Click]) -> list[str]:
    return [click.type for click in clicks]


def test_a_short_press_is_a_single_once_the_double_click_window_closes():
    clicks = ButtonClicks()
    assert clicks.edge(True, 10.0) == []
    assert clicks.edge(False, 10.2) == []
    # Not yet: a second press could still make it a DOUBLE.
    assert clicks.tick(10.2 + 0.49) == []
    assert clicks.next_deadline() == pytest.approx(10.7)
    assert clicks.tick(10.7) == [Click("SINGLE", 10.0)]
    assert clicks.next_deadline() is None


def test_a_second_press_within_the_window_is_one_double_click():
    found = play([("down", 0.0), ("up", 0.1), ("down", 0.45), ("up", 0.55)])
    assert found == [Click("DOUBLE", 0.0)]


def test_the_double_fires_on_the_second_press_without_waiting_for_its_release():
    clicks = ButtonClicks()
    clicks.edge(True, 0.0)
    clicks.edge(False, 0.1)
    clicks.edge(True, 0.3)
    assert clicks.tick(0.3 + 0.03) == [Click("DOUBLE", 0.0)]


def test_a_second_press_after_the_window_is_two_singles():
    found = play([("down", 0.0), ("up", 0.1), ("down", 0.7), ("up", 0.8)])
    assert types(found) == ["SINGLE", "SINGLE"]
    assert [click.pressed_at for click in found] == [0.0, 0.7]


def test_a_hold_of_the_threshold_is_long_and_fires_while_still_held():
    clicks = ButtonClicks()
    clicks.edge(True, 5.0)
    assert clicks.tick(5.0 + 1.49) == []
    assert clicks.tick(6.5) == [Click("LONG", 5.0)]
    # The release that follows is no click of its own.
    assert clicks.edge(False, 9.0) == []
    assert clicks.tick(20.0) == []


def test_a_press_just_short_of_the_threshold_is_single():
    assert types(play([("down", 0.0), ("up", 1.45)])) == ["SINGLE"]


def test_a_long_press_then_a_short_one_are_long_and_single():
    found = play([("down", 0.0), ("up", 2.0), ("down", 2.2), ("up", 2.3)])
    assert types(found) == ["LONG", "SINGLE"]


def test_a_third_quick_press_starts_a_new_click():
    pattern = [("down", 0.0), ("up", 0.1), ("down", 0.2), ("up", 0.3), ("down", 0.4)]
    found = play([*pattern, ("up", 0.5)])
    assert types(found) == ["DOUBLE", "SINGLE"]


def test_contact_bounce_is_ignored_and_durations_count_from_the_first_edge():
    chatter = [("down", 0.0), ("up", 0.004), ("down", 0.008), ("up", 0.011), ("down", 0.015)]
    release = [("up", 0.2), ("down", 0.205), ("up", 0.209)]
    found = play([*chatter, *release])
    assert found == [Click("SINGLE", 0.015)]


def test_a_blip_shorter_than_the_debounce_is_no_press():
    assert play([("down", 0.0), ("up", 0.02)]) == []


def test_a_release_still_settling_at_the_threshold_does_not_make_a_long():
    # Released 10 ms before 1.5 s; the release settles (30 ms) after the threshold has passed.
    clicks = ButtonClicks()
    clicks.edge(True, 0.0)
    clicks.tick(0.03)
    clicks.edge(False, 1.49)
    assert clicks.tick(1.5) == []
    assert clicks.tick(1.52) == []
    assert clicks.tick(1.99) == [Click("SINGLE", 0.0)]


def test_a_late_tick_still_decides_in_the_order_things_happened():
    # The timer thread woke only at 3 s: the press, its release and the window all lie before.
    clicks = ButtonClicks()
    clicks.edge(True, 0.0)
    clicks.edge(False, 0.2)
    assert clicks.tick(3.0) == [Click("SINGLE", 0.0)]


def test_debounce_zero_takes_every_edge_at_once():
    found = play([("down", 0.0), ("up", 0.001)], Timings.from_ms(debounce_ms=0))
    assert types(found) == ["SINGLE"]


def test_configured_timings_move_the_thresholds():
    slow = Timings.from_ms(long_ms=3000, double_ms=1000, debounce_ms=50)
    assert types(play([("down", 0.0), ("up", 2.0)], slow)) == ["SINGLE"]
    assert types(play([("down", 0.0), ("up", 3.1)], slow)) == ["LONG"]
    assert types(play([("down", 0.0), ("up", 0.1), ("down", 0.9), ("up", 1.0)], slow)) == ["DOUBLE"]
    assert types(play([("down", 0.0), ("up", 0.1), ("down", 0.9), ("up", 1.0)])) == [
        "SINGLE",
        "SINGLE",
    ]
    # A 40 ms press is bounce at 50 ms, a press at 30 ms.
    assert play([("down", 0.0), ("up", 0.04)], slow) == []
    assert types(play([("down", 0.0), ("up", 0.04)])) == ["SINGLE"]


def test_keyboard_taps_and_holds_have_no_bounce():
    clicks = ButtonClicks()
    assert clicks.tap(0.0) == []
    assert clicks.tap(0.2) == [Click("DOUBLE", 0.0)]
    assert clicks.hold(5.0) == [Click("LONG", 5.0)]
    assert clicks.tap(9.0) == []
    assert clicks.finish(9.1) == [Click("SINGLE", 9.0)]


def test_stopping_decides_an_open_single_but_not_a_press_still_held():
    clicks = ButtonClicks()
    clicks.edge(True, 0.0)
    clicks.edge(False, 0.1)
    assert clicks.finish(0.2) == [Click("SINGLE", 0.0)]
    held = ButtonClicks()
    held.edge(True, 0.0)
    assert held.finish(0.5) == []


def test_the_defaults_are_the_documented_ones():
    assert Timings() == Timings.from_ms() == Timings(1.5, 0.5, 0.03)
    assert Timings().as_ms() == {"long_ms": 1500, "double_ms": 500, "debounce_ms": 30}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"long_ms": 100}, "--long-ms must be between 300 and 10000 ms, not 100."),
        ({"double_ms": 5000}, "--double-ms must be between 100 and 2000 ms, not 5000."),
        ({"debounce_ms": -1}, "--debounce-ms must be between 0 and 200 ms, not -1."),
        (
            {"double_ms": 150, "debounce_ms": 150},
            "--debounce-ms (150) must be shorter than --double-ms (150).",
        ),
        (
            {"long_ms": 600, "double_ms": 800},
            "--double-ms (800) must be shorter than --long-ms (600).",
        ),
    ],
)
def test_bad_timings_are_one_line_usage_errors(options, message):
    with pytest.raises(IotButtonError) as raised:
        Timings.from_ms(**options)
    assert raised.value.code == "bad-timing"
    assert raised.value.message == message
    assert raised.value.exit_status == ExitStatus.USAGE
    assert "\n" not in raised.value.message + raised.value.hint
