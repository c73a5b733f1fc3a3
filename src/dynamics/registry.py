"""A name -> constructor mapping whose lookup error lists the valid names."""

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from dynamics.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Registry of one kind of component (models, data sets, optimizers, ...).

    ``key`` is the config key that selects an entry, used in error messages.
    """

    def __init__(self, kind: str, key: str):
        self.kind = kind
        self.key = key
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(
                f"{self.key}={name!r} is not a known {self.kind}: allowed {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
