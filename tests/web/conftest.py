"""Fixtures of the web tests: a small region (street → community → grids) with households, members and
links in the test database, and one account per role."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

PASSWORD = "correct-horse-9"
XSS_NAME = "<img src=x onerror=alert(1)>"
ACCOUNTS = {  # username: (role, regions, member)
    "leader1": ("leader", ["S1"], None),
    "planner1": ("planner", ["S1"], None),
    "resp1": ("responder", ["C1"], "M1"),
    "admin1": ("admin", ["*"], None),
    "disp1": ("dispatcher", ["S1"], None),
    "leader2": ("leader", ["S2"], None),
}

_SQUARE = "MULTIPOLYGON((({x0} 31.20, {x1} 31.20, {x1} 31.21, {x0} 31.21, {x0} 31.20)))"


def _h3(lat: float, lon: float) -> int:
    import h3

    return h3.str_to_int(h3.latlng_to_cell(lat, lon, 10))


def seed_region(engine) -> None:
    """Street S1 (外滩街道) → community C1 (中山社区) → grids G1, G2; street S2 with grid G9; households
    H1–H3 in G1 (H1 named with an XSS payload), member M1 linked to H1 and H2."""
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO streets (code, name, geom) VALUES "
                          "('S1', '外滩街道', ST_GeomFromText(:a, 4326)), ('S2', '南京东路街道', ST_GeomFromText(:b, 4326))"),
                  {"a": _SQUARE.format(x0=121.48, x1=121.50), "b": _SQUARE.format(x0=121.50, x1=121.52)})
        c.execute(sa.text("INSERT INTO communities (code, name, street_code, geom) VALUES "
                          "('C1', '中山社区', 'S1', ST_GeomFromText(:a, 4326)), "
                          "('C9', '南京社区', 'S2', ST_GeomFromText(:b, 4326))"),
                  {"a": _SQUARE.format(x0=121.48, x1=121.50), "b": _SQUARE.format(x0=121.50, x1=121.52)})
        c.execute(sa.text("INSERT INTO grids (grid_code, name, community_code, kind, has_branch, geom) VALUES "
                          "('G1', '第一网格', 'C1', 'urban', true, ST_GeomFromText(:a, 4326)), "
                          "('G2', '第二网格', 'C1', 'urban', false, ST_GeomFromText(:b, 4326)), "
                          "('G9', '南京网格', 'C9', 'urban', true, ST_GeomFromText(:c, 4326))"),
                  {"a": _SQUARE.format(x0=121.48, x1=121.49), "b": _SQUARE.format(x0=121.49, x1=121.50),
                   "c": _SQUARE.format(x0=121.50, x1=121.52)})
        for hid, name, x in (("H1", XSS_NAME, 121.481), ("H2", "张三", 121.482), ("H3", "李四", 121.483)):
            c.execute(sa.text("INSERT INTO households (household_id, grid_code, name, phone, h3, geom) VALUES "
                              "(:h, 'G1', :n, '13812341234', :cell, ST_SetSRID(ST_MakePoint(:x, 31.205), 4326))"),
                      {"h": hid, "n": name, "x": x, "cell": _h3(31.205, x)})
        c.execute(sa.text("INSERT INTO members (member_id, grid_code, name, h3, geom) VALUES "
                          "('M1', 'G1', '王五', :cell, ST_SetSRID(ST_MakePoint(121.4815, 31.2052), 4326))"),
                  {"cell": _h3(31.2052, 121.4815)})
        run = c.execute(sa.text("INSERT INTO link_runs (region, params, summary, is_current) "
                                "VALUES ('C1', '{}', '{}', true) RETURNING run_id")).scalar_one()
        c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id, distance_m, visit_order) VALUES "
                          "(:r, 'H1', 'M1', 50, 1), (:r, 'H2', 'M1', 80, 2)"), {"r": run})


@pytest.fixture()
def web_db(engine):
    """The test database, emptied, with the seeded region and one account per role."""
    from geodata.store import users

    seed_region(engine)
    for name, (role, regions, member) in ACCOUNTS.items():
        users.create_user(engine, name, PASSWORD, role, regions, member_id=member)
    return engine


@pytest.fixture()
def client(web_db, db_url):
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(db_url), follow_redirects=False) as c:
        yield c


def csrf_from(html: str) -> str:
    """The CSRF token of the first form in a page."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, username: str, password: str = PASSWORD):
    """Log in through the form; returns the POST /login response."""
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_from(page.text)})
