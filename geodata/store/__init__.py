"""The PostGIS store: GeoAlchemy2 models (``models``), engines and transactions (``session``), bulk
import with COPY (``importer``) and read queries (``queries``). The schema itself changes only through
Alembic migrations in ``migrations/``."""
