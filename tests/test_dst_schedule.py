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


@pytest.mark.parametrize("kw,msg", [({"delta_t": 0}, "--delta-t"), ({"drop_fraction": 1.0}, "--drop-fraction"),
                                    ({"decay": "step"}, "--drop-decay"), ({"end_fraction": 1.5}, "--end-fraction"),
                                    ({"total_steps": 0}, "total steps")])
def test_bad_schedule_settings(kw, msg):
    with pytest.raises(UserError, match=msg):
        UpdateSchedule(**({"total_steps": 100} | kw))
