"""Declared settings: how values given as text or Python are checked, converted and layered."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

import attrs

from .errors import ConfigError

Converter = Callable[[Any], Any]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def identity(value: Any) -> Any:
    return value


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None


def to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def to_str_list(value: Any) -> list[str]:
    """Accept a list of strings or one comma-separated string (as typed on a command line)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Iterable) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def to_dict(value: Any) -> dict[str, Any]:
    """Accept a mapping, or a JSON object given as text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"expected a JSON object, got {value!r}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping, got {value!r}")
    return dict(value)


def optional(convert: Converter) -> Converter:
    """Let None (or the text 'none') through; convert anything else."""

    def convert_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return convert(value)

    return convert_optional


def at_least(minimum: float, convert: Converter = to_int) -> Converter:
    """A number (converted by `convert`, an integer by default) no smaller than `minimum`."""

    def convert_bounded(value: Any) -> Any:
        number = convert(value)
        if number < minimum:
            raise ValueError(f"expected a number of at least {minimum:g}, got {value!r}")
        return number

    return convert_bounded


def one_of(*choices: str) -> Converter:
    """A string that must be one of `choices`."""

    def convert_choice(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {value!r}")
        return str(value)

    return convert_choice


@attrs.frozen
class Setting:
    """One declared setting: its key, default, converter and help text."""

    key: str
    default: Any = None
    convert: Converter = identity
    help: str = ""
    owner: str = "core"

    def coerce(self, value: Any) -> Any:
        try:
            return self.convert(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(self.key, str(exc)) from None


_META = "kernel.setting"


def setting(
    default: Any = None, *, convert: Converter = identity, help: str = "", key: str | None = None
) -> Any:
    """Declare a bootstep's attrs field as a setting (keyed by the field name unless `key`).

    `convert` checks and converts a value somebody gave; the default is taken as written (a
    step may default to None where any given value must be a number, say)."""

    def convert_given(value: Any) -> Any:
        return value if value is default else convert(value)

    return attrs.field(
        default=default,
        converter=convert_given,
        metadata={_META: {"convert": convert, "help": help, "key": key}},
    )


def declared_by(cls: type, owner: str = "") -> list[Setting]:
    """The settings an attrs class (a bootstep) declares through `setting()` fields."""
    found = []
    for field in attrs.fields(cls):
        meta = field.metadata.get(_META)
        if meta is None:
            continue
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        found.append(
            Setting(
                key=meta["key"] or field.name,
                default=default,
                convert=meta["convert"],
                help=meta["help"],
                owner=owner,
            )
        )
    return found


def field_keys(cls: type) -> dict[str, str]:
    """Map each setting key an attrs class declares to the field that receives it."""
    return {
        (field.metadata[_META]["key"] or field.name): field.name
        for field in attrs.fields(cls)
        if _META in field.metadata
    }


class Settings(MutableMapping[str, Any]):
    """Explicit values layered over declared defaults, readable as attributes.

    Anything may be set; `validate()` refuses keys nobody declared and values a converter rejects,
    naming the key, so mistakes surface when a worker starts rather than when a task runs.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_declared", {})
        object.__setattr__(self, "_values", dict(values or {}))
        object.__setattr__(self, "version", 0)  # bumped on every change, for caches

    # declarations --------------------------------------------------------------------------
    def declare(self, settings: Iterable[Setting]) -> None:
        for item in settings:
            self._declared.setdefault(item.key, item)

    def declared(self) -> Mapping[str, Setting]:
        return dict(self._declared)

    def explicit(self) -> dict[str, Any]:
        """Only the values somebody set, without defaults."""
        return dict(self._values)

    def coerce_declared(self) -> None:
        """Convert explicit values of declared keys in place (unknown keys wait for `validate`)."""
        for key, value in list(self._values.items()):
            if key in self._declared:
                self._values[key] = self._declared[key].coerce(value)
        object.__setattr__(self, "version", self.version + 1)

    def validate(self, hint: Callable[[str], str | None] | None = None) -> None:
        """Convert every explicit value in place; ConfigError for an unknown key or a bad value."""
        for key, value in list(self._values.items()):
            item = self._declared.get(key)
            if item is None:
                raise ConfigError(key, self._unknown(key, hint))
            self._values[key] = item.coerce(value)
        object.__setattr__(self, "version", self.version + 1)

    def _unknown(self, key: str, hint: Callable[[str], str | None] | None) -> str:
        extra = hint(key) if hint else None
        if extra:
            return f"unknown setting; {extra}"
        close = difflib.get_close_matches(key, list(self._declared), n=3)
        if close:
            return "unknown setting; did you mean " + " or ".join(repr(c) for c in close) + "?"
        return "unknown setting"

    def copy(self) -> Settings:
        clone = Settings(self._values)
        clone.declare(self._declared.values())
        return clone

    # mapping protocol ----------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        if key in self._declared:
            return self._declared[key].default
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value
        object.__setattr__(self, "version", self.version + 1)

    def __delitem__(self, key: str) -> None:
        del self._values[key]
        object.__setattr__(self, "version", self.version + 1)

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self._declared), **self._values})

    def __len__(self) -> int:
        return len(set(self._declared) | set(self._values))

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __repr__(self) -> str:
        return f"<Settings {self._values!r}>"
