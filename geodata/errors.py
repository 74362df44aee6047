"""Errors for bad input: each names the file, the row and the column, so a clerk can fix the sheet."""

from __future__ import annotations


class InputError(ValueError):
    """One or more problems in an input file or request.

    ``problems`` is a list of :class:`Problem`; ``str(error)`` lists them one per line, at most
    ``MAX_SHOWN`` of them (the rest are counted), e.g.
    ``households.csv row 12, column lon: 30.2 looks like a latitude (lon/lat swapped?)``.
    Rows are numbered as a person sees them in the file: the first data row is row 1. For CSV and
    Excel files each problem also carries ``sheet_row``, the row number the spreadsheet shows (data
    row + the header + any title rows above it), e.g. ``Excel row 3, data row 2, column phone``.
    """

    MAX_SHOWN = 20

    def __init__(self, problems, source: str | None = None):
        if isinstance(problems, (str, Problem)):
            problems = [problems]
        self.problems = [p if isinstance(p, Problem) else Problem(str(p), source=source) for p in problems]
        for p in self.problems:
            if p.source is None:
                p.source = source
        super().__init__(self._text())

    def _text(self) -> str:
        lines = [str(p) for p in self.problems[: self.MAX_SHOWN]]
        rest = len(self.problems) - self.MAX_SHOWN
        if rest > 0:
            lines.append(f"... and {rest} more problem(s)")
        return "\n".join(lines)


class Problem:
    """One problem: a message with where it is (file, 1-based row, column)."""

    __slots__ = ("message", "source", "row", "column", "sheet_row")

    def __init__(self, message: str, source: str | None = None, row: int | None = None, column: str | None = None,
                 sheet_row: int | None = None):
        self.message = message
        self.source = source
        self.row = row
        self.column = column
        self.sheet_row = sheet_row

    def where(self) -> str:
        parts = []
        if self.source:
            parts.append(str(self.source))
        if self.sheet_row is not None:
            parts.append(f"Excel row {self.sheet_row}, data row {self.row}")
        elif self.row is not None:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(f"column {self.column}")
        return ", ".join(parts)

    def __str__(self) -> str:
        w = self.where()
        return f"{w}: {self.message}" if w else self.message

    def as_dict(self) -> dict:
        return {"file": self.source, "row": self.row, "sheet_row": self.sheet_row, "column": self.column,
                "message": self.message}
