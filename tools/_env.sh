# Shared by tools/run.sh and tools/test.sh (sourced, not run).
# Finds the Odoo 18 installed by hand at ODOO18_HOME (never installed by this repository), links
# this checkout as an addon called esign_connector, and starts a throw-away PostgreSQL cluster
# unless one is configured through PGHOST/PGPORT/PGUSER/PGPASSWORD.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ODOO18_HOME=${ODOO18_HOME:-$HOME/odoo18}
ODOO_PY="$ODOO18_HOME/venv/bin/python"
ESIGN_STATE_DIR=${ESIGN_STATE_DIR:-${TMPDIR:-/tmp}/esign_connector}
# The OCA agreement family modules that we test living next to (see README, "Next to the OCA agreement
# family"), and the folder .ci/run installs their wheels into when the Odoo at ODOO18_HOME lacks them.
ESIGN_LEGAL_MODULES=(agreement_legal sign_oca agreement_sign_oca)
ESIGN_OCA_TARGET="$ESIGN_STATE_DIR/oca-agreement-family"

odoo_available() {
  [ -x "$ODOO_PY" ] && "$ODOO_PY" -c 'import odoo' >/dev/null 2>&1
}

esign_addons_path() {
  # Odoo finds a module by its folder name: give it a folder holding an esign_connector link.
  local link_dir="$ESIGN_STATE_DIR/addons"
  mkdir -p "$ESIGN_STATE_DIR"
  mkdir -p "$link_dir"
  ln -sfn "$REPO_ROOT" "$link_dir/esign_connector"
  local paths="$ODOO18_HOME/src/odoo/addons"
  [ -d "$ODOO18_HOME/addons/odoo/addons" ] && paths="$paths,$ODOO18_HOME/addons/odoo/addons"
  [ -d "$ESIGN_OCA_TARGET/odoo/addons" ] && paths="$paths,$ESIGN_OCA_TARGET/odoo/addons"
  echo "$paths,$link_dir"
}

esign_missing_modules() {
  # Echoes those of the given modules that are on no folder of the addons path (nothing when all are).
  local module dir found
  local -a dirs
  IFS=, read -r -a dirs <<<"$(esign_addons_path)"
  for module in "$@"; do
    found=
    for dir in "${dirs[@]}"; do
      [ -f "$dir/$module/__manifest__.py" ] && { found=1; break; }
    done
    [ -n "$found" ] || echo "$module"
  done
}

esign_pg_start() {
  # Use the configured server if there is one and it answers.
  if [ -n "${PGHOST:-}" ] && pg_isready -q -h "$PGHOST" -p "${PGPORT:-5432}" 2>/dev/null; then
    export DB_HOST=$PGHOST DB_PORT=${PGPORT:-5432} DB_USER=${PGUSER:-odoo} DB_PASSWORD=${PGPASSWORD:-odoo}
    return 0
  fi
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bindir" ]; then
    echo "PostgreSQL is not installed (Debian: apt-get install postgresql)." >&2
    return 1
  fi
  local data="$ESIGN_STATE_DIR/pgdata" port=${ESIGN_PG_PORT:-54329}
  local owner run=()
  # PostgreSQL refuses to run as root: a throw-away cluster gets a non-root owner.
  if [ "$(id -u)" = 0 ]; then
    owner=postgres
    id "$owner" >/dev/null 2>&1 || useradd --system --home-dir "$ESIGN_STATE_DIR" "$owner"
    run=(runuser -u "$owner" --)
  fi
  mkdir -p "$ESIGN_STATE_DIR"
  [ -n "${owner:-}" ] && chown "$owner" "$ESIGN_STATE_DIR"
  if [ ! -f "$data/PG_VERSION" ]; then
    "${run[@]}" "$bindir/initdb" -D "$data" -U odoo --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
    "${run[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w start \
      -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
  fi
  export DB_HOST=127.0.0.1 DB_PORT=$port DB_USER=odoo DB_PASSWORD=odoo
}

esign_odoo_config() {
  # Writes an Odoo configuration file for this checkout and echoes its path.
  local db=$1
  local conf="$ESIGN_STATE_DIR/odoo-$db.conf" port=${2:-8069}
  mkdir -p "$ESIGN_STATE_DIR"  # also with the user's own PostgreSQL (PGHOST), where no cluster made it
  cat > "$conf" <<CONF
[options]
addons_path = $(esign_addons_path)
db_host = $DB_HOST
db_port = $DB_PORT
db_user = $DB_USER
db_password = $DB_PASSWORD
db_name = $db
dbfilter = ^$db\$
http_port = $port
data_dir = $ESIGN_STATE_DIR/data
without_demo = False
max_cron_threads = 1
CONF
  echo "$conf"
}
