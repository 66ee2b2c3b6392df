from __future__ import annotations

import pytest

from perennial.domain.text import ELLIPSIS, shorten, shorten_bytes


@pytest.mark.parametrize("text", ["", "short", "x" * 10, "ü" * 11, "a\nb" * 50])
@pytest.mark.parametrize("limit", [1, 2, 10, 64])
def test_shorten_keeps_what_fits_and_marks_a_cut(text: str, limit: int) -> None:
    result = shorten(text, limit)
    assert len(result) <= limit
    if len(text) <= limit:
        assert result == text
    else:
        assert result.endswith(ELLIPSIS)
        assert text.startswith(result[: -len(ELLIPSIS)])


@pytest.mark.parametrize("text", ["ascii only" * 30, "ü" * 700, "再训练" * 400, "✓" + "a" * 2000])
def test_shorten_bytes_never_splits_a_character(text: str) -> None:
    result = shorten_bytes(text, 1024)
    assert len(result.encode()) <= 1024
    assert result.encode().decode() == result
    if len(text.encode()) > 1024:
        assert result.endswith(ELLIPSIS)
        assert text.startswith(result[: -len(ELLIPSIS)])
    else:
        assert result == text
