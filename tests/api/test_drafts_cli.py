"""``gridmap validate`` / ``import`` read the right Excel sheet: a 说明 sheet first is skipped, ``--sheet``
chooses one, and an unknown sheet is refused naming the sheets there are."""

from __future__ import annotations

from openpyxl import Workbook
from typer.testing import CliRunner

from geodata.errors import InputError


def _workbook(path):
    book = Workbook()
    book.active.title = "说明"
    book.active.append(["本表为某社区住户花名册，请勿修改表头。"])
    sheet = book.create_sheet("住户")
    sheet.append(["户编号", "经度", "纬度"])
    sheet.append(["H1", 121.485, 31.205])
    sheet.append(["H2", 121.486, 31.206])
    book.save(path)
    return path


def test_validate_skips_the_instructions_sheet_and_takes_sheet(tmp_path):
    from api.cli import app

    path = _workbook(tmp_path / "住户花名册.xlsx")
    r = CliRunner().invoke(app, ["validate", "households", str(path)])
    assert r.exit_code == 0, r.output
    assert "2 households rows pass" in r.output and "住户" in r.output  # the note names the sheet read
    r = CliRunner().invoke(app, ["validate", "households", str(path), "--sheet", "住户"])
    assert r.exit_code == 0 and "2 households rows pass" in r.output
    r = CliRunner().invoke(app, ["validate", "households", str(path), "--sheet", "名单"])
    assert isinstance(r.exception, InputError) and "说明, 住户" in str(r.exception)
