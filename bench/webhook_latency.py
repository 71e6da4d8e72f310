#!/usr/bin/env python3
"""Webhook benchmark: the Demo callback of esign_connector next to Odoo's own Stripe webhook.

One command, stops by itself, prints a markdown table::

    ~/odoo18/venv/bin/python bench/webhook_latency.py [--n 300] [--apply-runs 30] [--open 1,50,200]

What it does (loopback only, bounded loops, nothing asserted — these are measurements):

1. PostgreSQL and the Odoo configuration come from ``tools/_env.sh`` (``esign_pg_start``,
   ``esign_odoo_config``): the throw-away cluster in /tmp/esign_connector unless PGHOST is set.
2. A fresh database (``esign_bench`` by default) gets ``-i esign_connector,payment_stripe`` with demo
   data, then ONE Odoo server is started on it: ``--workers=0`` (threaded), ``--max-cron-threads=1``,
   a free port on 127.0.0.1, ``--log-level=warn`` plus ``werkzeug:INFO`` so that every access-log
   line carries Odoo's ``<query count> <query time> <remaining time>``.
3. Over JSON-RPC as admin: the Stripe provider is put in test state with a webhook secret, and
   contracts are sent through the real "Sign with Demo" wizard (``esign.send.wizard.action_send``,
   each with its own PDF attached); the Demo provider sends them right after the commit.
4. Measurements, all over real HTTP on 127.0.0.1, a new TCP connection per request:

   e. queries per accepted Demo callback with N = 1, 50, 200 open (sent) requests;
   a/b. interleaved, in a random order per pair: a signed Demo callback for a sent request (each
      with its own event id, stored and answered 200, applied later by the cron) and
      ``POST /payment/stripe/webhook`` for a ``payment_intent.succeeded`` whose reference matches no
      transaction (Odoo logs it and answers 200);
   c. a.p50 / b.p50;
   d. callback-to-applied: a callback saying the client signed, then a direct DB poll (every 5 ms)
      until that signer is ``signed`` in ``esign_request_signer``.

5. The server is stopped and the database (and its filestore) dropped at the end, also on error or
   Ctrl+C (``--keep`` keeps them, for a look afterwards).
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import types
import urllib.request
import uuid

import psycopg2

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(BENCH_DIR)
RESERVED_DBS = {"esign_test", "esign_odoo", "esign_demo"}  # used by others: never touched


def _load_demo_wire():
    """The module's own Demo wire format (api/demo.py), imported without Odoo (as tests/unit does)."""
    for name, path in (("esign_connector", REPO), ("esign_connector.api", os.path.join(REPO, "api"))):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [path]
            sys.modules[name] = module
    from esign_connector.api import demo  # noqa: PLC0415
    return demo


demo_wire = _load_demo_wire()


# ---------------------------------------------------------------------------------------- helpers

def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(round(q / 100 * len(ordered) + 0.5 - 1e-9)))
    return ordered[min(rank, len(ordered)) - 1]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                ram_kib = int(line.split()[1])
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip() \
        or str(len(os.sched_getaffinity(0)))
    return {"nproc": nproc, "cpu": model, "ram": f"{ram_kib / 1024 / 1024:.1f} GiB",
            "kernel": platform.release(), "load_start": loadavg()}


def loadavg():
    """1/5/15-minute load averages: other work on the machine shows up here (the run does not stop it)."""
    with open("/proc/loadavg", encoding="utf-8") as handle:
        return " ".join(handle.read().split()[:3])


def env_from_shell(db, port):
    """Start (or find) PostgreSQL and write the Odoo config with the repo's own helpers."""
    script = (
        f'source "{REPO}/tools/_env.sh"\n'
        'odoo_available || { echo "no Odoo 18 at $ODOO18_HOME" >&2; exit 3; }\n'
        "esign_pg_start\n"
        f'conf=$(esign_odoo_config "{db}" "{port}")\n'
        'printf "%s\\n" "DB_HOST=$DB_HOST" "DB_PORT=$DB_PORT" "DB_USER=$DB_USER" "DB_PASSWORD=$DB_PASSWORD" '
        '"CONF=$conf" "ODOO_PY=$ODOO_PY" "STATE_DIR=$ESIGN_STATE_DIR" "ODOO18_HOME=$ODOO18_HOME"\n'
    )
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def pg_connect(env, dbname):
    return psycopg2.connect(host=env["DB_HOST"], port=env["DB_PORT"], user=env["DB_USER"],
                            password=env["DB_PASSWORD"], dbname=dbname)


