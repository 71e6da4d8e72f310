#!/usr/bin/env bash
# Run the tests.
#
# With an Odoo 18 at ODOO18_HOME, the whole suite runs, each run on a fresh database:
#   1. pytest-odoo (with the suite that needs no Odoo, tests/unit, in the same pytest run), on
#      database esign_test without demo data; OCA queue_job is installed there too when it is on the
#      addons path, so that the job path is tested;
#   2. Odoo's own runner, as OCA's CI runs it: odoo -i esign_connector --test-enable
#      --test-tags /esign_connector --stop-after-init, demo data installed, on database esign_test_odoo;
#   3. the Odoo suite again under pytest-odoo next to the OCA agreement family, on database
#      esign_test_legal with esign_connector,agreement_legal,sign_oca,agreement_sign_oca installed
#      (when those modules are on the addons path; .ci/run installs them otherwise), no demo data.
#      pytest-odoo, as run 1: the only difference from run 1 is then the OCA modules, and extra
#      arguments (one test file) work here too. (Odoo's runner would do as well: our tests are
#      post_install, so they would run after all four modules are installed.)
# Without Odoo, only tests/unit runs, and the script says what it skipped.
#
# Usage: tools/test.sh [extra pytest arguments]
#   Extra arguments (e.g. tests/test_esign_webhook.py -k replayed) go to pytest and run pytest only;
#   ESIGN_RUNNERS chooses: pytest (1), odoo (2), legal (3), both (1 and 2), all (1, 2 and 3; the
#   default without arguments). ESIGN_TEST_DB, ESIGN_TEST_DB_ODOO and ESIGN_TEST_DB_LEGAL name the
#   databases; ESIGN_TEST_MODULES the modules run 1 installs (comma-separated, default esign_connector,
#   plus queue_job where available); ESIGN_TEST_HTTP_PORT the port of the test HTTP server (a free one).
source "$(dirname "$0")/_env.sh"
cd "$REPO_ROOT"

if ! odoo_available; then
  echo "No Odoo 18 at $ODOO18_HOME: running the suite that needs no Odoo (tests/unit) only."
  echo "NOT RUN: the Odoo suite (models, wizard, controllers, access rights, flows) under pytest-odoo and"
  echo "NOT RUN: Odoo's own test runner. Install Odoo as README.md says to run them."
  PY=${PYTHON:-python3}
  # --rootdir keeps pytest from importing the repository root, which is the Odoo module.
  exec "$PY" -m pytest -q -p no:cacheprovider --rootdir=tests/unit tests/unit "$@"
fi

