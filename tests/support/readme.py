"""The README's fenced code blocks, which tests run or check as printed."""

from __future__ import annotations

import re

from tests.support.processes import REPO

FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    """The bodies of README.md's ```LANGUAGE blocks, in order."""
    text = (REPO / "README.md").read_text()
    return [body for lang, body in FENCE.findall(text) if lang == language]
