from __future__ import annotations

import pytest

from gateway.errors import NotFound
from gateway.http.paths import parse_version


def test_versions_in_urls_are_canonical_positive_integers() -> None:
    assert parse_version("12") == 12
    assert parse_version("9" * 18) == int("9" * 18)  # fits an int64, as Triton's versions
    for text in ("0", "01", "-1", "1.0", "one", "9" * 19, "³", "١٢", "1\n", "٣", "²"):
        with pytest.raises(NotFound):
            parse_version(text)
