"""Deadline reminders: incidents entering yellow and red are marked once, the holder and the region's
dispatchers get in-app notices, red ones escalate one level (吹哨报到) as events, and the webhook gets
each notice (a local HTTP server stands in for the SMS/WeCom gateway)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa

from gridmap.dispatch import LOCAL_TZ

T0 = datetime(2024, 5, 6, 9, tzinfo=LOCAL_TZ)  # Monday 09:00


@pytest.fixture()
def region(engine):
    """The web tests' region (S1 → C1 → G1 with member M1) and two ordinary incidents in G1 reported at
    T0: A taken by M1 an hour later, B never taken."""
    from geodata.store import incidents
    from tests.web.conftest import seed_region

    seed_region(engine)
    for iid in ("A", "B"):
        incidents.create_incident(engine, lon=121.4815, lat=31.2055, category="民政", incident_id=iid, reported_at=T0)
    incidents.transition(engine, "A", "claim", acting_member="M1", at=T0 + timedelta(hours=1))
    return engine


def counts(engine):
    with engine.connect() as c:
        return tuple(c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                     for t in ("incident_reminders", "notices", "incident_events"))


@pytest.fixture()
def gateway():
    """A local HTTP server recording the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 — http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/notify", received
    server.shutdown()
    thread.join()


def test_nothing_before_yellow(region):
    from api.jobs.reminders import run_reminders

    before = counts(region)
    assert run_reminders(region, T0 + timedelta(hours=19)) == {"notices": 0, "escalated": 0, "webhook_sent": 0}
    assert counts(region) == before


def test_yellow_then_red_marked_once_with_notices_escalation_and_webhook(region, gateway):
    from api.jobs.reminders import run_reminders
    from geodata.store import notices

    url, received = gateway
    # 20 h: both clocks of B (not taken) and A's completion clock are in their last 20 % → yellow
    first = run_reminders(region, T0 + timedelta(hours=20), webhook_url=url)
    assert first == {"notices": 4, "escalated": 0, "webhook_sent": 4}  # A: holder + region; B: 2 clocks × region
    after_first = counts(region)
    assert run_reminders(region, T0 + timedelta(hours=21), webhook_url=url)["notices"] == 0  # idempotent
    assert counts(region) == after_first and len(received) == 4
    mine = notices.member_notices(region, "M1")
    assert [n["incident_id"] for n in mine] == ["A"]
    assert "办结即将超时（黄灯）" in mine[0]["message"] and "北京时间" in mine[0]["message"]
    # 25 h: red; each red clock escalates one level: B twice (grid → community → street), A once
    second = run_reminders(region, T0 + timedelta(hours=25), webhook_url=url)
    assert second["escalated"] == 3
    with region.connect() as c:
        levels = dict(c.execute(sa.text("SELECT incident_id, escalation_level FROM incidents")).all())
        events = c.execute(sa.text("SELECT incident_id, detail FROM incident_events WHERE action = 'escalate' "
                                   "ORDER BY event_id")).all()
    assert levels == {"A": "community", "B": "street"}
    assert [(e.incident_id, e.detail["to"]) for e in events] == [("A", "community"), ("B", "community"),
                                                                 ("B", "street")]
    assert {n["region_code"] for n in notices.region_notices(region, ["S1"])} == {"S1"}
    assert any("已上报街道" in n["message"] for n in notices.region_notices(region, ["S1"]))
    assert second["notices"] == 7 and len(received) == 4 + 7 and all("message" in r for r in received)
    again = counts(region)
    assert run_reminders(region, T0 + timedelta(hours=30))["notices"] == 0 and counts(region) == again


def test_closed_incident_and_late_acceptance_stop_their_clocks(region):
    from api.jobs.reminders import run_reminders
    from geodata.store import incidents

    incidents.transition(region, "A", "close", acting_member="M1", note="已办", at=T0 + timedelta(hours=2))
    run_reminders(region, T0 + timedelta(hours=26))
    with region.connect() as c:
        marked = c.execute(sa.text("SELECT incident_id, clock, light FROM incident_reminders "
                                   "ORDER BY incident_id, clock, light")).all()
    assert [tuple(m) for m in marked] == [("B", "complete", "red"), ("B", "respond", "red")]


def test_a_failing_gateway_keeps_the_in_app_notices(region):
    from api.jobs.reminders import run_reminders

    out = run_reminders(region, T0 + timedelta(hours=20), webhook_url="http://127.0.0.1:9/nothing-listens")
    assert out["notices"] == 4 and out["webhook_sent"] == 0
    assert counts(region)[1] == 4
