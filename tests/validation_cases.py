"""A CSV roster written from columns, shared by the geodata and API tiers' validation tests."""

import pandas as pd


def _csv(tmp_path, rows, name="households.csv"):
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p
