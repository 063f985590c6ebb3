"""The one "usable address" rule of ``predict`` and ``serve``: at most ``--max-input-chars`` characters, and a
letter or digit once the prompt prefix is stripped (the prefix alone is named as such) (``[]`` or ``【】`` alone has nothing to complete, and the
model's answer to it is noise). Each command phrases the refusal in its own frame (an argument, a record, a
line, a request field) around the phrase returned here.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from ..data.prompt import has_address_text, strip_prefix

TOO_LONG, PREFIX_ONLY, NO_TEXT = "too_long", "prefix_only", "no_text"


class AddressProblem(NamedTuple):
    """Why an input is no usable address: ``kind`` (:data:`TOO_LONG`, :data:`PREFIX_ONLY` or :data:`NO_TEXT`) and
    ``phrase``, the predicate after the input's name ("has 300 characters; the limit is 256")."""

    kind: str
    phrase: str


def address_problem(text: str, limit: int) -> Optional[AddressProblem]:
    """None when ``text`` is a usable address under a ``limit`` of characters, else what is wrong with it (the
    length is checked first: a long input is refused whatever it holds).

    ``text`` is the input as it arrived (it may carry the prompt prefix, which counts towards the limit): this
    check is where predict and serve first read it, so the prefix is stripped here for the checks that follow."""
    if len(text) > limit:
        return AddressProblem(TOO_LONG, f"has {len(text)} characters; the limit is {limit}")
    address = strip_prefix(text)
    if not address:  # the prompt's prefix alone would read as "no letter or digit"
        return AddressProblem(PREFIX_ONLY, "is the prompt prefix alone: nothing to complete")
    if not has_address_text(address):
        return AddressProblem(NO_TEXT, "has no letter or digit: nothing to complete")
    return None
