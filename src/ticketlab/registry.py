"""A name -> object registry, one per family (datasets, models, ...), so a new method is one registration."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, hint: str = ""):
        """``hint`` ends the unknown-name message (a way to name something not registered)."""
        self.kind, self.hint = kind, hint
        self._items: dict[str, T] = {}
        self._families: dict[str, tuple[Callable[[str], T], str]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def register_family(self, prefix: str, form: str) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
        """Decorator for ``make(rest) -> item``: every name ``prefix + rest`` (``mlp-`` + ``4096-4096``) is
        an item, made by ``make`` (which raises UserError for a ``rest`` it cannot read); ``form`` names the
        family in listings (``mlp-H1-H2-...``)."""

        def deco(make: Callable[[str], T]) -> Callable[[str], T]:
            self._families[prefix] = (make, form)
            return make

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            for prefix, (make, _) in self._families.items():
                if isinstance(name, str) and name.startswith(prefix):
                    return make(name[len(prefix) :])
            names = ", ".join(self.names() + self.families())
            near = difflib.get_close_matches(str(name), list(self._items), n=1, cutoff=0.6)
            mean = f"did you mean {near[0]!r}? " if near else ""
            raise UserError(f"unknown {self.kind} {name!r}; {mean}choose one of: {names}{self.hint}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def families(self) -> list[str]:
        """Each family's form (``mlp-H1-H2-...``)."""
        return [form for _, form in self._families.values()]

    def __contains__(self, name: object) -> bool:
        try:
            self.get(name)  # a registered name, or one a family can read
        except UserError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
