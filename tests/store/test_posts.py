"""Members' service posts (先锋地图) in the real PostGIS: imported all or nothing with problems named by row
and column; the public view carries a member's name only where they chose to show it, and never a home point."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.store.test_needs import add_members
from tests.web.conftest import seed_region

pytestmark = pytest.mark.db

# Members' homes (members.geom) are at 121.4830/31.2055 (M2) and 121.4990/31.2090 (M3); posts lie elsewhere.
POSTS = [
    {"post_id": "P1", "member_id": "M2", "kind": "党员示范岗", "title": "法律咨询岗", "show_name": "是",
     "skills": "法律,维修", "lon": 121.4850, "lat": 31.2070},
    {"post_id": "P2", "member_id": "M3", "kind": "服务站点", "title": "社区卫生服务点", "show_name": "否",
     "skills": "医疗", "grid_code": "G2", "lon": 121.4950, "lat": 31.2030},
]


def write_posts(tmp_path, rows=POSTS, name="posts.geojson"):
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                 "properties": {k: v for k, v in r.items() if k not in ("lon", "lat")}} for r in rows]
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), "utf-8")
    return path


@pytest.fixture()
def posts_region(engine):
    seed_region(engine)
    add_members(engine)
    return engine


def post_rows(engine):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT post_id, member_id, show_name, skills, grid_code, ST_AsText(geom) FROM posts "
                                 "ORDER BY post_id")).all()


def test_import_then_public_view_hides_unchosen_names_and_homes(posts_region, tmp_path):
    from geodata.store import posts

    assert posts.import_posts(posts_region, posts.read_posts(write_posts(tmp_path))) == 2
    shown = {p["post_id"]: p for p in posts.public_posts(posts_region)}
    assert shown["P1"]["name"] == "赵M2" and shown["P1"]["skills"] == ["法律", "维修"]
    assert shown["P1"]["grid_code"] == "G1" and shown["P1"]["grid_name"] == "第一网格"  # grid from the point
    assert shown["P2"]["name"] is None and shown["P2"]["grid_code"] == "G2"
    assert (shown["P1"]["lon"], shown["P1"]["lat"]) == (121.4850, 31.2070)
    text = json.dumps(posts.public_posts(posts_region), ensure_ascii=False)
    for hidden in ("赵M3", "M3", "member_id", "13900000000", "121.483", "121.499"):
        assert hidden not in text
    assert [g["grid_code"] for g in posts.served_grids(posts_region)] == ["G1", "G2"]


def test_a_bad_file_names_rows_and_columns_and_changes_nothing(posts_region, tmp_path):
    from geodata.errors import InputError
    from geodata.store import posts

    posts.import_posts(posts_region, posts.read_posts(write_posts(tmp_path)))
    before = post_rows(posts_region)
    bad = [dict(POSTS[0], title="改名"), dict(POSTS[1], show_name="也许", member_id="NOPE", kind="食堂"),
           {"post_id": "P3", "kind": "服务站点", "title": "", "lon": 121.49, "lat": 31.205}]
    with pytest.raises(InputError) as e:
        posts.import_posts(posts_region, posts.read_posts(write_posts(tmp_path, bad)))
    where = {(p.row, p.column) for p in e.value.problems}
    assert where == {(2, "show_name"), (2, "kind"), (3, "title")}
    assert post_rows(posts_region) == before  # P1 not renamed either: all or nothing
    unknown = [dict(POSTS[1], member_id="NOPE")]
    with pytest.raises(InputError) as e:
        posts.import_posts(posts_region, posts.read_posts(write_posts(tmp_path, unknown)))
    assert [(p.row, p.column) for p in e.value.problems] == [(1, "member_id")]
    assert post_rows(posts_region) == before


def test_csv_with_chinese_headers_and_gcj02(posts_region, tmp_path):
    from geodata.store import posts

    path = tmp_path / "posts.csv"
    path.write_text("编号,类型,名称,公开姓名,技能,经度,纬度\nP9,服务站点,便民服务站,否,维修、助老,121.4896,31.2031\n",
                    "utf-8")
    assert posts.import_posts(posts_region, posts.read_posts(path, coords="gcj02")) == 1
    p9 = posts.public_posts(posts_region)[0]
    assert p9["skills"] == ["维修", "助老"] and p9["name"] is None
    assert abs(p9["lon"] - 121.4851) < 0.001 and abs(p9["lat"] - 31.2051) < 0.001  # GCJ-02 shift undone