def drop_database(env, db):
    conn = pg_connect(env, "postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cr:
            cr.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        conn.close()
    shutil.rmtree(os.path.join(env["STATE_DIR"], "data", "filestore", db), ignore_errors=True)


def small_pdf(title):
    from reportlab.pdfgen import canvas  # noqa: PLC0415  (Odoo's own dependency, in its venv)
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    page.drawString(72, 760, title)
    page.drawString(72, 740, "Benchmark contract: the client signs first, then the company.")
    page.showPage()
    page.save()
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- HTTP

def http_post(port, path, body, headers):
    """POST on a new connection; returns (status, body, seconds from connect to last byte)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return response.status, data, time.perf_counter() - started


class JsonRpc:
    def __init__(self, port, db, login="admin", password="admin"):
        self.url = f"http://127.0.0.1:{port}/jsonrpc"
        self.db, self.login, self.password = db, login, password
        self.uid = None
        self._id = 0

    def call(self, service, method, *args):
        self._id += 1
        payload = json.dumps({"jsonrpc": "2.0", "method": "call", "id": self._id,
                              "params": {"service": service, "method": method, "args": list(args)}}).encode()
        req = urllib.request.Request(self.url, data=payload, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as response:
            answer = json.loads(response.read())
        if answer.get("error"):
            error = answer["error"]
            message = (error.get("data") or {}).get("message") or error.get("message")
            raise RuntimeError(f"JSON-RPC {service}.{method}: {message}")
        return answer["result"]

    def authenticate(self):
        self.uid = self.call("common", "login", self.db, self.login, self.password)
        if not self.uid:
            raise RuntimeError("admin/admin cannot log in (database without demo data?)")
        return self.uid

    def __call__(self, model, method, *args, **kwargs):
        return self.call("object", "execute_kw", self.db, self.uid, self.password, model, method,
                         list(args), kwargs)


# ---------------------------------------------------------------------------------------- server

class OdooServer:
    def __init__(self, env, db, port, logfile):
        self.env, self.db, self.port, self.logfile = env, db, port, logfile
        self.proc = None

    def odoo_cmd(self, *extra):
        return [self.env["ODOO_PY"], "-m", "odoo", "-c", self.env["CONF"], "-d", self.db, *extra]

    def install(self, install_log):
        cmd = self.odoo_cmd("-i", "esign_connector,payment_stripe", "--stop-after-init", "--log-level=warn",
                            f"--logfile={install_log}", "--max-cron-threads=0")
        started = time.monotonic()
        result = subprocess.run(cmd, check=False)
        if result.returncode:
            raise RuntimeError(f"installation failed (exit {result.returncode}), see {install_log}")
        return time.monotonic() - started

    def start(self):
        cmd = self.odoo_cmd("--workers=0", "--max-cron-threads=1", "--http-interface=127.0.0.1",
                            f"--http-port={self.port}", "--log-level=warn", "--log-handler=werkzeug:INFO",
                            f"--logfile={self.logfile}")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, rpc, timeout=180):
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Odoo exited with {self.proc.returncode}, see {self.logfile}")
            try:
                return rpc.authenticate()
            except (OSError, RuntimeError, http.client.HTTPException) as error:
                last_error = error
                time.sleep(0.5)
        raise RuntimeError(f"Odoo did not answer within {timeout}s: {last_error}")

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class AccessLog:
    """Odoo's werkzeug access-log lines: ``"POST <path> HTTP/1.1" <status> - <queries> <sql s> <other s>``."""

    LINE = re.compile(r'"POST (?P<path>\S+) HTTP/1\.[01]" (?P<status>\d{3}) \S+ '
                      r'(?P<queries>\d+|-) (?P<sql>[\d.]+|-) (?P<other>[\d.]+|-)')

    def __init__(self, path):
        self.path = path

    def offset(self):
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def lines_since(self, offset, path_prefix):
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            text = handle.read()
        found = []
        for match in self.LINE.finditer(text):
            if match["path"].startswith(path_prefix):
                found.append(match.groupdict())
        return found


# ---------------------------------------------------------------------------------------- the module's data

class Bench:
    def __init__(self, args, env, port, rpc, logs):
        self.args, self.env, self.port, self.rpc, self.logs = args, env, port, rpc, logs
        self.db = pg_connect(env, args.db)
        self.db.autocommit = True
        self.demo_secret = None
        self.stripe_secret = "whsec_bench_" + uuid.uuid4().hex
        self.partner_id = None
        self.type_id = None
        self.sent = 0
        self.send_seconds = []

    def query(self, sql, params=None):
        with self.db.cursor() as cr:
            cr.execute(sql, params)
            return cr.fetchall()

    def xmlid(self, module, name):
        rows = self.rpc("ir.model.data", "search_read", [("module", "=", module), ("name", "=", name)],
                        fields=["res_id"], limit=1)
        if not rows:
            raise RuntimeError(f"missing record {module}.{name}")
        return rows[0]["res_id"]

    def configure(self):
        rpc = self.rpc
        rpc("ir.config_parameter", "set_param", "web.base.url", f"http://127.0.0.1:{self.port}")
        demo_id = self.xmlid("esign_connector", "esign_provider_demo")
        provider = rpc("esign.provider", "read", [demo_id], ["state", "account_mode", "webhook_secret"])[0]
        if not provider["webhook_secret"]:
            raise RuntimeError("the Demo provider has no webhook secret (demo data not loaded?)")
        self.demo_secret = provider["webhook_secret"]
        self.demo_provider = provider
        stripe_id = self.xmlid("payment", "payment_provider_stripe")
        rpc("payment.provider", "write", [stripe_id], {
            "state": "test", "stripe_publishable_key": "pk_test_bench", "stripe_secret_key": "sk_test_bench",
            "stripe_webhook_secret": self.stripe_secret})
        self.type_id = self.xmlid("esign_connector", "agreement_type_esign")
        self.partner_id = rpc("res.partner", "create", {
            "name": "Bench Client", "email": "bench.client@example.com", "is_company": False})

    def open_requests(self):
        return self.query("SELECT id, reference, provider_ref FROM esign_request WHERE state = 'sent' ORDER BY id")

    def signers(self, request_id):
        rows = self.query("SELECT id, role, email, provider_ref, state FROM esign_request_signer "
                          "WHERE request_id = %s ORDER BY sequence, id", [request_id])
        return [dict(zip(("id", "role", "email", "provider_ref", "state"), row)) for row in rows]

    def send_until(self, total_open):
        """Send contracts through the real wizard until ``total_open`` requests are out for signature."""
        rpc = self.rpc
        missing = total_open - len(self.open_requests())
        if missing <= 0:
            return
        pdf = base64.b64encode(small_pdf("Benchmark contract")).decode()
        first = self.sent
        agreement_ids = rpc("agreement", "create", [{
            "code": f"BENCH-{first + i + 1:04d}", "name": f"Benchmark contract {first + i + 1}",
            "partner_id": self.partner_id, "agreement_type_id": self.type_id} for i in range(missing)])
        rpc("ir.attachment", "create", [{
            "name": f"BENCH-{first + i + 1:04d}.pdf", "datas": pdf, "mimetype": "application/pdf",
            "res_model": "agreement", "res_id": agreement_id} for i, agreement_id in enumerate(agreement_ids)])
        for agreement_id in agreement_ids:
            started = time.perf_counter()
            wizard_id = rpc("esign.send.wizard", "create", {"agreement_id": agreement_id},
                            context={"default_agreement_id": agreement_id})
            rpc("esign.send.wizard", "action_send", [wizard_id])
            self.send_seconds.append(time.perf_counter() - started)
            self.sent += 1
        # The Demo send runs right after each wizard's commit; the cron is the safety net. Bounded wait.
        deadline = time.monotonic() + 120
        while len(self.open_requests()) < total_open and time.monotonic() < deadline:
            time.sleep(0.2)
        states = dict(self.query("SELECT state, count(*) FROM esign_request GROUP BY state"))
        if states.get("sent", 0) < total_open:
            raise RuntimeError(f"only {states} after sending {missing} more; see {self.logs['server']}")

    # ------------------------------------------------------------------ requests we measure

    def demo_callback(self, request, client_signs=False):
        """A body and headers as the Demo provider sends them (api/demo.py), for ``request``."""
        _request_id, reference, provider_ref = request
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0).isoformat()
        signers = []
        for signer in self.signers(request[0]):
            state, acted = signer["state"], None
            if client_signs:
                if signer["role"] == "client":
                    state, acted = "signed", now
                elif state == "waiting":
                    state = "pending"
            signers.append({"key": f"signer-{signer['id']}", "email": signer["email"],
                            "ref": signer["provider_ref"] or "", "state": state, "acted_at": acted, "reason": ""})
        payload = {
            "id": uuid.uuid4().hex, "type": "signer.signed" if client_signs else "envelope.viewed",
            "envelope": provider_ref, "reference": reference, "envelope_state": "sent", "completed_at": None,
            "reason": "", "occurred_at": now, "signers": signers,
        }
        body = json.dumps(payload).encode()
        demo_wire.parse(body)  # the module's own parser accepts it (raises otherwise)
        headers = {"Content-Type": "application/json",
                   "X-Esign-Demo-Signature": demo_wire.sign(self.demo_secret, body)}
        return body, headers

    def post_demo(self, request, client_signs=False):
        body, headers = self.demo_callback(request, client_signs)
        return http_post(self.port, "/esign/webhook/demo", body, headers)

    def post_stripe(self):
        token = uuid.uuid4().hex
        event = {
            "id": f"evt_bench_{token}", "object": "event", "api_version": "2019-05-16",
            "created": int(time.time()), "livemode": False, "type": "payment_intent.succeeded",
            "data": {"object": {
                "id": f"pi_bench_{token}", "object": "payment_intent", "amount": 12300, "amount_received": 12300,
                "currency": "eur", "description": f"BENCH-UNKNOWN-{token}", "status": "succeeded",
                "payment_method": f"pm_bench_{token}", "customer": None,
            }},
        }
        body = json.dumps(event).encode()
        timestamp = int(time.time())
        digest = hmac.new(self.stripe_secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "Stripe-Signature": f"t={timestamp},v1={digest}"}
        return http_post(self.port, "/payment/stripe/webhook", body, headers)

    def wait_events_applied(self, timeout=60):
        """Bounded wait until the cron has applied every stored notification."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.query("SELECT count(*) FROM esign_request_event WHERE state = 'received'")[0][0]
            if not left:
                return 0
            time.sleep(0.05)
        return left


# ---------------------------------------------------------------------------------------- measurements

def measure_queries(bench, access_log, n_open, callbacks, gap):
    bench.send_until(n_open)
    bench.wait_events_applied()
    target = bench.open_requests()[0]  # always the same request: only N changes
    offset = access_log.offset()
    statuses, latencies = [], []
    for _ in range(callbacks):
        status, _body, seconds = bench.post_demo(target)
        statuses.append(status)
        latencies.append(seconds)
        time.sleep(gap)
    time.sleep(0.3)  # the access-log line is written when the answer starts: already there
    lines = access_log.lines_since(offset, "/esign/webhook/demo")
    counts = [int(line["queries"]) for line in lines if line["queries"] != "-"]
    sql_ms = [float(line["sql"]) * 1000 for line in lines if line["sql"] != "-"]
    other_ms = [float(line["other"]) * 1000 for line in lines if line["other"] != "-"]
    left = bench.wait_events_applied()
    return {"n_open": len(bench.open_requests()), "callbacks": callbacks, "ok": statuses.count(200),
            "counts": counts, "sql_ms": sql_ms, "other_ms": statistics.median(other_ms) if other_ms else None,
            "lat_ms": [s * 1000 for s in latencies], "unapplied": left}


def measure_latency(bench, access_log, n, gap, rng, exclude):
    pool = [r for r in bench.open_requests() if r[0] not in exclude]
    results = {"a": [], "b": []}
    statuses = {"a": [], "b": []}
    offset = access_log.offset()
    for _ in range(n):
        order = ["a", "b"]
        rng.shuffle(order)
        for kind in order:
            if kind == "a":
                status, _body, seconds = bench.post_demo(rng.choice(pool))
            else:
                status, _body, seconds = bench.post_stripe()
            statuses[kind].append(status)
            results[kind].append(seconds * 1000)
            time.sleep(gap)
    time.sleep(0.3)
    stripe_lines = access_log.lines_since(offset, "/payment/stripe/webhook")
    demo_lines = access_log.lines_since(offset, "/esign/webhook/demo")
    left = bench.wait_events_applied()
    return results, statuses, {"demo": demo_lines, "stripe": stripe_lines}, left


def measure_apply(bench, runs, gap, candidates):
    """Callback saying the client signed, then poll the signer's state in the database."""
    times, response_ms, timeouts, statuses = [], [], 0, []
    for request in candidates[:runs]:
        client = next(s for s in bench.signers(request[0]) if s["role"] == "client")
        if client["state"] == "signed":
            continue
        body, headers = bench.demo_callback(request, client_signs=True)
        started = time.perf_counter()
        status, _data, seconds = http_post(bench.port, "/esign/webhook/demo", body, headers)
        statuses.append(status)
        response_ms.append(seconds * 1000)
        deadline = started + 30  # a bound, not an assertion: a run that never applies is counted apart
        applied = None
        with bench.db.cursor() as cr:
            while time.perf_counter() < deadline:
                cr.execute("SELECT state FROM esign_request_signer WHERE id = %s", [client["id"]])
                if cr.fetchone()[0] == "signed":
                    applied = time.perf_counter() - started
                    break
                time.sleep(0.005)
        if applied is None:
            timeouts += 1
        else:
            times.append(applied * 1000)
        time.sleep(gap)
    return times, response_ms, timeouts, statuses


