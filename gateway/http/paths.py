"""What a URL path names: a model version, as version folders name it."""

from __future__ import annotations

from gateway.errors import NotFound, shown
from gateway.runtime.repository import version_number


def parse_version(text: str) -> int:
    """A version from a URL: a positive integer written canonically, as version folders are."""
    version = version_number(text)
    if version is None:
        raise NotFound(f"version {shown(text, 20)} is not a version; versions are positive "
                       "integers written in ASCII digits")
    return version
