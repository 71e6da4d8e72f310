#!/usr/bin/env python3
"""Campaign benchmark: CSV campaigns of 100, 300 and 1,000 signers on the Demo provider.

One command, stops by itself, prints a markdown table::

    ~/odoo18/venv/bin/python bench/campaign.py [--sizes 100,300,1000] [--rate-rows 150] ...

What it does (loopback only, bounded waits, nothing asserted — these are measurements):

1. PostgreSQL and the Odoo configuration come from ``tools/_env.sh``, started and written the way
   ``bench/webhook_latency.py`` does it (its helpers are reused): the throw-away cluster in
   /tmp/esign_connector unless PGHOST is set. A fresh database (``esign_bench_campaign``) gets
   ``-i esign_connector`` with demo data (queue_job is not installed: the cron + post-commit path).
2. **Queries per signer.** One Odoo server (``--workers=0``, ``--max-cron-threads=1``, 127.0.0.1, a
   free port) with Odoo's SQL debug log (``--log-handler=odoo.sql_db:DEBUG``): a campaign of each
   size is uploaded and started over JSON-RPC as admin (a contract template with a PDF, the same
   document for everyone), and the SQL queries the server logs from the start's answer until the
   last request is ``sent`` are divided by the number of signers. The log slows the server down, so
   this pass's times are not reported.
3. **Wall time and memory.** The server is restarted without the SQL log; one campaign of the
   largest size: time from the start's answer until all its requests are ``sent`` (polled every
   0.25 s straight from PostgreSQL, not through Odoo), the server process's peak resident memory
   (``VmHWM`` of ``/proc/<pid>/status``) and its CPU time.
4. **A provider's limit.** Same server: the Demo provider gets ``rate_limit_calls`` /
   ``rate_limit_period`` (default 50 calls per 60 s: DocuSign's 3,000 an hour, scaled down), then a
   campaign of ``--rate-rows`` signers. The Demo envelopes made per window are counted from their
   creation dates (windows aligned on the period, as the module's are), next to the calls reserved
   per window, and every row is checked to have exactly one request, sent, and one envelope.
5. The server is stopped and the database (and its filestore) dropped at the end, also on error or
   Ctrl+C (``--keep`` keeps them).
"""
import argparse
import base64
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, BENCH_DIR)

import webhook_latency as wl  # noqa: E402  (the webhook bench's server, database and RPC helpers)

RESERVED_DBS = wl.RESERVED_DBS | {"esign_test_odoo", "esign_bench"}
log = wl.log
SQL_LINE = re.compile(rb" odoo\.sql_db: \[[\d.]+ ms\] query: ")


