"""Children the operator converges: does what exists still say what Perennial asks for?

Children are applied server-side (field manager ``perennial``): the operator owns exactly
the fields it sends, and other managers (an HPA's ``replicas``, another controller's
annotations) keep theirs. A child needs an apply when one of *those* fields differs; the
live object's extra fields (API defaults, other owners' fields) are not a difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def differs(observed: Any, desired: Any) -> bool:
    """Whether ``observed`` fails to contain ``desired``.

    Objects: every key of ``desired`` must be in ``observed`` with a matching value (extra
    keys in ``observed`` are defaults or other owners' fields). Lists: same length, item by
    item (the operator owns its lists whole: containers, env, ports). Scalars: equal.
    """
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return True
        return any(key not in observed or differs(observed[key], value) for key, value in desired.items())
    if isinstance(desired, Sequence) and not isinstance(desired, str):
        if not isinstance(observed, Sequence) or isinstance(observed, str) or len(observed) != len(desired):
            return True
        return any(differs(o, d) for o, d in zip(observed, desired, strict=True))
    return bool(observed != desired)


def controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether ``obj`` names ``owner_uid`` as its controlling owner (what Perennial created)."""
    return any(
        o.get("uid") == owner_uid and o.get("controller") for o in obj.get("metadata", {}).get("ownerReferences") or []
    )
