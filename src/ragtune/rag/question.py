"""A question as it arrives (HTTP body, command line) made safe for the pipeline, or refused with a reason.

    q = clean_question(raw, max_chars=2000)        # QuestionError (a ValueError) when nothing usable is left
    budget = PromptBudget(answerer)                # once; then from any thread:
    budget.check(q)                                # QuestionError when the question alone exceeds the prompt budget

Cleaning drops what no tokenizer should see: lone surrogates (JSON can carry "\\ud800"; it cannot be encoded as
UTF-8), noncharacters and control characters other than tab and newline. The budget check renders the answerer's
prompt with no context: if even that does not fit `max_prompt_tokens`, no retrieval can help.
"""

from __future__ import annotations

import copy
import re
import unicodedata

_UNWANTED = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # surrogates, nonchars, C0/C1
)


class QuestionError(ValueError):
    """A question the pipeline cannot take; the message says why (the HTTP API answers 422)."""


def clean_question(text: str, max_chars: int | None = None) -> str:
    """`text` without invalid code points and control characters, NFC-normalised and stripped."""
    cleaned = unicodedata.normalize("NFC", _UNWANTED.sub("", text)).strip()
    if not cleaned:
        what = "empty" if not text.strip() else "empty once invalid characters are removed"
        raise QuestionError(f'the question is {what}; send {{"question": "your question"}}')
    if max_chars is not None and len(cleaned) > max_chars:
        raise QuestionError(f"the question has {len(cleaned):,} characters; the limit is {max_chars:,}")
    return cleaned


class PromptBudget:
    """Whether a question alone fits the answerer's prompt budget, counted with a private copy of its tokenizer:
    the answerer's own is in use by worker threads, and a fast tokenizer must not be shared between threads while
    one of them sets padding."""

    def __init__(self, answerer):
        self.answerer, self.tokenizer = answerer, copy.deepcopy(answerer.tokenizer)

    def check(self, question: str, language: str | None = None) -> None:
        from ragtune.data.language import detect_language

        text = self.answerer.render(question, [""], language or detect_language(question))
        n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if n > self.answerer.max_prompt_tokens:
            raise QuestionError(
                f"the question alone makes a prompt of {n:,} tokens; the answerer takes "
                f"{self.answerer.max_prompt_tokens:,} (answerer.max_prompt_tokens)"
            )
