"""Residents' reports (一键上报 without an account), photos, follow codes, ratings; members' service posts.

- ``incidents`` gains what a resident tells: ``description``, ``address`` (free text), the public
  ``ticket`` number, ``reporter_phone_hash`` (HMAC of the call-back phone, for rate limits and call-back
  matching — never the phone in clear), ``follow_hash`` (HMAC of ticket + the phone's last four
  digits) and ``follow_key_hash`` (SHA-256 of the secret follow link), ``rating_comment`` (评单 text)
  and ``flagged`` (a low rating the leader should look at). ``rating`` exists since 0002.
- ``report_keys``: the one HMAC key of this database (random, made here), so hashed phones cannot be
  looked up in a table of all phone numbers without the database itself.
- ``ticket_photos``: up to three photos of a public report, stored on disk (``upload_dir``), EXIF gone.
- ``posts``: members' service posts (党员示范岗, 服务站点) for the public 先锋地图 — never home points;
  ``show_name`` is the member's own choice.

Revision ID: 0008_residents
Revises: 0007_responders
"""
import secrets

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0008_residents"
down_revision = "0007_responders"
branch_labels = None
depends_on = None

NEW_INCIDENT_COLUMNS = (("description", sa.Text), ("address", sa.Text), ("ticket", sa.Text),
                        ("reporter_phone_hash", sa.Text), ("follow_hash", sa.Text), ("follow_key_hash", sa.Text),
                        ("rating_comment", sa.Text))


def upgrade() -> None:
    for name, typ in NEW_INCIDENT_COLUMNS:
        op.add_column("incidents", sa.Column(name, typ))
    op.add_column("incidents", sa.Column("flagged", sa.Boolean, server_default=sa.false(), nullable=False))
    op.create_index("incidents_ticket_key", "incidents", ["ticket"], unique=True)
    op.create_index("incidents_reporter_phone", "incidents", ["reporter_phone_hash", "reported_at"])
    op.create_table("report_keys", sa.Column("key_id", sa.Integer, primary_key=True),
                    sa.Column("secret", sa.Text, nullable=False))
    op.execute(sa.text("INSERT INTO report_keys (key_id, secret) VALUES (1, :s)").bindparams(s=secrets.token_hex(32)))
    op.create_table("ticket_photos", sa.Column("photo_id", sa.BigInteger, primary_key=True, autoincrement=True),
                    sa.Column("incident_id", sa.Text, sa.ForeignKey("incidents.incident_id", ondelete="CASCADE"),
                              nullable=False, index=True),
                    sa.Column("position", sa.Integer, nullable=False),
                    sa.Column("path", sa.Text, nullable=False),
                    sa.Column("content_type", sa.Text, nullable=False),
                    sa.Column("size_bytes", sa.Integer, nullable=False),
                    sa.Column("sha256", sa.Text, nullable=False))
    op.create_table("posts", sa.Column("post_id", sa.Text, primary_key=True),
                    sa.Column("member_id", sa.Text, index=True),
                    sa.Column("kind", sa.Text, nullable=False),
                    sa.Column("title", sa.Text, nullable=False),
                    sa.Column("show_name", sa.Boolean, server_default=sa.false(), nullable=False),
                    sa.Column("skills", sa.ARRAY(sa.Text)),
                    sa.Column("grid_code", sa.Text),
                    sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=True), nullable=False))


def downgrade() -> None:
    op.drop_table("posts")
    op.drop_table("ticket_photos")
    op.drop_table("report_keys")
    op.drop_index("incidents_reporter_phone", "incidents")
    op.drop_index("incidents_ticket_key", "incidents")
    op.drop_column("incidents", "flagged")
    for name, _ in reversed(NEW_INCIDENT_COLUMNS):
        op.drop_column("incidents", name)
