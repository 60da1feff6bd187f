"""Exceptions the kernel raises; each message is fit to print as one line."""

from __future__ import annotations

from collections.abc import Sequence


class KernelError(Exception):
    """Base class of every error the kernel raises on purpose."""


class UsageError(KernelError):
    """A mistake in what the user asked for: exits with status 2 from the CLI."""


class ConfigError(UsageError):
    """A setting or option that is unknown or has a bad value: ``ConfigError(key, message)``
    prints as "setting 'key': message"; ``ConfigError(message)`` names no key."""

    def __init__(self, key: str, message: str | None = None) -> None:
        self.key: str | None = key if message is not None else None
        super().__init__(key if message is None else f"setting {key!r}: {message}")


class PluginError(UsageError):
    """A plugin that cannot be found, is blocked, or breaks the hook contract."""


class GraphError(UsageError):
    """The bootstep graph cannot be resolved."""


class CycleError(GraphError):
    """Steps that require each other in a loop."""

    def __init__(self, members: Sequence[str]) -> None:
        self.members = list(members)
        loop = " -> ".join([*self.members, self.members[0]])
        super().__init__(f"bootstep cycle: {loop} (each needs the next started first)")


class MissingRoleError(GraphError):
    """A step requires a role or step that nothing enabled provides."""

    def __init__(self, step: str, role: str, hint: str | None) -> None:
        self.step, self.role = step, role
        text = f"step {step!r} requires {role!r}, which no enabled plugin provides"
        super().__init__(f"{text}; {hint}" if hint else text)


class DuplicateProviderError(GraphError):
    """Two enabled steps provide the same role."""

    def __init__(self, role: str, providers: Sequence[str]) -> None:
        self.role, self.providers = role, sorted(providers)
        names = " and ".join(repr(p) for p in self.providers)
        super().__init__(f"role {role!r} is provided by both {names}; enable only one")


class StepStartError(KernelError):
    """A bootstep failed to start; the steps started before it were stopped again."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step, self.cause = step, cause
        super().__init__(f"step {step!r} failed to start: {type(cause).__name__}: {cause}")
