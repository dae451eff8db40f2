import math

import pytest

from ticketlab.dst import UpdateSchedule
from ticketlab.errors import UserError


def test_updates_every_delta_t_until_the_end_fraction():
    s = UpdateSchedule(total_steps=1000, delta_t=100, end_fraction=0.75)
    assert [t for t in range(1, 1001) if s.is_update(t)] == [100, 200, 300, 400, 500, 600, 700]


def test_no_update_on_the_last_step_even_with_end_fraction_one():
    s = UpdateSchedule(total_steps=300, delta_t=100, end_fraction=1.0)
    assert [t for t in range(1, 301) if s.is_update(t)] == [100, 200]


def test_cosine_linear_and_constant_decay():
    cos = UpdateSchedule(total_steps=1000, drop_fraction=0.3, decay="cosine", end_fraction=0.5)
    assert cos.fraction(0) == pytest.approx(0.3)
    assert cos.fraction(250) == pytest.approx(0.15)
    assert cos.fraction(500) == pytest.approx(0.0, abs=1e-12)
    assert cos.fraction(100) == pytest.approx(0.15 * (1 + math.cos(math.pi * 0.2)))
    lin = UpdateSchedule(total_steps=1000, drop_fraction=0.4, decay="linear", end_fraction=1.0)
    assert lin.fraction(250) == pytest.approx(0.3)
    assert UpdateSchedule(total_steps=10, drop_fraction=0.5, decay="constant").fraction(7) == 0.5


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"delta_t": 0}, "--delta-t"),
        ({"drop_fraction": 1.0}, "--drop-fraction"),
        ({"decay": "step"}, "--drop-decay"),
        ({"end_fraction": 1.5}, "--end-fraction"),
        ({"total_steps": 0}, "total steps"),
    ],
)
def test_bad_schedule_settings(kw, msg):
    with pytest.raises(UserError, match=msg):
        UpdateSchedule(**({"total_steps": 100} | kw))


def test_no_updates_without_a_drop_fraction_or_before_the_first_interval():
    assert not any(UpdateSchedule(total_steps=100, delta_t=10, drop_fraction=0.0).is_update(t) for t in range(101))
    s = UpdateSchedule(total_steps=100, delta_t=10, end_fraction=0.0)
    assert not any(s.is_update(t) for t in range(101)) and s.end == 0
    assert not UpdateSchedule(total_steps=100, delta_t=1).is_update(0)


def test_decay_stays_at_zero_past_the_end_and_handles_an_end_of_zero():
    lin = UpdateSchedule(total_steps=100, drop_fraction=0.4, decay="linear", end_fraction=0.5)
    assert lin.end == 50 and lin.fraction(0) == 0.4 and lin.fraction(80) == 0.0
    cos = UpdateSchedule(total_steps=100, drop_fraction=0.4, decay="cosine", end_fraction=0.5)
    assert cos.fraction(80) == pytest.approx(0.0, abs=1e-15)
    assert UpdateSchedule(total_steps=100, drop_fraction=0.4, decay="linear", end_fraction=0.0).fraction(0) == 0.4
    assert UpdateSchedule(total_steps=3, delta_t=1, end_fraction=0.5).end == 1  # int(1.5)
    assert [t for t in range(1, 11) if UpdateSchedule(total_steps=10, delta_t=3, end_fraction=1.0).is_update(t)] == [
        3,
        6,
        9,
    ]


def test_a_one_step_run_is_valid_and_messages_list_the_choices():
    assert not UpdateSchedule(total_steps=1, delta_t=1).is_update(1)
    with pytest.raises(UserError, match=r"^unknown --drop-decay 'step'; choose one of: cosine, linear, constant$"):
        UpdateSchedule(total_steps=10, decay="step")
