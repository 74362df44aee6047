"""Alembic environment: the URL comes from the config, set by ``geodata.store.migrate`` (``gridmap db``)."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from geodata.store.models import metadata
config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise SystemExit("run migrations through `gridmap db upgrade` (it passes the database URL)")
config.set_main_option("sqlalchemy.url", url)


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                     poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