# ---------------------------------------------------------------------------------------- report

def fmt(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def stats_row(label, values, target="", verdict=""):
    if not values:
        return f"| {label} | 0 | – | – | – | – | {target} | {verdict} |"
    return (f"| {label} | {len(values)} | {fmt(percentile(values, 50))} | {fmt(percentile(values, 90))} | "
            f"{fmt(percentile(values, 99))} | {fmt(max(values))} | {target} | {verdict} |")


def report(info, ctx, lat, statuses, lines, left_ab, apply_res, query_levels):
    a, b = lat["a"], lat["b"]
    a50, b50 = percentile(a, 50), percentile(b, 50)
    ratio = a50 / b50
    times, response_ms, timeouts, apply_statuses = apply_res
    out = []
    out.append("## Webhook benchmark: esign_connector Demo callback vs Odoo's Stripe webhook\n")
    out.append("| machine / run | |")
    out.append("|---|---|")
    out.append(f"| date | {ctx['date']} |")
    out.append(f"| nproc | {info['nproc']} |")
    out.append(f"| CPU | {info['cpu']} |")
    out.append(f"| RAM | {info['ram']} |")
    out.append(f"| load average (1/5/15 min) | before install {info['load_start']}; after the run {ctx['load_end']} |")
    out.append(f"| kernel / Python | {info['kernel']} / {platform.python_version()} |")
    out.append(f"| Odoo | {ctx['odoo']} — one server, `--workers=0` (threaded), `--max-cron-threads=1`, "
               f"127.0.0.1:{ctx['port']}, log level warn + werkzeug:INFO |")
    out.append(f"| PostgreSQL | {ctx['pg']} ({ctx['pg_where']}) |")
    out.append(f"| database | `{ctx['db']}`, fresh: `-i esign_connector,payment_stripe` with demo data "
               f"(installed in {ctx['install_s']:.0f} s) |")
    out.append(f"| client | Python http.client, a new TCP connection per request, sequential, "
               f"{ctx['gap_ms']:.0f} ms pause after each request; a/b in a random order per pair (seed {ctx['seed']}) |")
    out.append(f"| applying | {ctx['processing']} |")
    out.append(f"| sends | {ctx['sent']} contracts through `esign.send.wizard.action_send` over JSON-RPC "
               f"(p50 {ctx['send_p50']:.0f} ms per wizard create + send) |")
    out.append("")
    out.append("| measurement | n | p50 ms | p90 ms | p99 ms | max ms | target | result |")
    out.append("|---|---|---|---|---|---|---|---|")
    bad_a = len(statuses["a"]) - statuses["a"].count(200)
    bad_b = len(statuses["b"]) - statuses["b"].count(200)
    out.append(stats_row(f"a. Demo callback accepted (200){f', {bad_a} not 200' if bad_a else ''}", a))
    out.append(stats_row(f"b. Stripe webhook, unknown payment (200){f', {bad_b} not 200' if bad_b else ''}", b))
    out.append(f"| c. ratio a.p50 / b.p50 | – | {ratio:.2f} | {percentile(a, 90) / percentile(b, 90):.2f} (p90) | "
               f"{percentile(a, 99) / percentile(b, 99):.2f} (p99) | – | ≤ 1.2 | "
               f"{'met' if ratio <= 1.2 else 'NOT met'} |")
    verdict = "–" if not times else ("met" if percentile(times, 50) < 2000 else "NOT met")
    label = "d. callback → client signer `signed` (DB poll 5 ms)"
    if timeouts:
        label += f", {timeouts} not applied within 30 s"
    out.append(stats_row(label, times, "p50 < 2000 ms", verdict))
    out.append(stats_row("d'. the 200 answer of those callbacks", response_ms))
    out.append("")
    out.append("| e. open requests (N) | callbacks (200) | queries per callback: min / median / max | "
               "SQL time ms, median | other time ms, median | latency p50 ms |")
    out.append("|---|---|---|---|---|---|")
    for level in query_levels:
        counts = level["counts"]
        q = f"{min(counts)} / {statistics.median(counts):g} / {max(counts)}" if counts else "– (no log line)"
        out.append(f"| {level['n_open']} | {level['callbacks']} ({level['ok']}) | {q} | "
                   f"{fmt(statistics.median(level['sql_ms']) if level['sql_ms'] else None)} | "
                   f"{fmt(level['other_ms'])} | {fmt(percentile(level['lat_ms'], 50))} |")
    counts_all = [c for level in query_levels for c in level["counts"]]
    constant = counts_all and len({statistics.median(level['counts']) for level in query_levels if level['counts']}) == 1
    out.append("")
    demo_q = [int(x["queries"]) for x in lines["demo"] if x["queries"] != "-"]
    stripe_q = [int(x["queries"]) for x in lines["stripe"] if x["queries"] != "-"]
    demo_sql = [float(x["sql"]) * 1000 for x in lines["demo"] if x["sql"] != "-"]
    stripe_sql = [float(x["sql"]) * 1000 for x in lines["stripe"] if x["sql"] != "-"]
    out.append("| server side during a/b (Odoo access log) | queries, median | SQL ms, median | lines with counts |")
    out.append("|---|---|---|---|")
    out.append(f"| a. Demo callback | {statistics.median(demo_q) if demo_q else '–'} | "
               f"{fmt(statistics.median(demo_sql) if demo_sql else None)} | {len(demo_q)} / {len(lines['demo'])} |")
    out.append(f"| b. Stripe webhook | {statistics.median(stripe_q) if stripe_q else '–'} | "
               f"{fmt(statistics.median(stripe_sql) if stripe_sql else None)} | {len(stripe_q)} / {len(lines['stripe'])} |")
    out.append("")
    out.append(f"Queries per accepted callback {'do not change' if constant else 'CHANGE'} with N "
               f"(medians {', '.join(str(statistics.median(level['counts'])) for level in query_levels if level['counts'])}). "
               f"Events left unapplied after each phase (bounded wait): a/b {left_ab}, "
               f"e {', '.join(str(level['unapplied']) for level in query_levels)}.")
    out.append("Server-side numbers are Odoo's own access-log counters (odoo/netsvc.py PerfFilter): queries and "
               "SQL time of the request thread up to the answer; 'other' is the rest of its wall time (Python, "
               "and opening PostgreSQL connections).")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="a/b pairs (default 300)")
    parser.add_argument("--apply-runs", type=int, default=30, help="callback-to-applied runs (default 30)")
    parser.add_argument("--open", default="1,50,200", help="open-request levels for the query count")
    parser.add_argument("--query-callbacks", type=int, default=20, help="callbacks per open-request level")
    parser.add_argument("--warmup", type=int, default=30, help="unrecorded a/b pairs first (default 30)")
    parser.add_argument("--gap-ms", type=float, default=100.0,
                        help="pause after each request, so that the cron's work on the previous callback is done "
                        "(default 100)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--db", default="esign_bench")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the server's database (and logs) at the end")
    args = parser.parse_args()
    if args.db in RESERVED_DBS:
        parser.error(f"the database {args.db} belongs to others; choose another name")
    levels = sorted({int(x) for x in args.open.split(",") if x.strip()})
    if max(levels) < args.apply_runs + 1:
        levels.append(args.apply_runs + 1)  # (d) needs that many requests whose client has not signed

    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))
    info = machine_info()
    port = args.port or free_port()
    log(f"PostgreSQL and Odoo config through tools/_env.sh (database {args.db}, port {port})")
    env = env_from_shell(args.db, port)
    run_dir = os.path.join(env["STATE_DIR"], f"bench-{args.db}")
    os.makedirs(run_dir, exist_ok=True)
    logs = {"install": os.path.join(run_dir, "install.log"), "server": os.path.join(run_dir, "server.log")}
    for path in logs.values():
        if os.path.exists(path):
            os.remove(path)
    server = OdooServer(env, args.db, port, logs["server"])
    bench = None
    table = None
    try:
        drop_database(env, args.db)
        log(f"installing esign_connector and payment_stripe with demo data (log: {logs['install']})")
        install_s = server.install(logs["install"])
        log(f"installed in {install_s:.0f} s; starting the server")
        server.start()
        rpc = JsonRpc(port, args.db)
        server.wait_ready(rpc)
        bench = Bench(args, env, port, rpc, logs)
        bench.configure()
        access_log = AccessLog(logs["server"])
        gap = args.gap_ms / 1000
        rng = random.Random(args.seed)

        bench.send_until(1)
        log("warming up")
        measure_latency(bench, access_log, args.warmup, gap, rng, exclude=set())

        query_levels = []
        for level in levels:
            log(f"e. {level} open request(s): sending, then {args.query_callbacks} callbacks")
            query_levels.append(measure_queries(bench, access_log, level, args.query_callbacks, gap))

        open_now = bench.open_requests()
        apply_candidates = [r for r in open_now[1:] if any(
            s["role"] == "client" and s["state"] != "signed" for s in bench.signers(r[0]))][-args.apply_runs:]
        exclude = {r[0] for r in apply_candidates}
        log(f"a/b. {args.n} interleaved pairs on {len(open_now)} open requests")
        lat, statuses, lines, left_ab = measure_latency(bench, access_log, args.n, gap, rng, exclude)
        log(f"d. {len(apply_candidates)} callback-to-applied runs")
        apply_res = measure_apply(bench, args.apply_runs, max(gap, 0.2), apply_candidates)

        pg_version = bench.query("SHOW server_version")[0][0]
        queue_job = bench.query("SELECT state FROM ir_module_module WHERE name = 'queue_job'")
        queue_job = queue_job[0][0] if queue_job else "absent"
        ctx = {
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "load_end": loadavg(),
            "odoo": odoo_version(env), "port": port, "db": args.db, "install_s": install_s,
            "pg": pg_version, "pg_where": f"{env['DB_HOST']}:{env['DB_PORT']}",
            "gap_ms": args.gap_ms, "seed": args.seed, "sent": bench.sent,
            "send_p50": percentile(bench.send_seconds, 50) * 1000,
            "processing": ("queue_job jobs" if queue_job == "installed" else
                           f"cron `esign_connector.ir_cron_esign_process`, `_trigger()` per callback "
                           f"(queue_job {queue_job})"),
        }
        table = report(info, ctx, lat, statuses, lines, left_ab, apply_res, query_levels)
    finally:
        if bench is not None:
            bench.db.close()
        log("stopping the server")
        server.stop()
        if args.keep:
            log(f"kept database {args.db}; logs in {run_dir}")
        else:
            log(f"dropping database {args.db}")
            drop_database(env, args.db)
            conf = env.get("CONF")
            if conf and os.path.basename(conf) == f"odoo-{args.db}.conf" and os.path.exists(conf):
                os.remove(conf)
    if table:
        print(table)
    log(f"logs: {run_dir}")
    return 0


def odoo_version(env):
    out = subprocess.run([env["ODOO_PY"], "-c", "import odoo.release as r; print(r.version)"],
                         capture_output=True, text=True, check=False)
    return f"Odoo {out.stdout.strip() or '18'}"


if __name__ == "__main__":
    sys.exit(main())
