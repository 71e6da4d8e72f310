# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Real concurrent transactions: deliveries at the same time, sends at the same time, a retried send.

These need committed data and independent database connections, so they cannot live in a
TransactionCase: each test commits its own records on connections of its own (never the test
registry's shared cursor, which would serialise the threads) and removes them afterwards.
"""
import json
import sys
import threading
import traceback
from functools import partial

import psycopg2

from odoo import SUPERUSER_ID, sql_db
from odoo.exceptions import UserError
from odoo.modules.registry import Registry
from odoo.service.model import retrying
from odoo.tests import tagged
from odoo.tests.common import BaseCase, get_db_name
from odoo.tools import mute_logger

from ..api import demo as demo_wire
from ..models.esign_after_commit import new_environment
from .common import make_pdf

SECRET = "concurrency-secret"


@tagged("post_install", "-at_install")
class TestConcurrency(BaseCase):

    def setUp(self):
        super().setUp()
        self.dbname = get_db_name()
        self.registry = Registry(self.dbname)  # looked up once, here, in the runner's own thread
        with self.cursor() as cr:
            env = self.env_of(cr)
            if env.registry.in_test_mode():
                self.skipTest("the registry is in test mode: its cursors would share one transaction")
            self.queue_job_param = env["ir.config_parameter"].get_param("esign_connector.use_queue_job")
            env["ir.config_parameter"].set_param("esign_connector.use_queue_job", "False")  # the post-commit path
            provider = env.ref("esign_connector.esign_provider_demo")
            self.provider_backup = provider.read(
                ["state", "account_mode", "representative_email", "representative_first_name", "webhook_secret"])[0]
            provider.write({"state": "test", "account_mode": "central", "representative_email": "ceo@x.example.com",
                            "representative_first_name": "Ceo", "webhook_secret": SECRET})
            env.company.esign_provider_id = provider
            partner = env["res.partner"].create({"name": "Concurrent Client", "email": "cc@x.example.com"})
            agreement = env["agreement"].create({"code": "CONC-1", "name": "Concurrency", "partner_id": partner.id})
            env["ir.attachment"].create({
                "name": "c.pdf", "raw": make_pdf(), "mimetype": "application/pdf",
                "res_model": "agreement", "res_id": agreement.id})
            self.ids = {"partner": partner.id, "agreement": agreement.id, "provider": provider.id}
        self.addCleanup(self._cleanup)

    def cursor(self):
        """A connection of its own: a real, independent transaction."""
        return sql_db.db_connect(self.dbname).cursor()

    def env_of(self, cr, uid=SUPERUSER_ID):
        return new_environment(self.registry, cr, uid, {})

    def _cleanup(self):
        with self.cursor() as cr:
            env = self.env_of(cr)
            agreement = env["agreement"].browse(self.ids["agreement"])
            requests = agreement.esign_request_ids
            env["esign.demo.envelope"].search([("external_reference", "in", requests.mapped("reference"))]).unlink()
            env["esign.request.event"].search([("request_id", "in", requests.ids)]).unlink()
            requests.sudo().unlink()
            env["ir.attachment"].search([("res_model", "=", "agreement"), ("res_id", "=", agreement.id)]).unlink()
            agreement.activity_ids.unlink()
            agreement.unlink()
            env["res.partner"].browse(self.ids["partner"]).unlink()
            env["ir.config_parameter"].set_param("esign_connector.use_queue_job", self.queue_job_param)
            backup = dict(self.provider_backup)
            backup.pop("id")
            env["esign.provider"].browse(self.ids["provider"]).write(backup)

    def _in_threads(self, funcs):
        """Run each function in its own thread, all released at once; return results and errors."""
        barrier = threading.Barrier(len(funcs))
        results, errors = [None] * len(funcs), []
        mute = mute_logger("odoo.sql_db")  # the conflicts are the point: PostgreSQL reports them

        def run(index, func):
            try:
                barrier.wait(timeout=20)
                results[index] = func()
            except Exception as error:  # reported by the test, in its own thread
                errors.append(error)

        threads = [threading.Thread(target=run, args=(i, f), daemon=True) for i, f in enumerate(funcs)]
        with mute:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        stuck = [t for t in threads if t.is_alive()]
        frames = sys._current_frames()
        self.assertFalse(stuck, "a thread is stuck:\n" + "\n".join(
            "".join(traceback.format_stack(frames[t.ident])) for t in stuck if t.ident in frames))
        return results, errors

    @staticmethod
    def _transaction(func, env, tries=5):
        """Run ``func`` and commit (post-commit hooks included), retrying serialisation failures, as
        Odoo's HTTP layer does. (Not ``retrying`` itself in threads: on an error it looks the registry
        up by name, which waits on the lock Odoo's own test runner holds for its whole run.)"""
        for attempt in range(tries):
            try:
                result = func()
                env.cr.commit()
                return result
            except psycopg2.errors.SerializationFailure:
                env.cr.rollback()
                env.invalidate_all(flush=False)
                if attempt == tries - 1:
                    raise
            except Exception:
                env.cr.rollback()
                raise

    def _send(self, uid=SUPERUSER_ID):
        """The Send button's server side, in a transaction of its own that really commits."""
        with self.cursor() as cr:
            env = self.env_of(cr, uid)
            agreement = env["agreement"].browse(self.ids["agreement"])

            def button():
                wizard = env["esign.send.wizard"].with_context(default_agreement_id=agreement.id).create({})
                return wizard.action_send()

            return self._transaction(button, env)

    # ------------------------------------------------------------------ sending

    def _envelopes(self):
        with self.cursor() as cr:
            env = self.env_of(cr)
            requests = env["agreement"].browse(self.ids["agreement"]).esign_request_ids
            envelopes = env["esign.demo.envelope"].search([("external_reference", "in", requests.mapped("reference"))])
            return requests.read(["state", "provider_ref"]), len(envelopes)

    def test_two_users_sending_the_same_contract_make_one_envelope(self):
        results, errors = self._in_threads([self._send, self._send])
        self.assertEqual(len([r for r in results if r]), 1, results)
        self.assertEqual(len(errors), 1, errors)
        self.assertIsInstance(errors[0], UserError)
        self.assertIn("already", str(errors[0]))
        requests, envelopes = self._envelopes()
        self.assertEqual(len(requests), 1)
        self.assertEqual(requests[0]["state"], "sent", "sent right after the commit, by the post-commit hook")
        self.assertEqual(envelopes, 1)

    def test_a_retried_transaction_sends_once(self):
        """Odoo retries a whole RPC after a serialisation failure: the first try's send must vanish."""
        with self.cursor() as cr:
            env = self.env_of(cr)
            agreement = env["agreement"].browse(self.ids["agreement"])
            tries = []

            def button():
                tries.append(len(tries) + 1)
                if len(tries) == 1:  # someone else edits the contract after our snapshot: a real conflict
                    env.cr.execute("SELECT id FROM agreement WHERE id = %s", [agreement.id])
                    with self.cursor() as other:
                        other.execute("UPDATE agreement SET name = name || ' (edited)' WHERE id = %s",
                                      [agreement.id])
                wizard = env["esign.send.wizard"].with_context(default_agreement_id=agreement.id).create({})
                return wizard.action_send()  # its flush updates the contract: serialisation failure

            with mute_logger("odoo.sql_db"):  # the serialisation failure is the point
                retrying(button, env)  # Odoo's own retry loop, in the runner's own thread
        self.assertEqual(len(tries), 2)
        requests, envelopes = self._envelopes()
        self.assertEqual(len(requests), 1)
        self.assertEqual(requests[0]["state"], "sent")
        self.assertEqual(envelopes, 1, "the rolled-back try never reached the provider")

    # ------------------------------------------------------------------ notifications

    def _body(self, request, event_id, envelope_state, client, company):
        keys = request["keys"]
        return json.dumps({
            "id": event_id, "type": "test", "envelope": request["provider_ref"],
            "envelope_state": envelope_state, "occurred_at": "2026-11-23T10:00:00",
            "signers": [{"key": keys["client"], "state": client}, {"key": keys["company"], "state": company}],
        }).encode()

    def _deliver(self, body):
        with self.cursor() as cr:
            env = self.env_of(cr)
            headers = {demo_wire.SIGNATURE_HEADER: demo_wire.sign(SECRET, body)}
            func = partial(env["esign.request.event"]._esign_receive_webhook, "demo", headers, body, {})
            return self._transaction(func, env)

    def _process(self):
        with self.cursor() as cr:
            return self.env_of(cr)["esign.request.event"]._cron_esign_process()

    def test_concurrent_notifications_end_in_one_state(self):
        self._send()
        with self.cursor() as cr:  # both sign at the provider; the callbacks arrive together
            env = self.env_of(cr)
            request = env["agreement"].browse(self.ids["agreement"]).esign_request_ids
            info = {"id": request.id, "provider_ref": request.provider_ref,
                    "keys": {s.role: s._esign_key() for s in request.signer_ids}}
            envelope = env["esign.demo.envelope"].search([("reference", "=", request.provider_ref)])
            envelope.signer_ids.write({"state": "signed"})
            envelope.state = "signed"
        bodies = [
            self._body(info, "c-client", "sent", "signed", "pending"),
            self._body(info, "c-final", "signed", "signed", "signed"),
            self._body(info, "c-final", "signed", "signed", "signed"),  # the provider's retry, at once
            self._body(info, "c-client", "sent", "signed", "pending"),
        ]
        results, errors = self._in_threads([partial(self._deliver, body) for body in bodies])
        self.assertFalse(errors, errors)
        self.assertEqual(sorted(r[0] for r in results), [200, 200, 200, 200])
        # Two workers apply at the same time (the triggered cron and a second server's cron).
        _results, errors = self._in_threads([self._process, self._process])
        self.assertFalse(errors, errors)
        self._process()  # whatever a worker postponed on a stale snapshot
        with self.cursor() as cr:
            env = self.env_of(cr)
            request = env["esign.request"].browse(info["id"])
            self.assertEqual(request.state, "signed")
            self.assertEqual(request.signer_ids.mapped("state"), ["signed", "signed"])
            webhook_events = request.event_ids.filtered(lambda e: e.source == "webhook")
            self.assertEqual(sorted(webhook_events.mapped("dedup_key")), ["demo:c-client", "demo:c-final"])
            self.assertEqual(set(webhook_events.mapped("state")), {"processed"})
            self.assertEqual(len(request.signed_document_id), 1, "documents attached once")
            signed_notes = request.agreement_id.message_ids.filtered(lambda m: "signed by all parties" in (m.body or ""))
            self.assertEqual(len(signed_notes), 1, "the outcome is told once")

    def test_two_cron_workers_share_the_queued_sends_each_sent_once(self):
        """Sends queued while their worker died (no post-commit ran); two servers' crons at once."""
        with self.cursor() as cr:
            env = self.env_of(cr)
            partner = env["res.partner"].browse(self.ids["partner"])
            agreements = env["agreement"].create([
                {"code": f"CONC-Q{i}", "name": f"Queued {i}", "partner_id": partner.id} for i in range(12)])
            env["ir.attachment"].create([{
                "name": f"q{i}.pdf", "raw": make_pdf(), "mimetype": "application/pdf",
                "res_model": "agreement", "res_id": agreement.id} for i, agreement in enumerate(agreements)])
            results = agreements._esign_send_unattended()
            self.assertEqual(set(map(len, results.values())), {0})
            cr.postcommit.clear()  # the worker dies right after its commit: nothing was sent
            cr.commit()
            ids = agreements.ids
        self.addCleanup(self._cleanup_agreements, ids)
        _results, errors = self._in_threads([self._process, self._process])
        self.assertFalse(errors, errors)
        with self.cursor() as cr:
            env = self.env_of(cr)
            requests = env["agreement"].browse(ids).esign_request_ids
            self.assertEqual(len(requests), 12)
            self.assertEqual(set(requests.mapped("state")), {"sent"})
            envelopes = env["esign.demo.envelope"].search([("external_reference", "in", requests.mapped("reference"))])
            self.assertEqual(len(envelopes), 12, "each queued send reached the provider exactly once")

    def _cleanup_agreements(self, ids):
        with self.cursor() as cr:
            env = self.env_of(cr)
            agreements = env["agreement"].browse(ids).exists()
            requests = agreements.esign_request_ids
            env["esign.demo.envelope"].search([("external_reference", "in", requests.mapped("reference"))]).unlink()
            env["esign.request.event"].search([("request_id", "in", requests.ids)]).unlink()
            requests.sudo().unlink()
            env["ir.attachment"].search([("res_model", "=", "agreement"), ("res_id", "in", agreements.ids)]).unlink()
            agreements.activity_ids.unlink()
            agreements.unlink()
