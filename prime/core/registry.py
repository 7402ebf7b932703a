"""A small name -> object registry (as torchvision's ``get_model``/``list_models``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prime.core.errors import PrimeError
from prime.core.plugins import load_plugins

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (models, device presets, datasets, ...).

    >>> MODELS = Registry("model")
    >>> @MODELS.register("tiny")
    ... def tiny(): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        """The entry ``name``; a name not registered yet is looked for in the installed
        plugins (:func:`prime.core.plugins.load_plugins`) before it is refused."""
        if name not in self._entries:
            load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise PrimeError(
                f"unknown {self.kind} {name!r}; known: {known} (one of your own: import the "
                "module that registers it, on the command line with --import MODULE)"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
