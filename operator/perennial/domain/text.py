"""Text that people and scripts write (annotations, API messages) made to fit the fields it is shown in."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters; a cut one ends with an ellipsis that says so."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def shorten_bytes(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes (Go's ``len``), never splitting a character."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    room = limit - len(ELLIPSIS.encode())
    return encoded[:room].decode(errors="ignore") + ELLIPSIS
