#!/usr/bin/env bash
# One command per benchmark. Usage: bench/run.sh webhook [--n 300] [--apply-runs 30] [--open 1,50,200] ...
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ODOO_PY="${ODOO18_HOME:-$HOME/odoo18}/venv/bin/python"
case "${1:-}" in
  webhook) shift; exec "$ODOO_PY" "$BENCH_DIR/webhook_latency.py" "$@" ;;
  campaign) shift; exec "$ODOO_PY" "$BENCH_DIR/campaign.py" "$@" ;;
  *) echo "usage: bench/run.sh webhook|campaign [options]   (see: bench/run.sh campaign --help)" >&2; exit 2 ;;
esac
