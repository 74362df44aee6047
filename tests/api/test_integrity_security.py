"""Issue 11 (findings 3, 4, 6 and the "also fix" list) and the settings wiring of issue 12, over HTTP
against a real PostGIS. Every refused request is checked to leave the tables as they were."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dispatch_cases import _pt, insert_members, load_areas
from test_route_security import _h, town  # noqa: F401  (fixture)

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parents[2]
TABLES = ("incidents", "incident_events", "members", "households", "grids", "audit_log")


def counts(engine) -> dict:
    with engine.connect() as c:
        return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}


def app_client(db_url, **settings):
    from api.app import create_app
    from api.settings import Settings

    return TestClient(create_app(Settings(database_url=db_url, **settings)))


@pytest.fixture()
def two_streets(db_url, engine):
    """S1 (grids G1–G3) and S2 (grid G4) with responders in G1 and G4, one S1 incident, tokens."""
    load_areas(engine)
    insert_members(engine, ["a1", "b1", "b-off", "b-nolaw"],
                   *zip(_pt(150, 150), _pt(2100, 100), _pt(2150, 100), _pt(2200, 100)),
                   [["法律"], ["法律"], ["法律"], ["医疗"]], [True, True, False, True], ["G1", "G4", "G4", "G4"])
    client = app_client(db_url)
    disp = _h(engine, "dispatcher", ["S1"])
    lon, lat = _pt(100, 100)
    r = client.post("/incidents", json={"lon": lon, "lat": lat, "category": "矛盾纠纷", "required_skill": "法律"},
                    headers=disp)
    assert r.status_code == 201, r.text
    return {"client": client, "engine": engine, "disp": disp, "iid": r.json()["incident_id"]}


# -- finding 3: dispatch across regions ------------------------------------------------------------------

def test_assigning_a_member_of_another_street_is_403_and_changes_nothing(two_streets):
    c, eng, disp, iid = (two_streets[k] for k in ("client", "engine", "disp", "iid"))
    before = counts(eng)
    r = c.post(f"/incidents/{iid}/assign", json={"member_id": "b1"}, headers=disp)
    assert r.status_code == 403, r.text
    missing = c.post(f"/incidents/{iid}/assign", json={"member_id": "nobody"}, headers=disp)
    assert missing.status_code == 403 and missing.json()["detail"] == r.json()["detail"].replace("b1", "nobody")
    assert counts(eng) == before
    assert c.get(f"/incidents/{iid}", headers=disp).json()["assigned_member_id"] is None
    # the responder of the other street can neither read nor accept it
    b1 = _h(eng, "responder", ["G4"], member="b1")
    assert c.get(f"/incidents/{iid}", headers=b1).status_code == 404
    assert c.post(f"/incidents/{iid}/accept", headers=b1).status_code == 404


def test_other_regions_members_are_one_404_whatever_their_state(two_streets):
    c, eng, disp, iid = (two_streets[k] for k in ("client", "engine", "disp", "iid"))
    before = counts(eng)
    texts = set()
    for member in ("nobody", "b-off", "b-nolaw"):
        r = c.post(f"/incidents/{iid}/assign", json={"member_id": member, "escalate": "街道无律师"}, headers=disp)
        assert r.status_code == 404, (member, r.text)
        texts.add(r.json()["detail"].replace(member, "X"))
        assert not re.search("not available|lacks|no member", r.text)
    assert len(texts) == 1
    assert counts(eng) == before


def test_escalation_assigns_outside_and_records_who_and_why(two_streets):
    c, eng, disp, iid = (two_streets[k] for k in ("client", "engine", "disp", "iid"))
    r = c.post(f"/incidents/{iid}/assign", json={"member_id": "b1", "escalate": "本街道律师均在外"}, headers=disp)
    assert r.status_code == 200, r.text
    assert r.json()["assigned_member_id"] == "b1" and r.json()["escalated"] is True
    with eng.connect() as conn:
        ev = conn.execute(sa.text("SELECT member_id, detail FROM incident_events WHERE incident_id = :i "
                                  "AND action = 'escalate'"), {"i": iid}).one()
        token_id = conn.execute(sa.text("SELECT max(token_id) FROM api_tokens WHERE role = 'dispatcher'")).scalar()
    assert ev.member_id == "b1"
    assert ev.detail["reason"] == "本街道律师均在外" and ev.detail["role"] == "dispatcher"
    assert ev.detail["token_id"] == token_id and ev.detail["member_grid"] == "G4"
    b1 = _h(eng, "responder", ["G4"], member="b1")  # the assigned responder may now read and accept it
    assert c.get(f"/incidents/{iid}", headers=b1).status_code == 200
    assert c.post(f"/incidents/{iid}/accept", headers=b1).status_code == 200


def test_default_assignment_stays_in_the_token_regions(two_streets):
    c, eng, iid = two_streets["client"], two_streets["engine"], two_streets["iid"]
    with eng.begin() as conn:
        conn.execute(sa.text("UPDATE members SET available = false WHERE member_id = 'a1'"))
    g1_only = _h(eng, "dispatcher", ["G1"])
    before = counts(eng)
    r = c.post(f"/incidents/{iid}/assign", headers=g1_only)
    assert r.status_code == 409 and "b1" not in r.text, r.text
    assert counts(eng) == before


# -- finding 4: who reads an incident ------------------------------------------------------------------

def test_only_dispatchers_leaders_of_the_region_or_the_assignee_read_an_incident(two_streets):
    c, eng, disp, iid = (two_streets[k] for k in ("client", "engine", "disp", "iid"))
    missing = c.get("/incidents/NOPE", headers=disp)
    assert missing.status_code == 404
    refused = {"viewer": _h(eng, "viewer", ["S1"]), "planner": _h(eng, "planner", ["S1"]),
               "responder": _h(eng, "responder", ["G1"], member="a1"),
               "other street": _h(eng, "dispatcher", ["S2"])}
    for who, hdr in refused.items():
        r = c.get(f"/incidents/{iid}", headers=hdr)
        assert r.status_code == 404, (who, r.text)
        assert r.json()["detail"] == missing.json()["detail"].replace("NOPE", iid)
    for hdr in (disp, _h(eng, "leader", ["S1"])):
        assert c.get(f"/incidents/{iid}", headers=hdr).status_code == 200
    assert c.post(f"/incidents/{iid}/assign", json={"member_id": "a1"}, headers=disp).status_code == 200
    assert c.get(f"/incidents/{iid}", headers=refused["responder"]).status_code == 200


# -- finding 6: a lone surrogate ---------------------------------------------------------------------

def test_lone_surrogate_is_422_naming_the_field(two_streets, caplog):
    from api.app import create_app

    eng, disp = two_streets["engine"], two_streets["disp"]
    client = TestClient(create_app(str(eng.url.render_as_string(hide_password=False))),
                        raise_server_exceptions=True)
    before = counts(eng)
    lon, lat = _pt(100, 100)
    raw = ('{"lon": %r, "lat": %r, "category": "\\ud800abc", "source": "x"}' % (float(lon), float(lat))).encode()
    r = client.post("/incidents", content=raw, headers={**disp, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "category"]
    nested = client.post(f"/incidents/{two_streets['iid']}/assign", content=b'{"member_id": "a\\udc00"}',
                         headers={**disp, "content-type": "application/json"})
    assert nested.status_code == 422 and nested.json()["detail"][0]["loc"] == ["body", "member_id"]
    pair = client.post("/incidents", content=raw.replace(b"\\ud800", b"\\ud83d\\ude00"),
                       headers={**disp, "content-type": "application/json"})
    assert pair.status_code == 201, pair.text  # a valid surrogate pair is a character (😀)
    assert "\ud800" not in caplog.text and "\\ud800" not in caplog.text
    after = counts(eng)
    assert after["incidents"] == before["incidents"] + 1


# -- also fix ---------------------------------------------------------------------------------------

def test_token_is_read_before_the_body(db_url, engine):
    client = app_client(db_url)
    big = b"[" + b"1," * 600_000 + b"1]"  # 1.2 MB of valid JSON
    r = client.post("/incidents", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "without a valid token" in r.text

    def chunks():
        for _ in range(40):
            yield b"x" * 4096

    assert client.post("/incidents", content=chunks(), headers={"content-type": "application/json"}).status_code == 413
    wrong = client.post("/incidents", content=big, headers={"Authorization": "Bearer gm_guessed"})
    assert wrong.status_code == 413
    ok = client.post("/incidents", content=big, headers={**_h(engine, "dispatcher", ["*"]),
                                                          "content-type": "application/json"})
    assert ok.status_code == 422  # parsed (a list is not an incident), not refused for size


def test_a_422_echoes_at_most_200_characters(db_url, engine):
    client = app_client(db_url)
    hdr = _h(engine, "dispatcher", ["*"])
    before = counts(engine)
    secret = "身份证" + "7" * 5000
    r = client.post("/incidents", json={"lon": 120.17, "lat": 30.28, "category": secret}, headers=hdr)
    assert r.status_code == 422
    assert "7" * 201 not in r.text and len(r.text) < 1500
    r = client.get("/responders/nearest", params={"lon": "9" * 3000, "lat": 30}, headers=hdr)
    assert r.status_code == 422 and "9" * 201 not in r.text
    assert counts(engine) == before


def test_repeated_401s_from_one_address_get_429(db_url, engine):
    client = app_client(db_url, auth_failures_per_minute=5)
    for _ in range(5):
        assert client.get("/incidents", headers={"Authorization": "Bearer gm_wrong"}).status_code == 401
    r = client.get("/incidents", headers={"Authorization": "Bearer gm_wrong"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert client.get("/incidents").status_code == 429
    assert client.get("/incidents", headers=_h(engine, "dispatcher", ["*"])).status_code == 200


def test_security_headers_and_local_docs(db_url, engine):
    client = app_client(db_url)
    r = client.get("/incidents", headers=_h(engine, "dispatcher", ["*"]))
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert docs.headers["x-frame-options"] == "DENY" and docs.headers["referrer-policy"] == "no-referrer"
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text
    for src in re.findall(r'(?:src|href)="([^"]+)"', docs.text):
        assert src.startswith("/"), src
        assert client.get(src).status_code == 200, src
    off = app_client(db_url, docs_enabled=False)
    assert off.get("/docs").status_code == 404 and off.get("/openapi.json").status_code == 404


def test_gaps_never_locate_single_households_for_roles_without_pii(town):  # noqa: F811
    A, c, eng = town["A"], town["client"], town["engine"]
    with eng.begin() as conn:  # no links: every household of the street is unlinked
        conn.execute(sa.text("DELETE FROM links"))
    params = {"region": A["street"], "gap_res": 11, "radius_m": 100}
    leader = c.get("/gaps", params=params, headers=_h(eng, "leader", [A["street"]])).json()
    fine = [f for f in leader["features"] if f["properties"]["layer"] == "unlinked_cell"]
    assert any(f["properties"]["households"] < 5 for f in fine)  # the case the rule is for exists
    for role in ("planner", "viewer"):
        r = c.get("/gaps", params=params, headers=_h(eng, role, [A["street"]]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["gap_res"] == 9
        cells = [f for f in body["features"] if f["properties"]["layer"] in ("unlinked_cell", "gap_cell")]
        assert cells and all(f["properties"]["households"] >= 5 for f in cells)
        import h3

        assert all(h3.get_resolution(f["properties"]["h3"]) <= 9 for f in cells)
        shown = sum(f["properties"]["households"] for f in cells if f["properties"]["layer"] == "unlinked_cell")
        hidden = body["summary"]["suppressed_households"]["unlinked_cell"]
        assert shown + hidden == sum(f["properties"]["households"] for f in fine)


def test_k_anonymous_cells_merge_siblings_into_the_parent():
    import h3

    from api.routes.coverage import k_anonymous_cells
    from gridmap.cells import to_signed

    parent = h3.latlng_to_cell(30.28, 120.17, 8)
    kids = sorted(h3.cell_to_children(parent, 9))
    far = h3.latlng_to_cell(30.5, 120.5, 9)
    rows = [{"h3": int(to_signed([int(kids[0], 16)])[0]), "households": 7, "by_reason": {"a": 7}},
            {"h3": int(to_signed([int(kids[1], 16)])[0]), "households": 1, "by_reason": {"b": 1}},
            {"h3": int(to_signed([int(far, 16)])[0]), "households": 2, "by_reason": {"a": 2}}]
    shown, hidden = k_anonymous_cells(rows, 5)
    assert hidden == 2 and len(shown) == 1
    assert shown[0]["households"] == 8 and shown[0]["by_reason"] == {"a": 7, "b": 1}
    assert format(int(shown[0]["h3"]) & (2**64 - 1), "x") == parent


# -- settings and `gridmap serve` ------------------------------------------------------------------------

def test_settings_reach_the_layers(db_url, engine):
    from geodata.store.session import make_engine

    small = app_client(db_url, max_body_bytes=2000, anonymous_body_bytes=500)
    hdr = _h(engine, "dispatcher", ["*"])
    r = small.post("/incidents", json={"lon": 120.17, "lat": 30.28, "category": "x" * 3000}, headers=hdr)
    assert r.status_code == 413 and "2000" in r.text
    with pytest.raises(TypeError):
        make_engine()  # the store takes its URL from the caller, never from the environment
    for path in ("geodata/store/session.py", "api/guards.py", "api/routes/dispatch.py", "api/commands/serve.py",
                 "api/app.py"):
        assert "os.environ" not in (ROOT / path).read_text(), path


def test_env_file_hands_the_settings_to_workers(tmp_path, monkeypatch):
    from api.settings import Settings, read_settings, to_env_file

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", "postgresql://from-env/db")
    chosen = Settings(database_url="postgresql://u:p%40ss@db:5432/grid", max_body_bytes=1234, docs_enabled=False)
    f = to_env_file(chosen, tmp_path / "s.env")
    assert (f.stat().st_mode & 0o777) == 0o600
    assert read_settings(f) == chosen  # the file wins over the environment


def test_serve_on_a_taken_port_fails_first_and_clearly(db_url):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        p = subprocess.run([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--database-url", db_url],
                           capture_output=True, text=True, cwd=ROOT, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                                                       "PYTHONPATH": str(ROOT),
                                                                                       "COLUMNS": "200"})
    finally:
        taken.close()
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert f"cannot listen on 127.0.0.1:{port}" in out and "startup complete" not in out.lower()
    assert "Traceback" not in out


def test_serve_refuses_to_start_with_a_broken_deadlines_file(db_url, tmp_path):
    """Without the check every new incident (staff report, /report, Open311) failed with 500."""
    bad = tmp_path / "deadlines.toml"
    bad.write_text("[respond.ordinary]\nhours = 'soon'\n", encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "api.cli", "serve", "--port", "1", "--database-url", db_url],
                       capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": "200",
                            "GRIDMAP_DEADLINES_FILE": str(bad)})
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert "deadline rules not usable" in out and "deadlines.toml" in out and "Traceback" not in out
