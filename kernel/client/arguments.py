"""A task's call signature, cached per class: sends check their arguments against it."""

from __future__ import annotations

import inspect

_SIGNATURES: dict[type, inspect.Signature] = {}
ARITIES: dict[type, tuple[int, int] | None] = {}


def signature_of(cls: type) -> inspect.Signature:
    """The call signature of a task's run(), cached per class (checked on every send)."""
    found = _SIGNATURES.get(cls)
    if found is None:
        raw = inspect.getattr_static(cls, "run")
        if isinstance(raw, staticmethod):  # a plain function: every parameter is the caller's
            found = inspect.signature(raw.__func__)
        else:  # a method, or a bound task's function: the first parameter is the task
            full = inspect.signature(raw)
            found = full.replace(parameters=list(full.parameters.values())[1:])
        _SIGNATURES[cls] = found
        ARITIES[cls] = _arity(found)
    return found


def _arity(signature: inspect.Signature) -> tuple[int, int] | None:
    """(fewest, most) positional arguments, for a signature of plain positional parameters."""
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(signature.parameters.values())
    if any(p.kind not in plain for p in params):
        return None
    required = sum(p.default is inspect.Parameter.empty for p in params)
    return required, len(params)
