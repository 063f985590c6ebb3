"""The one "usable address" rule of ``predict`` and ``serve``: at most ``--max-input-chars`` characters, and a
letter or digit once the prompt prefix is stripped (``[]`` or ``【】`` alone has nothing to complete, and the
model's answer to it is noise). Each command phrases the refusal in its own frame (an argument, a record, a
line, a request field) around the phrase returned here.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from ..data.prompt import has_address_text

TOO_LONG, NO_TEXT = "too_long", "no_text"


class AddressProblem(NamedTuple):
    """Why an input is no usable address: ``kind`` (:data:`TOO_LONG` or :data:`NO_TEXT`) and ``phrase``, the
    predicate after the input's name ("has 300 characters; the limit is 256")."""

    kind: str
    phrase: str


def address_problem(text: str, limit: int) -> Optional[AddressProblem]:
    """None when ``text`` is a usable address under a ``limit`` of characters, else what is wrong with it (the
    length is checked first: a long input is refused whatever it holds)."""
    if len(text) > limit:
        return AddressProblem(TOO_LONG, f"has {len(text)} characters; the limit is {limit}")
    if not has_address_text(text):
        return AddressProblem(NO_TEXT, "has no letter or digit: nothing to complete")
    return None
