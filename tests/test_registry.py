import pytest

from ticketlab.errors import UserError
from ticketlab.registry import Registry


def test_unknown_name_error_lists_the_choices():
    reg = Registry("widget")
    reg.register("b")(1)
    reg.register("a")(2)
    with pytest.raises(UserError, match=r"unknown widget 'c'; choose one of: a, b"):
        reg.get("c")
    assert reg.get("a") == 2 and reg.names() == ["a", "b"] and "b" in reg


def test_registering_a_name_twice_is_a_bug():
    reg = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError):
        reg.register("a")(2)
