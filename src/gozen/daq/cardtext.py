"""Whether a string can be the value of one FITS header card, and how to make it one.

Where a person typed a value (a recipe, `gozen daq expose`) it is refused with the reason
(`card_text_problem`); the writer, which must never stop on a header, makes any value fit
(`as_card_text`).
"""

from __future__ import annotations

from gozen.fitstext import fits_text_problem, to_fits_text

# A card is 80 characters; a string value starts in column 11 inside quotes, so 68 are left
# (FITS standard 4.0, section 4.2.1.1). A quote inside it is written twice.
MAX_CARD_TEXT = 68


def card_text_problem(text: str) -> str | None:
    """Why `text` cannot be one FITS card's string value, or None if it can."""
    problem = fits_text_problem(text)
    if problem is not None:
        return problem
    n = len(text.replace("'", "''"))
    if n > MAX_CARD_TEXT:
        return f"too long for a FITS header card: {n} characters, at most {MAX_CARD_TEXT} (a quote counts twice)"
    return None


def as_card_text(text: str) -> str:
    """`text` transliterated to printable ASCII and cut to fit one card."""
    out = to_fits_text(text)
    while len(out.replace("'", "''")) > MAX_CARD_TEXT:
        out = out[:-1]
    return out
