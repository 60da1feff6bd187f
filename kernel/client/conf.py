"""An app's settings: Celery's names known, a source read at first use, set values winning."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..settings import Setting, Settings
from .accepted import CELERY_OWNER, placeholders
from .celery_settings import OLD_NAMES
from .config import CORE_SETTINGS

Source = Callable[[], Mapping[str, Any]]


def app_conf() -> Conf:
    """Settings for an app: the core's, and every other Celery name as a placeholder."""
    conf = Conf()
    conf.declare(CORE_SETTINGS)
    conf.declare(placeholders({item.key for item in CORE_SETTINGS}))
    return conf


class Conf(Settings):
    """Settings as a Celery app keeps them.

    * A declaration from Celery's list (owner "celery") gives way to one by the code that
      honours the setting: a plugin enabled later declares it with its own converter.
    * Values set on the app itself (``App(**settings)``, ``conf[key] = ...``, ``conf.update``,
      ``-s`` on the command line) win over those of a configuration source, whichever came
      first; a new source replaces the previous source's values (both as in Celery).
    * A source is read when a setting is first looked at (see `read_from`).
    * Celery's old upper-case names may be set too: they are stored under the new ones.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_direct", set())  # keys set on the app itself
        object.__setattr__(self, "_sourced", set())  # keys the last source read gave
        object.__setattr__(self, "_source", None)  # a source not read yet
        object.__setattr__(self, "_lock", threading.RLock())
        self.update(values or {})

    def declare(self, settings: Iterable[Setting]) -> None:
        declared = self._declared
        for item in settings:
            held = declared.get(item.key)
            if held is None or (held.owner == CELERY_OWNER and item.owner != CELERY_OWNER):
                declared[item.key] = item

    def __setitem__(self, key: str, value: Any) -> None:
        key = OLD_NAMES.get(key, key)
        self._direct.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        key = OLD_NAMES.get(key, key)
        super().__delitem__(key)
        self._direct.discard(key)

    def read_from(self, source: Source, *, now: bool = False) -> None:
        """Take settings from `source` (a function returning them by their new names) in
        place of the previous source's: now, or when a setting is first looked at.

        Until then the object is a `_Pending`, whose reads load the source first; loading
        turns it back into a plain Conf, so reads cost nothing extra from then on."""
        with self._lock:
            object.__setattr__(self, "_source", source)
            object.__setattr__(self, "__class__", _Pending)
            object.__setattr__(self, "version", self.version + 1)  # caches must look again
        if now:
            self.load()

    def load(self) -> None:
        """Read the source `read_from` left pending, if any (errors are raised again at the
        next read until it loads)."""
        with self._lock:
            source = self._source
            if source is None:
                return  # loaded, or being loaded by this thread (a source reading settings)
            object.__setattr__(self, "_source", None)
            try:
                values = dict(source())
            except BaseException:
                object.__setattr__(self, "_source", source)
                raise
            for key in self._sourced - self._direct:
                self._values.pop(key, None)
            for key, value in values.items():
                if key not in self._direct:
                    self._values[key] = value
            object.__setattr__(self, "_sourced", set(values))
            object.__setattr__(self, "__class__", Conf)
            object.__setattr__(self, "version", self.version + 1)


class _Pending(Conf):
    """A Conf whose source is not read yet: anything that reads values reads it first.

    Loading turns the object into a plain Conf, so each method calls Conf's by name (a
    zero-argument super() would fail on an object no longer of this class)."""

    def __getitem__(self, key: str) -> Any:
        self.load()
        return Conf.__getitem__(self, key)

    def __iter__(self) -> Iterator[str]:
        self.load()
        return Conf.__iter__(
            self,
        )

    def __len__(self) -> int:
        self.load()
        return Conf.__len__(
            self,
        )

    def __delitem__(self, key: str) -> None:
        self.load()
        Conf.__delitem__(self, key)

    def explicit(self) -> dict[str, Any]:
        self.load()
        return Conf.explicit(
            self,
        )

    def coerce_declared(self) -> None:
        self.load()
        Conf.coerce_declared(
            self,
        )

    def validate(self, hint: Callable[[str], str | None] | None = None) -> None:
        self.load()
        Conf.validate(self, hint)

    def copy(self) -> Settings:
        self.load()
        return Conf.copy(
            self,
        )

    def __repr__(self) -> str:
        return f"<Settings {self._values!r} and a source not read yet>"