class CampaignServer(wl.OdooServer):
    """The webhook bench's server, with esign_connector only and optional extra log handlers."""

    def __init__(self, env, db, port, logfile, cron_threads=1, extra=()):
        super().__init__(env, db, port, logfile)
        self.cron_threads, self.extra = cron_threads, list(extra)

    def install(self, install_log):
        cmd = self.odoo_cmd("-i", "esign_connector", "--stop-after-init", "--log-level=warn",
                            f"--logfile={install_log}", "--max-cron-threads=0")
        started = time.monotonic()
        result = subprocess.run(cmd, check=False)
        if result.returncode:
            raise RuntimeError(f"installation failed (exit {result.returncode}), see {install_log}")
        return time.monotonic() - started

    def start(self):
        cmd = self.odoo_cmd("--workers=0", f"--max-cron-threads={self.cron_threads}", "--http-interface=127.0.0.1",
                            f"--http-port={self.port}", "--log-level=warn", "--log-handler=werkzeug:INFO",
                            *self.extra, f"--logfile={self.logfile}")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)

    def proc_status(self):
        """Peak and current resident memory (MiB) and CPU seconds of the server process."""
        values = {}
        with open(f"/proc/{self.proc.pid}/status", encoding="utf-8") as handle:
            for line in handle:
                key, _sep, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    values[key] = int(rest.split()[0]) / 1024
        with open(f"/proc/{self.proc.pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        values["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return values


class Bench:
    def __init__(self, args, env, port, rpc):
        self.args, self.env, self.port, self.rpc = args, env, port, rpc
        self.db = wl.pg_connect(env, args.db)
        self.db.autocommit = True
        self.template_id = None
        self.provider_id = None
        self.counter = 0

    def query(self, sql, params=None):
        with self.db.cursor() as cr:
            cr.execute(sql, params)
            return cr.fetchall()

    def configure(self):
        rpc = self.rpc
        rpc("ir.config_parameter", "set_param", "web.base.url", f"http://127.0.0.1:{self.port}")
        self.provider_id = rpc("ir.model.data", "search_read", [("module", "=", "esign_connector"),
                                                                ("name", "=", "esign_provider_demo")],
                               fields=["res_id"], limit=1)[0]["res_id"]
        kind = rpc("ir.model.data", "search_read", [("module", "=", "esign_connector"),
                                                    ("name", "=", "agreement_type_esign")],
                   fields=["res_id"], limit=1)[0]["res_id"]
        self.template_id = rpc("agreement", "create", {
            "code": "BENCH-TPL", "name": "Bench maintenance contract", "is_template": True,
            "agreement_type_id": kind})
        rpc("ir.attachment", "create", {
            "name": "bench-contract.pdf", "datas": base64.b64encode(wl.small_pdf("Bench contract")).decode(),
            "mimetype": "application/pdf", "res_model": "agreement", "res_id": self.template_id})

    def csv(self, rows):
        """A file like a customer's: shared companies, a VAT, an extra column used in the message."""
        self.counter += 1
        lines = ["name;email;phone;company;vat;monthly_fee"]
        for i in range(rows):
            company = i % 25
            lines.append(f"Signer {self.counter}-{i};signer{i}@c{self.counter}.bench.example.com;+48 600 {i:06d};"
                         f"Bench Client {self.counter}-{company} Sp. z o.o.;PL{self.counter:03d}{company:07d};{10 + i % 90} EUR")
        return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()

    def run_campaign(self, rows, access_log=None, timeout=1800):
        """Upload, start, wait until every request is sent. Returns the timings (s) and the campaign id."""
        started = time.perf_counter()
        campaign_id = self.rpc("esign.campaign", "create", {
            "name": f"Bench {rows} signers #{self.counter + 1}", "template_id": self.template_id,
            "provider_id": self.provider_id, "template_document": self.args.document,
            "file": base64.b64encode(self.csv(rows)).decode(), "file_name": "bench.csv",
            "subject": "Please sign: {{ object.name }}",
            "message": "Dear {{ row.name }}, your monthly fee is {{ row.monthly_fee }}."})
        imported = time.perf_counter() - started
        problems = self.rpc("esign.campaign", "read", [campaign_id], ["problem_message", "problem_count"])[0]
        if problems["problem_message"] or problems["problem_count"]:
            raise RuntimeError(f"the bench campaign does not check clean: {problems}")
        offset = access_log.offset() if access_log else None
        clicked = time.perf_counter()
        self.rpc("esign.campaign", "action_start", [campaign_id])
        start_answered = time.perf_counter()
        offset_after_start = access_log.offset() if access_log else None
        deadline = start_answered + timeout
        done_at = None
        sent = 0
        while time.perf_counter() < deadline:
            sent, state = self.query("""
                SELECT count(q.id) FILTER (WHERE q.state = 'sent'), max(c.state)
                  FROM esign_campaign c LEFT JOIN esign_campaign_row r ON r.campaign_id = c.id
                  LEFT JOIN esign_request q ON q.id = r.request_id
                 WHERE c.id = %s""", [campaign_id])[0]
            if state == "done" and done_at is None:
                done_at = time.perf_counter()
            if sent >= rows:
                break
            time.sleep(0.25)
        all_sent = time.perf_counter()
        result = {"campaign_id": campaign_id, "rows": rows, "sent": sent, "import_s": imported,
                  "start_s": start_answered - clicked, "done_s": (done_at or all_sent) - start_answered,
                  "sent_s": all_sent - start_answered, "offsets": (offset, offset_after_start)}
        return result

    def check_rows(self, campaign_id):
        """Each row: one contract made from it, one request, sent, one Demo envelope."""
        rows, contracts, requests, sent, envelopes, lost = self.query("""
            SELECT count(DISTINCT r.id),
                   count(DISTINCT a.id),
                   count(DISTINCT q.id),
                   count(DISTINCT q.id) FILTER (WHERE q.state = 'sent'),
                   count(DISTINCT e.id),
                   count(DISTINCT r.id) FILTER (WHERE q.id IS NULL OR q.state <> 'sent')
              FROM esign_campaign_row r
              LEFT JOIN agreement a ON a.esign_origin_ref = 'esign.campaign.row,' || r.id
              LEFT JOIN esign_request q ON q.agreement_id = a.id
              LEFT JOIN esign_demo_envelope e ON e.external_reference = q.reference
             WHERE r.campaign_id = %s""", [campaign_id])[0]
        return {"rows": rows, "contracts": contracts, "requests": requests, "sent": sent,
                "envelopes": envelopes, "lost": lost}

    def windows(self, campaign_id, period):
        envelopes = self.query("""
            SELECT floor(extract(epoch FROM e.create_date) / %s)::bigint AS w, count(*)
              FROM esign_campaign_row r JOIN esign_request q ON q.id = r.request_id
              JOIN esign_demo_envelope e ON e.external_reference = q.reference
             WHERE r.campaign_id = %s GROUP BY w ORDER BY w""", [period, campaign_id])
        reserved = dict(self.query("""
            SELECT floor(extract(epoch FROM window_start) / %s)::bigint, calls
              FROM esign_provider_rate_window WHERE provider_id = %s""", [period, self.provider_id]))
        return [(datetime.datetime.fromtimestamp(w * period, datetime.timezone.utc).strftime("%H:%M:%S"),
                 count, reserved.get(w)) for w, count in envelopes]


def count_sql_lines(path, start, end):
    """SQL queries the server logged between two offsets of its log file."""
    count = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = handle.read(min(remaining, 1 << 22))
            if not chunk:
                break
            remaining -= len(chunk)
            count += len(SQL_LINE.findall(chunk))
    return count


class LogFile:
    def __init__(self, path):
        self.path = path

    def offset(self):
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0


def wait_log_quiet(log_file, seconds=1.5, timeout=60):
    """Wait until the server log stops growing (the last post-commit sends are logged)."""
    deadline = time.monotonic() + timeout
    last, since = log_file.offset(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = log_file.offset()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            break
    return last


def report(info, ctx, query_runs, wall, rate):
    out = ["## Campaign benchmark: esign_connector CSV campaigns on the Demo provider\n",
           "| machine / run | |", "|---|---|",
           f"| date | {ctx['date']} |",
           f"| nproc / CPU / RAM | {info['nproc']} / {info['cpu']} / {info['ram']} |",
           f"| load average (1/5/15 min) | before install {info['load_start']}; after the run {ctx['load_end']} |",
           f"| kernel / Python | {info['kernel']} / {platform.python_version()} |",
           f"| Odoo | {ctx['odoo']} — one server, `--workers=0` (threaded), `--max-cron-threads={ctx['cron_threads']}`, "
           f"127.0.0.1 |",
           f"| PostgreSQL | {ctx['pg']} ({ctx['pg_where']}) |",
           f"| database | `{ctx['db']}`, fresh: `-i esign_connector` with demo data (installed in {ctx['install_s']:.0f} s); "
           f"queue_job not installed: campaign cron + post-commit sends |",
           f"| campaign | CSV (name, email, phone, company, vat, monthly_fee), 25 companies per file, template with a PDF, "
           f"document: `{ctx['document']}`; message with `{{{{ row.name }}}}`, `{{{{ row.monthly_fee }}}}`, subject with "
           f"`{{{{ object.name }}}}`; batches of 50 rows, committed each |",
           ""]
    out += ["| signers | queries from the start's answer to the last `sent` | queries per signer | "
            "queries per additional signer (vs the size before) | start click (queries) |",
            "|---|---|---|---|---|"]
    marginal = []
    for index, run in enumerate(query_runs):
        extra = "–"
        if index:
            previous = query_runs[index - 1]
            marginal.append((run["queries"] - previous["queries"]) / (run["rows"] - previous["rows"]))
            extra = f"{marginal[-1]:.1f}"
        out.append(f"| {run['rows']} | {run['queries']} | {run['queries'] / run['rows']:.1f} | {extra} | "
                   f"{run['start_queries']} |")
    out.append("")
    if marginal:
        spread = (max(marginal) - min(marginal)) / min(marginal) * 100
        fixed = query_runs[0]["queries"] - marginal[0] * query_runs[0]["rows"]
        out.append(f"Each additional signer costs {min(marginal):.1f} – {max(marginal):.1f} queries ({spread:.1f} % apart): "
                   f"{'constant in the campaign size' if spread <= 10 else 'NOT constant'}; about {fixed:.0f} queries "
                   "per campaign are fixed (cron runs, the closing summary). SQL debug-log pass: its times are not "
                   "reported.")
    out.append("")
    out += ["| measurement (no SQL log) | value |", "|---|---|",
            f"| signers | {wall['rows']} |",
            f"| upload + check of the file (`create` RPC) | {wall['import_s']:.1f} s |",
            f"| start click (`action_start` RPC) | {wall['start_s'] * 1000:.0f} ms |",
            f"| start → every contract made and its request queued (campaign done) | {wall['done_s']:.1f} s |",
            f"| start → all {wall['rows']} requests `sent` (wall time) | **{wall['sent_s']:.1f} s** "
            f"({wall['rows'] / wall['sent_s']:.1f} signers/s, {wall['sent_s'] / wall['rows'] * 1000:.0f} ms each) |",
            f"| Odoo server CPU time during the campaign | {wall['cpu_s']:.1f} s |",
            f"| Odoo server peak resident memory (VmHWM) | **{wall['hwm']:.0f} MiB** (resident {wall['rss_before']:.0f} MiB "
            f"before the campaign, {wall['rss_after']:.0f} MiB after) |",
            f"| rows: contracts / requests / sent / Demo envelopes / lost | {wall['check']['contracts']} / "
            f"{wall['check']['requests']} / {wall['check']['sent']} / {wall['check']['envelopes']} / {wall['check']['lost']} |",
            ""]
    out += [f"Provider limit: Demo `rate_limit_calls` = {rate['calls']}, `rate_limit_period` = {rate['period']} s "
            f"(3,000 an hour scaled down), a campaign of {rate['rows']} signers; sent in {rate['sent_s']:.0f} s.", "",
            "| window start (UTC) | Demo envelopes created (by create date) | calls reserved | limit |",
            "|---|---|---|---|"]
    for start, count, reserved in rate["windows"]:
        out.append(f"| {start} | {count} | {reserved if reserved is not None else '–'} | {rate['calls']} |")
    worst = max((count for _start, count, _r in rate["windows"]), default=0)
    check = rate["check"]
    out.append("")
    out.append(f"Most envelopes in one window: {worst} (limit {rate['calls']}: "
               f"{'never exceeded' if worst <= rate['calls'] else 'EXCEEDED'}). Rows: {check['rows']}, contracts "
               f"{check['contracts']}, requests {check['requests']}, sent {check['sent']}, envelopes {check['envelopes']}, "
               f"lost {check['lost']}.")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,300,1000", help="campaign sizes for the query count")
    parser.add_argument("--rate-rows", type=int, default=150, help="signers of the rate-limited campaign")
    parser.add_argument("--rate-calls", type=int, default=50)
    parser.add_argument("--rate-period", type=int, default=60)
    parser.add_argument("--document", choices=("template", "report"), default="template",
                        help="template: the template's PDF for everyone; report: each contract printed (wkhtmltopdf)")
    parser.add_argument("--cron-threads", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=1800, help="bound of each wait (s)")
    parser.add_argument("--db", default="esign_bench_campaign")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database and logs at the end")
    args = parser.parse_args()
    if args.db in RESERVED_DBS:
        parser.error(f"the database {args.db} belongs to others; choose another name")
    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})

    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))
    info = wl.machine_info()
    port = args.port or wl.free_port()
    log(f"PostgreSQL and Odoo config through tools/_env.sh (database {args.db}, port {port})")
    env = wl.env_from_shell(args.db, port)
    run_dir = os.path.join(env["STATE_DIR"], f"bench-{args.db}")
    os.makedirs(run_dir, exist_ok=True)
    logs = {name: os.path.join(run_dir, f"{name}.log") for name in ("install", "queries", "server")}
    for path in logs.values():
        if os.path.exists(path):
            os.remove(path)
    server = None
    bench = None
    table = None
    try:
        wl.drop_database(env, args.db)
        installer = CampaignServer(env, args.db, port, logs["install"])
        log(f"installing esign_connector with demo data (log: {logs['install']})")
        install_s = installer.install(logs["install"])

        # 2. queries per signer, with the SQL debug log
        server = CampaignServer(env, args.db, port, logs["queries"], args.cron_threads,
                                extra=["--log-handler=odoo.sql_db:DEBUG"])
        server.start()
        rpc = wl.JsonRpc(port, args.db)
        server.wait_ready(rpc)
        bench = Bench(args, env, port, rpc)
        bench.configure()
        sql_log = LogFile(logs["queries"])
        query_runs = []
        for rows in sizes:
            log(f"queries: campaign of {rows} signers (SQL log on)")
            run = bench.run_campaign(rows, access_log=sql_log, timeout=args.timeout)
            if run["sent"] < rows:
                raise RuntimeError(f"only {run['sent']} of {rows} sent within {args.timeout} s; see {logs['queries']}")
            end = wait_log_quiet(sql_log)
            offset, after_start = run["offsets"]
            run["queries"] = count_sql_lines(logs["queries"], after_start, end)
            run["start_queries"] = count_sql_lines(logs["queries"], offset, after_start)
            query_runs.append(run)
            log(f"  {run['queries']} queries, {run['queries'] / rows:.1f} per signer")
        server.stop()

        # 3. wall time and memory, without the SQL log
        server = CampaignServer(env, args.db, port, logs["server"], args.cron_threads)
        server.start()
        server.wait_ready(rpc)
        largest = max(sizes)
        before = server.proc_status()
        log(f"wall time: campaign of {largest} signers")
        wall = bench.run_campaign(largest, timeout=args.timeout)
        after = server.proc_status()
        wall.update(hwm=after["VmHWM"], rss_before=before["VmRSS"], rss_after=after["VmRSS"],
                    cpu_s=after["cpu"] - before["cpu"], check=bench.check_rows(wall["campaign_id"]))
        log(f"  all sent in {wall['sent_s']:.1f} s, peak {after['VmHWM']:.0f} MiB")

        # 4. the provider's limit
        rpc("esign.provider", "write", [bench.provider_id], {"rate_limit_calls": args.rate_calls,
                                                             "rate_limit_period": args.rate_period})
        log(f"rate limit {args.rate_calls}/{args.rate_period} s: campaign of {args.rate_rows} signers")
        rate = bench.run_campaign(args.rate_rows, timeout=args.timeout)
        rate.update(calls=args.rate_calls, period=args.rate_period, check=bench.check_rows(rate["campaign_id"]),
                    windows=bench.windows(rate["campaign_id"], args.rate_period))

        ctx = {
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "load_end": wl.loadavg(),
            "odoo": wl.odoo_version(env), "db": args.db, "install_s": install_s,
            "pg": bench.query("SHOW server_version")[0][0], "pg_where": f"{env['DB_HOST']}:{env['DB_PORT']}",
            "document": args.document, "cron_threads": args.cron_threads,
        }
        table = report(info, ctx, query_runs, wall, rate)
    finally:
        if bench is not None:
            bench.db.close()
        if server is not None:
            log("stopping the server")
            server.stop()
        if args.keep:
            log(f"kept database {args.db}; logs in {run_dir}")
        else:
            log(f"dropping database {args.db}")
            wl.drop_database(env, args.db)
            conf = env.get("CONF")
            if conf and os.path.basename(conf) == f"odoo-{args.db}.conf" and os.path.exists(conf):
                os.remove(conf)
            if os.path.exists(logs["queries"]):
                os.remove(logs["queries"])  # large: every SQL query of the first pass
    if table:
        print(table)
    log(f"logs: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
