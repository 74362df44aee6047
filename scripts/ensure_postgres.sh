#!/usr/bin/env bash
# Make sure PostgreSQL 15 + PostGIS 3 are installed and running on 127.0.0.1:5432, and create the
# test database. Installs Debian packages when missing (needs root), starts the cluster when down.
set -euo pipefail
PGVER=15
DB="${GRIDMAP_TEST_DB:-gridmap_test}"
SUDO=""; AS_PG=(runuser -u postgres --)
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; AS_PG=(sudo -u postgres); fi

have_pkg() { dpkg -s "$1" >/dev/null 2>&1; }

need=()
have_pkg "postgresql-$PGVER" || need+=("postgresql-$PGVER")
have_pkg "postgresql-$PGVER-postgis-3" || need+=("postgresql-$PGVER-postgis-3")
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} ..."
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq "${need[@]}"
fi

if ! pg_lsclusters -h 2>/dev/null | grep -q "^$PGVER "; then
  $SUDO pg_createcluster "$PGVER" main --start -- --auth-local=trust --auth-host=trust || true
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "starting PostgreSQL $PGVER ..."
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$PGVER" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }

PSQL=(psql -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1 -qtA)
if ! "${PSQL[@]}" -d postgres -c "select 1" >/dev/null 2>&1; then
  # A fresh Debian cluster uses scram for 127.0.0.1: let local TCP in with trust, as on the dev machines.
  hba=$("${AS_PG[@]}" psql -qtA -c "show hba_file")
  $SUDO sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$hba"
  "${AS_PG[@]}" psql -qtA -c "select pg_reload_conf()" >/dev/null
fi
if [ "$("${PSQL[@]}" -d postgres -c "select 1 from pg_database where datname='$DB'")" != "1" ]; then
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
fi
"${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null
echo "PostGIS ready: postgresql://postgres@127.0.0.1:5432/$DB ($("${PSQL[@]}" -d "$DB" -c 'select postgis_lib_version()'))"
