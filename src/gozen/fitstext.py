"""Text that may go into a FITS header card: printable ASCII only (FITS standard 4.0, section 4.2.1).

Header values enter gozen from recipes, the CLI, alert feeds and monitors. Where a person typed
them they are checked (`fits_text_problem`) and refused with the field named; where a machine
made them (an alert title) they are transliterated (`to_fits_text`): "Île" -> "Ile", "彗星" -> "??".
"""

from __future__ import annotations

import unicodedata

# Printable ASCII: space (0x20) to tilde (0x7E).
_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))


def fits_text_problem(text: str) -> str | None:
    """Why `text` cannot be a FITS header string, or None if it can."""
    for i, ch in enumerate(text):
        if ch not in _PRINTABLE:
            return f"must be printable ASCII for the FITS header; character {i + 1} is {_describe(ch)}"
    return None


def to_fits_text(text: str, replacement: str = "?") -> str:
    """`text` as printable ASCII: accents dropped (NFKD), other characters replaced, controls removed."""
    out = []
    for ch in unicodedata.normalize("NFKD", text):
        if ch in _PRINTABLE:
            out.append(ch)
        elif unicodedata.combining(ch):
            continue
        elif ch in "\t\n\r":
            out.append(" ")
        elif unicodedata.category(ch).startswith("C"):
            continue
        else:
            out.append(replacement)
    return "".join(out)


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")
