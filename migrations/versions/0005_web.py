"""Web accounts, login sessions, login throttling, background-job progress, and procrastinate's queue schema.

- ``users``: people who log in with a password (argon2 hash only), with the same role / regions /
  member as a bearer token.
- ``login_sessions``: one row per live login; only the SHA-256 of the session id is stored.
- ``login_failures``: wrong passwords (username and client address, never the password) for the
  5-in-15-minutes throttle.
- ``job_progress``: what a background job is doing, for the page fragment (survives reloads).
- procrastinate's tables, types and functions (the PostgreSQL-backed job queue), from the SQL the
  installed procrastinate ships, so migrations stay the only place the schema changes.

Revision ID: 0005_web
Revises: 0004_integrity
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0005_web"
down_revision = "0004_integrity"
branch_labels = None
depends_on = None

ROLES = ("admin", "leader", "planner", "dispatcher", "responder", "viewer")
JOB_STATES = ("queued", "running", "done", "failed")


def _procrastinate_schema() -> str:
    from procrastinate.schema import SchemaManager

    return SchemaManager.get_schema()


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("username", sa.Text, nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("regions", ARRAY(sa.Text), nullable=False),
        sa.Column("member_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="ck_users_role"),
        sa.CheckConstraint("cardinality(regions) > 0", name="ck_users_regions"),
        sa.CheckConstraint("username ~ '^[A-Za-z0-9_.@-]{1,64}$'", name="ck_users_username"),
    )
    op.create_table(
        "login_sessions",
        sa.Column("session_hash", sa.Text, primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("char_length(session_hash) = 64", name="ck_login_sessions_hash"),
    )
    op.create_index("ix_login_sessions_user", "login_sessions", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("failure_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
    )
    op.create_index("ix_login_failures_username", "login_failures", ["username", "at"])
    op.create_index("ix_login_failures_address", "login_failures", ["address", "at"])
    op.create_table(
        "job_progress",
        sa.Column("job_id", sa.BigInteger, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="queued"),
        sa.Column("step", sa.Integer, nullable=False, server_default="0"),
        sa.Column("steps", sa.Integer, nullable=False, server_default="1"),
        sa.Column("message", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("result", sa.dialects.postgresql.JSONB),
        sa.Column("requested_by", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in JOB_STATES) + ")", name="ck_job_progress_state"),
    )
    op.create_index("ix_job_progress_region", "job_progress", ["region", "created_at"])
    # The driver runs the whole script in one call; no parameters are passed, so '%' stays literal.
    op.get_bind().exec_driver_sql(_procrastinate_schema().replace("%", "%%"))


def downgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql("DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, "
                         "procrastinate_jobs, procrastinate_workers CASCADE")
    functions = bind.exec_driver_sql(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate%%'").scalars().all()
    for signature in functions:
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature} CASCADE")
    bind.exec_driver_sql("DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type, "
                         "procrastinate_job_status CASCADE")
    op.drop_table("job_progress")
    op.drop_table("login_failures")
    op.drop_table("login_sessions")
    op.drop_table("users")
