"""A generic name-keyed registry: decorator registration, loud duplicates, helpful misses."""

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects of one kind (interpreters, zoo entries, ...).

    Registering a name twice raises (pass ``replace=True`` to override on purpose); looking up
    an unknown name raises with the list of valid names.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` registers the decorated object."""

        def decorate(obj: T) -> T:
            self.add(name, obj, replace=replace)
            return obj

        return decorate

    def add(self, name: str, obj: T, *, replace: bool = False) -> None:
        """Register ``obj`` under ``name``; a duplicate raises unless ``replace=True``."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._items and not replace:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered ({self._items[name]!r}); "
                f"choose another name or pass replace=True to override it on purpose"
            )
        self._items[name] = obj

    def remove(self, name: str) -> None:
        """Unregister ``name`` (raises if unknown)."""
        self[name]
        del self._items[name]

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none registered)"
            raise RegistryError(f"unknown {self.kind} {name!r}; expected one of: {valid}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def values(self) -> list[T]:
        """Registered objects in registration order (stable: replacing keeps the position)."""
        return list(self._items.values())
