"""Children the operator converges: does what exists still say what Perennial asks for?

Children are applied server-side (field manager ``perennial``): the operator owns exactly
the fields it sends, and other managers (an HPA's ``replicas``, another controller's
annotations) keep theirs. A child needs an apply when one of *those* fields differs; the
live object's extra fields (API defaults, other owners' fields) are not a difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def first_difference(observed: Any, desired: Any, path: str = "") -> str | None:
    """Where ``observed`` fails to contain ``desired`` (a dotted path, ``""`` for the top), or None.

    Objects: every key of ``desired`` must be in ``observed`` with a matching value (extra
    keys in ``observed`` are defaults or other owners' fields); an empty or null value
    matches an absent key, as the API server drops empty maps and lists (``omitempty``):
    otherwise a pod template without annotations would be applied again on every pass.
    Lists: same length, item by item (the operator owns its lists whole: containers, env,
    ports). Scalars: equal. The path is logged with each apply, so an apply that repeats
    names the field that keeps differing.
    """
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return path
        for key, value in desired.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in observed:
                if value is None or (isinstance(value, Mapping | list | tuple) and not value):
                    continue
                return where
            found = first_difference(observed[key], value, where)
            if found is not None:
                return found
        return None
    if isinstance(desired, Sequence) and not isinstance(desired, str):
        if not isinstance(observed, Sequence) or isinstance(observed, str) or len(observed) != len(desired):
            return path
        for index, (o, d) in enumerate(zip(observed, desired, strict=True)):
            found = first_difference(o, d, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return None if observed == desired else path


def differs(observed: Any, desired: Any) -> bool:
    """Whether ``observed`` fails to contain ``desired`` (``first_difference`` finds where)."""
    return first_difference(observed, desired) is not None


def controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether ``obj`` names ``owner_uid`` as its controlling owner (what Perennial created)."""
    return any(
        o.get("uid") == owner_uid and o.get("controller") for o in obj.get("metadata", {}).get("ownerReferences") or []
    )
