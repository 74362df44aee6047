"""API tokens, region scopes and the audit log in PostGIS (tables from migration ``0003_auth``).

A token is 32 random bytes (URL-safe text with a ``gm_`` prefix); only its SHA-256 is stored, so a
copy of the database does not hand out working tokens. A token carries a role, the region codes it
covers (street 街道, community 社区 or grid 网格 codes; ``*`` means everywhere) and, for a
responder, the member (党员) it belongs to.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from cachetools import TTLCache
from sqlalchemy import (ARRAY, BigInteger, Column, DateTime, Integer, MetaData, Table, Text, any_, bindparam, func,
                        select, text, update)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine

from gridmap.privacy import ROLES

#: Region code meaning "every region".
ALL_REGIONS = "*"
TOKEN_PREFIX = "gm_"

auth_metadata = MetaData()

api_tokens = Table(
    "api_tokens", auth_metadata,
    Column("token_id", BigInteger, primary_key=True),
    Column("token_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("regions", ARRAY(Text), nullable=False),
    Column("member_id", Text),
    Column("label", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log", auth_metadata,
    Column("audit_id", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True)),
    Column("token_id", BigInteger),
    Column("role", Text),
    Column("member_id", Text),
    Column("action", Text, nullable=False),
    Column("what", Text, nullable=False),
    Column("ids", ARRAY(Text), nullable=False),
    Column("n_ids", Integer, nullable=False),
    Column("detail", JSONB),
)


def hash_token(token: str) -> str:
    """SHA-256 of a bearer token, as 64 hex characters (what ``api_tokens.token_hash`` holds)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh bearer token: ``gm_`` + 32 random bytes, URL-safe base64 (43 characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenRecord:
    """A stored token without its secret."""

    token_id: int
    role: str
    regions: tuple[str, ...]
    member_id: str | None
    label: str | None
    created_at: datetime | None
    revoked_at: datetime | None


def _record(row) -> TokenRecord:
    return TokenRecord(row.token_id, row.role, tuple(row.regions), row.member_id, row.label, row.created_at,
                       row.revoked_at)


def create_token(engine: Engine, role: str, regions: list[str] | tuple[str, ...], member_id: str | None = None,
                 label: str | None = None) -> tuple[TokenRecord, str]:
    """Store a new token; returns its record and the token text (shown once, never stored).

    Parameters
    ----------
    role : str
        One of ``gridmap.privacy.ROLES``.
    regions : list of str
        Street, community or grid codes the token covers; ``["*"]`` for every region. Codes need
        not exist yet (a grid imported later is covered as soon as it is there).
    member_id : str, optional
        The member (党员) a responder token belongs to; required for ``responder``.

    Raises
    ------
    ValueError
        Unknown role, no region, or a responder without a member.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    regions = [r.strip() for r in regions if r and r.strip()]
    if not regions:
        raise ValueError("a token needs at least one region code (or '*' for every region)")
    if role == "responder" and not member_id:
        raise ValueError("a responder token needs --member (the member it belongs to)")
    token = new_token()
    with engine.begin() as conn:
        row = conn.execute(
            api_tokens.insert().values(token_hash=hash_token(token), role=role, regions=sorted(set(regions)),
                                       member_id=member_id, label=label)
            .returning(*api_tokens.c)
        ).one()
    return _record(row), token


def revoke_token(engine: Engine, token_id: int) -> bool:
    """Revoke a token now; False when there is no such token or it was already revoked."""
    clear_cache()
    with engine.begin() as conn:
        res = conn.execute(update(api_tokens).where(api_tokens.c.token_id == token_id,
                                                    api_tokens.c.revoked_at.is_(None))
                           .values(revoked_at=func.now()))
        return res.rowcount == 1


#: Seconds a found token (and a region expansion) is reused without asking the database. Every
#: request needs both, and on the hot path (/responders/nearest) the look-ups cost more than the
#: KNN query itself. A revocation made in this process clears the cache at once; one made by another
#: process (``gridmap token revoke``) takes effect within this many seconds.
CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
_cache: TTLCache = TTLCache(maxsize=_CACHE_MAX, ttl=CACHE_SECONDS)
_cache_lock = threading.Lock()  # TTLCache is not thread-safe; requests run in a thread pool


def _cached(key: tuple, compute):
    global _cache
    with _cache_lock:
        if _cache.ttl != CACHE_SECONDS:  # CACHE_SECONDS was changed (tests, a tuned deployment)
            _cache = TTLCache(maxsize=_CACHE_MAX, ttl=CACHE_SECONDS)
        hit = _cache.get(key)
    if hit is not None:
        return hit
    value = compute()
    if value is not None:  # unknown tokens are never cached: a token created a moment later must work
        with _cache_lock:
            _cache[key] = value
    return value


def clear_cache() -> None:
    """Forget cached tokens and region expansions (after a revocation or a change of regions)."""
    with _cache_lock:
        _cache.clear()


def find_token(engine: Engine, token: str) -> TokenRecord | None:
    """The live (not revoked) token whose hash matches ``token``, or None (cached ``CACHE_SECONDS``)."""
    digest = hash_token(token)

    def lookup():
        with engine.connect() as conn:
            row = conn.execute(select(*api_tokens.c).where(api_tokens.c.token_hash == digest,
                                                           api_tokens.c.revoked_at.is_(None))).first()
        return _record(row) if row is not None else None

    return _cached(("token", str(engine.url), digest), lookup)


def list_tokens(engine: Engine, include_revoked: bool = False) -> list[TokenRecord]:
    """All tokens (without secrets), oldest first."""
    q = select(*api_tokens.c).order_by(api_tokens.c.token_id)
    if not include_revoked:
        q = q.where(api_tokens.c.revoked_at.is_(None))
    with engine.connect() as conn:
        return [_record(r) for r in conn.execute(q)]


@dataclass(frozen=True)
class RegionScope:
    """Codes a set of regions covers, expanded down the hierarchy 街道 → 社区 → 网格.

    ``everything`` is True for ``*``; otherwise ``streets``, ``communities`` and ``grids`` hold
    every code inside the given regions (a region code itself is in all three sets, so an
    unknown code still covers itself).
    """

    everything: bool
    streets: frozenset[str]
    communities: frozenset[str]
    grids: frozenset[str]


_EXPAND = text("""
WITH codes AS (SELECT unnest(CAST(:codes AS text[])) AS code),
comm AS (
    SELECT code FROM codes
    UNION SELECT c.code FROM communities c JOIN codes ON c.street_code = codes.code
)
SELECT 'c' AS kind, code FROM comm
UNION ALL
SELECT 'g', g.grid_code FROM grids g JOIN comm ON g.community_code = comm.code
""")


def expand_regions(engine: Engine, codes: list[str] | tuple[str, ...]) -> RegionScope:
    """Expand region codes to every street, community and grid code they contain.

    Containment follows the ``communities.street_code`` and ``grids.community_code`` columns of
    the store: a street covers its communities and their grids, a community its grids, a grid
    itself.
    """
    codes = [c for c in codes if c]
    if ALL_REGIONS in codes:
        return RegionScope(True, frozenset(), frozenset(), frozenset())
    base = frozenset(codes)
    if not codes:
        return RegionScope(False, base, base, base)
    def expand():
        comm, grids = set(base), set(base)
        with engine.connect() as conn:
            for kind, code in conn.execute(_EXPAND, {"codes": list(base)}):
                (comm if kind == "c" else grids).add(code)
        return RegionScope(False, base, frozenset(comm), frozenset(grids))

    return _cached(("regions", str(engine.url), base), expand)


_KIND = text("""
SELECT 'street' FROM streets WHERE code = :c
UNION ALL SELECT 'street' FROM communities WHERE street_code = :c
UNION ALL SELECT 'community' FROM communities WHERE code = :c
UNION ALL SELECT 'community' FROM grids WHERE community_code = :c
UNION ALL SELECT 'grid' FROM grids WHERE grid_code = :c
LIMIT 1
""")


def region_kind(engine: Engine, code: str) -> str | None:
    """``street``, ``community`` or ``grid`` for a known region code, else None."""
    with engine.connect() as conn:
        return conn.execute(_KIND, {"c": code}).scalar()


def region_parents(engine: Engine, grid_code: str | None = None, community_code: str | None = None) -> dict:
    """The community and street a grid (or community) lies in, from the store: dict with
    ``grid_code``, ``community_code``, ``street_code`` (None where unknown)."""
    out = {"grid_code": grid_code, "community_code": community_code, "street_code": None}
    with engine.connect() as conn:
        if grid_code and not community_code:
            out["community_code"] = conn.execute(text("SELECT community_code FROM grids WHERE grid_code = :g"),
                                                 {"g": grid_code}).scalar()
        if out["community_code"]:
            out["street_code"] = conn.execute(text("SELECT street_code FROM communities WHERE code = :c"),
                                              {"c": out["community_code"]}).scalar()
    return out


def record_audit(engine: Engine, *, token_id: int | None, role: str | None, member_id: str | None, action: str,
                 what: str, ids, detail: dict | None = None) -> int:
    """Append one audit entry (ids only — never the personal data itself); returns its id."""
    ids = [str(i) for i in ids]
    with engine.begin() as conn:
        return conn.execute(audit_log.insert().values(token_id=token_id, role=role, member_id=member_id, action=action,
                                                      what=what, ids=ids, n_ids=len(ids), detail=detail)
                            .returning(audit_log.c.audit_id)).scalar_one()


def list_audit(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
               token_id: int | None = None, action: str | None = None, what: str | None = None,
               record_id: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
    """Audit entries, newest first, filtered by time window, token, action, what, or one record id."""
    q = select(*audit_log.c).order_by(audit_log.c.audit_id.desc()).limit(limit).offset(offset)
    if since is not None:
        q = q.where(audit_log.c.at >= since)
    if until is not None:
        q = q.where(audit_log.c.at < until)
    if token_id is not None:
        q = q.where(audit_log.c.token_id == token_id)
    if action is not None:
        q = q.where(audit_log.c.action == action)
    if what is not None:
        q = q.where(audit_log.c.what == what)
    if record_id is not None:
        q = q.where(bindparam("rid", record_id, type_=Text) == any_(audit_log.c.ids))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
