"""A small name -> object registry for things that register themselves (recipes, objectives):
no inheritance tree, no closed dict."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``register`` adds an object under a name (the same object again is fine, another one is an
    error); ``get`` finds it, and an unknown name lists the known ones. ``error``: the exception
    type raised, a ValueError subclass."""

    def __init__(self, kind: str, error: type[ValueError] = ValueError):
        self.kind, self.error = kind, error
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        known = self._entries.get(name)
        if known is not None and known is not entry:
            raise self.error(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]
