#!/usr/bin/env bash
# Run the tests. The unit suite (no Odoo: clients, crypto, webhooks, fake servers) always runs;
# the Odoo suite (pytest-odoo) runs when an Odoo 18 is found at ODOO18_HOME, on a fresh database.
# Usage: tools/test.sh [extra pytest arguments]
source "$(dirname "$0")/_env.sh"
cd "$REPO_ROOT"
if odoo_available; then
  esign_pg_start
  DB=${ESIGN_TEST_DB:-esign_test}
  CONF=$(esign_odoo_config "$DB" 8069)
  dropdb -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" --if-exists "$DB"
  echo "Installing esign_connector in a fresh database $DB ..."
  "$ODOO_PY" -m odoo -c "$CONF" -d "$DB" -i esign_connector --without-demo=all --stop-after-init \
    --log-level=warn
  # Run from the linked folder so that pytest-odoo names the module esign_connector; test paths
  # given as arguments (tests/...) are taken relative to the module.
  cd "$ESIGN_STATE_DIR/addons"
  args=()
  for arg in "$@"; do
    case "$arg" in tests*) args+=("esign_connector/$arg") ;; *) args+=("$arg") ;; esac
  done
  [ ${#args[@]} -eq 0 ] || [[ "${args[*]}" != *esign_connector/tests* ]] && args=(esign_connector/tests "${args[@]}")
  # One pytest run over both suites, so its closing line counts every test.
  export PYTHONPATH="$REPO_ROOT/tools${PYTHONPATH:+:$PYTHONPATH}"
  exec "$ODOO_PY" -m pytest -q -p no:cacheprovider -p esign_pytest_plugin --rootdir="$ESIGN_STATE_DIR/addons/esign_connector" \
    --odoo-config="$CONF" --odoo-database="$DB" --odoo-log-level=warn --odoo-http "${args[@]}"
else
  echo "No Odoo 18 at $ODOO18_HOME: running the suite that needs no Odoo (tests/unit) only."
  echo "NOT RUN: the Odoo suite (models, wizard, controllers, access rights, Demo flow)."
  PY=${PYTHON:-python3}
  # --rootdir keeps pytest from importing the repository root, which is the Odoo module.
  exec "$PY" -m pytest -q -p no:cacheprovider --rootdir=tests/unit tests/unit "$@"
fi
