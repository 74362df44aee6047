"""API tokens and the audit log of unmasked personal-data reads.

``api_tokens`` keeps only the SHA-256 of each bearer token (the token itself is shown once, when
created), its role, the region codes it covers (street, community or grid codes; ``*`` = all) and,
for a responder, the member it belongs to. ``audit_log`` records who read which residents'
personal data unmasked, and when (ids only, never the data itself).

Revision ID: 0003_auth
Revises: 0002_dispatch
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0003_auth"
down_revision = "0002_dispatch"
branch_labels = None
depends_on = None

ROLES = ("admin", "leader", "planner", "dispatcher", "responder", "viewer")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("regions", ARRAY(sa.Text), nullable=False),
        sa.Column("member_id", sa.Text),
        sa.Column("label", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="ck_api_tokens_role"),
        sa.CheckConstraint("char_length(token_hash) = 64", name="ck_api_tokens_hash"),
        sa.CheckConstraint("cardinality(regions) > 0", name="ck_api_tokens_regions"),
    )
    op.create_table(
        "audit_log",
        sa.Column("audit_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("token_id", sa.BigInteger, sa.ForeignKey("api_tokens.token_id", ondelete="SET NULL")),
        sa.Column("role", sa.Text),
        sa.Column("member_id", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("what", sa.Text, nullable=False),
        sa.Column("ids", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("n_ids", sa.Integer, nullable=False, server_default="0"),
        sa.Column("detail", JSONB),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_token", "audit_log", ["token_id", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
