"""Which language a text is in, as far as prompts, refusals and BM25 tokenisation care: Chinese or English."""

from __future__ import annotations

import re

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def cjk_share(text: str) -> float:
    """Share of the letters of `text` that are CJK characters (0.0 without letters)."""
    letters = sum(ch.isalpha() for ch in text)
    return len(CJK.findall(text)) / letters if letters else 0.0


def detect_language(text: str) -> str:
    """"zh" when at least 30% of the letters are CJK characters, else "en".

    >>> detect_language("济州岛属于哪个国家？"), detect_language("Who ruled Normandy?")
    ('zh', 'en')
    """
    return "zh" if cjk_share(text) >= 0.3 else "en"
