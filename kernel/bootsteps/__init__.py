"""The bootstep contract: configured attrs classes that start and stop in graph order."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import attrs

from ..errors import ConfigError
from ..settings import Settings, declared_by, field_keys

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..lifecycle import Node

T = TypeVar("T")


class ServiceKey(Generic[T]):
    """A typed name under which one step shares an object with the steps that require it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ServiceKey({self.name!r})"


class Services:
    """The worker's typed service registry (`worker.services[POOL]`)."""

    def __init__(self) -> None:
        self._items: dict[ServiceKey[Any], Any] = {}

    def __getitem__(self, key: ServiceKey[T]) -> T:
        try:
            return cast(T, self._items[key])
        except KeyError:
            raise KeyError(
                f"no service {key.name!r} yet; is the step providing it enabled?"
            ) from None

    def __setitem__(self, key: ServiceKey[T], value: T) -> None:
        self._items[key] = value

    def __contains__(self, key: ServiceKey[Any]) -> bool:
        return key in self._items

    def get(self, key: ServiceKey[T], default: T | None = None) -> T | None:
        return cast("T | None", self._items.get(key, default))

    def pop(self, key: ServiceKey[T], default: T | None = None) -> T | None:
        return cast("T | None", self._items.pop(key, default))

    def __iter__(self) -> Iterator[ServiceKey[Any]]:
        return iter(self._items)


@attrs.define(kw_only=True)
class Step:
    """One component of a worker.

    Subclasses are attrs classes whose `setting()` fields are their validated configuration.
    Ordering is declared, never implied by registration order:

    * ``name``: unique step name;
    * ``provides``: roles this step fills (``"pool"``, ``"broker"``, ...); one provider per role;
    * ``requires``: roles or step names that must start before this one (an error if missing);
    * ``after`` / ``before``: soft ordering against steps or roles that may be absent;
    * ``start_last``: start after every step not ordered after this one (the consumer: the
      steps of policies start before work flows, and stop after it has stopped).

    ``start`` runs in graph order, ``stop`` (graceful: drain) in reverse; ``terminate`` (urgent)
    replaces ``stop`` on a cold shutdown and must not raise.
    """

    name: ClassVar[str] = ""
    provides: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()
    after: ClassVar[tuple[str, ...]] = ()
    before: ClassVar[tuple[str, ...]] = ()
    start_last: ClassVar[bool] = False

    def start(self, worker: Node) -> None:
        """Acquire resources and publish services; raise to abort the worker's start."""

    def stop(self, worker: Node) -> None:
        """Stop gracefully: finish in-flight work, then release resources."""

    def terminate(self, worker: Node) -> None:
        """Stop now, abandoning in-flight work. Defaults to `stop`."""
        self.stop(worker)

    def describe(self) -> str:
        """A short note shown next to the step in the banner and `kernel graph`."""
        return ""

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Self:
        """Build the step from explicit settings, naming the key of any value that is refused."""
        values = settings.explicit() if isinstance(settings, Settings) else settings
        fields = field_keys(cls)
        kwargs = {
            fields[item.key]: item.coerce(values[item.key])
            for item in declared_by(cls)
            if item.key in values
        }
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # an attrs validator beyond the converters
            raise ConfigError(cls.name, str(exc)) from None


__all__ = ["ServiceKey", "Services", "Step"]
