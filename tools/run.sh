#!/usr/bin/env bash
# Start Odoo 18 with esign_connector and its demo data on a local database.
# Usage: tools/run.sh [database] [port]   (defaults: esign_demo 8069)
source "$(dirname "$0")/_env.sh"
DB=${1:-esign_demo}
PORT=${2:-8069}
if ! odoo_available; then
  echo "No Odoo 18 at $ODOO18_HOME (expected venv/bin/python able to import odoo). See README.md." >&2
  exit 1
fi
esign_pg_start
CONF=$(esign_odoo_config "$DB" "$PORT")
echo "Installing esign_connector with demo data in database $DB ..."
"$ODOO_PY" -m odoo -c "$CONF" -d "$DB" -i esign_connector --stop-after-init --log-level=warn
echo
echo "Odoo is starting: open http://localhost:$PORT/odoo  (login: admin, password: admin)"
echo "Contracts: Agreements > Agreements; settings: Settings > E-Signature. Stop with Ctrl+C."
exec "$ODOO_PY" -m odoo -c "$CONF" -d "$DB" --log-level=info