RUNNERS=${ESIGN_RUNNERS:-$([ $# -eq 0 ] && echo all || echo pytest)}
esign_pg_start
LOG_DIR="$ESIGN_STATE_DIR/test-logs"
mkdir -p "$LOG_DIR"
status=0
passed=0 failed=0 skipped=0

free_port() {  # a free loopback port, so that runs of several checkouts or databases do not collide
  "$ODOO_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
HTTP_PORT=${ESIGN_TEST_HTTP_PORT:-$(free_port)}

count() {  # count WORD "pytest summary line" -> the number before WORD, or 0
  local n
  n=$(grep -oE "[0-9]+ $1\b" <<<"$2" | head -n 1 | grep -oE "[0-9]+")
  echo "${n:-0}"
}

fresh_db() {
  dropdb -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" --if-exists "$1"
}

run_pytest() {  # run_pytest DATABASE MODULES LABEL [pytest arguments]
  local db=$1 modules=$2 label=$3
  shift 3
  local conf
  conf=$(esign_odoo_config "$db" "$HTTP_PORT")
  fresh_db "$db"
  echo "== pytest-odoo$label: installing $modules in a fresh database $db (no demo data) ..."
  "$ODOO_PY" -m odoo -c "$conf" -d "$db" -i "$modules" --without-demo=all --stop-after-init --log-level=warn
  # Run from the linked folder so that pytest-odoo names the module esign_connector; test paths
  # given as arguments (tests/...) are taken relative to the module.
  local args=() has_path=
  for arg in "$@"; do
    case "$arg" in
      tests*) args+=("esign_connector/$arg"); has_path=1 ;;
      esign_connector/tests*) args+=("$arg"); has_path=1 ;;
      *) args+=("$arg") ;;
    esac
  done
  [ -n "$has_path" ] || args=(esign_connector/tests "${args[@]}")
  local log="$LOG_DIR/pytest-$db.log" rc=0
  (cd "$ESIGN_STATE_DIR/addons" && PYTHONPATH="$REPO_ROOT/tools${PYTHONPATH:+:$PYTHONPATH}" \
    "$ODOO_PY" -m pytest -q -p no:cacheprovider -p esign_pytest_plugin \
      --rootdir="$ESIGN_STATE_DIR/addons/esign_connector" --odoo-config="$conf" --odoo-database="$db" \
      --odoo-log-level=warn --odoo-http "${args[@]}") 2>&1 | tee "$log" || rc=$?
  local line
  line=$(grep -E "[0-9]+ (passed|failed|error)" "$log" | tail -n 1)
  echo "pytest-odoo$label on $db: ${line:-no test summary (see $log)}"
  passed=$((passed + $(count passed "$line")))
  failed=$((failed + $(count failed "$line") + $(count error "$line") + $(count errors "$line")))
  skipped=$((skipped + $(count skipped "$line")))
  [ -n "$line" ] || [ "$rc" -ne 0 ] || rc=1  # no summary: pytest ran nothing
  [ "$rc" -eq 0 ] || status=1
}

run_pytest_main() {
  local modules=esign_connector
  [ ! -d "$ODOO18_HOME/addons/odoo/addons/queue_job" ] || modules=esign_connector,queue_job
  run_pytest "${ESIGN_TEST_DB:-esign_test}" "${ESIGN_TEST_MODULES:-$modules}" "" "$@"
}

run_pytest_legal() {
  # The Odoo suite (not tests/unit: it imports no Odoo module) next to the OCA agreement family.
  local missing
  missing=$(esign_missing_modules "${ESIGN_LEGAL_MODULES[@]}" | paste -sd' ')
  if [ -n "$missing" ]; then
    echo "NOT RUN: the suite next to the OCA agreement family (not on the addons path: $missing;"
    echo "NOT RUN: bash .ci/run installs them, see README.md)."
    return 0
  fi
  local modules
  modules=esign_connector,$(IFS=,; echo "${ESIGN_LEGAL_MODULES[*]}")
  run_pytest "${ESIGN_TEST_DB_LEGAL:-esign_test_legal}" "$modules" " next to the OCA agreement family" \
    --ignore=esign_connector/tests/unit "$@"
}

run_odoo_runner() {
  local db=${ESIGN_TEST_DB_ODOO:-esign_test_odoo}
  local conf log="$LOG_DIR/odoo-runner-$db.log" rc=0
  conf=$(esign_odoo_config "$db" "$HTTP_PORT")
  fresh_db "$db"
  echo "== Odoo's own runner: odoo -i esign_connector --test-enable --test-tags /esign_connector (demo data) on $db ..."
  timeout "${ESIGN_RUNNER_TIMEOUT:-1800}" "$ODOO_PY" -m odoo -c "$conf" -d "$db" -i esign_connector \
    --test-enable --test-tags /esign_connector --stop-after-init --log-level=test >"$log" 2>&1 || rc=$?
  grep -E " (ERROR|CRITICAL) | (FAIL|ERROR): " "$log" | head -n 50 || true
  local report
  report=$(grep -oE "[0-9]+ failed, [0-9]+ error\(s\) of [0-9]+ tests" "$log" | tail -n 1)
  echo "Odoo's runner: ${report:-no test report (see $log)}; exit code $rc; full log: $log"
  if [ -n "$report" ]; then
    local f e t
    read -r f e t < <(grep -oE "[0-9]+" <<<"$report" | paste -sd' ')
    failed=$((failed + f + e))
    passed=$((passed + t - f - e))
  elif [ "$rc" -eq 0 ]; then
    rc=1  # no report: the runner did not run the tests
  fi
  [ "$rc" -eq 0 ] || status=1
}

case "$RUNNERS" in
  pytest) run_pytest_main "$@" ;;
  odoo) run_odoo_runner ;;
  legal) run_pytest_legal "$@" ;;
  both) run_pytest_main "$@"; run_odoo_runner ;;
  all) run_pytest_main "$@"; run_odoo_runner; run_pytest_legal "$@" ;;
  *) echo "ESIGN_RUNNERS must be pytest, odoo, legal, both or all" >&2; exit 2 ;;
esac
echo "runs ($RUNNERS):"
echo "total: $passed passed, $failed failed, $skipped skipped"
exit $status
