# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Two notifications for one request delivered at the same time, each in its own transaction.

This needs committed data and real concurrent cursors, so it cannot live in a TransactionCase: it
commits its own records and removes them afterwards. Each delivery runs the way the HTTP layer runs
it (``retrying``: a serialisation failure restarts the delivery on a fresh snapshot).
"""
import json
import threading
from functools import partial

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.service.model import retrying
from odoo.tests import tagged
from odoo.tests.common import BaseCase, get_db_name

from ..api import demo as demo_wire
from .common import make_pdf


@tagged("post_install", "-at_install")
class TestConcurrentNotifications(BaseCase):

    def setUp(self):
        super().setUp()
        self.registry = Registry(get_db_name())
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            provider = env.ref("esign_connector.esign_provider_demo")
            self.provider_backup = provider.read(
                ["state", "account_mode", "representative_email", "representative_first_name",
                 "webhook_secret"])[0]
            provider.write({"state": "test", "account_mode": "central", "representative_email": "ceo@x.example.com",
                            "representative_first_name": "Ceo", "webhook_secret": "concurrency-secret"})
            partner = env["res.partner"].create({"name": "Concurrent Client", "email": "cc@x.example.com"})
            agreement = env["agreement"].create({"code": "CONC-1", "name": "Concurrency", "partner_id": partner.id})
            document = env["ir.attachment"].create({
                "name": "c.pdf", "raw": make_pdf(), "mimetype": "application/pdf",
                "res_model": "agreement", "res_id": agreement.id})
            request = env["esign.request"].create({
                "agreement_id": agreement.id, "provider_id": provider.id, "document_id": document.id,
                "signer_ids": [
                    (0, 0, {"name": "Concurrent Client", "email": "cc@x.example.com", "role": "client", "sequence": 1}),
                    (0, 0, {"name": "Ceo", "email": "ceo@x.example.com", "role": "company", "sequence": 2}),
                ]})
            request._esign_send()
            self.ids = {"partner": partner.id, "agreement": agreement.id, "request": request.id,
                        "provider_ref": request.provider_ref,
                        "keys": {s.role: s._esign_key() for s in request.signer_ids}}
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            request = env["esign.request"].browse(self.ids["request"])
            env["esign.demo.envelope"].search([("reference", "=", self.ids["provider_ref"])]).unlink()
            agreement = request.agreement_id
            request.unlink()
            env["ir.attachment"].search([("res_model", "=", "agreement"), ("res_id", "=", agreement.id)]).unlink()
            agreement.activity_ids.unlink()
            agreement.unlink()
            env["res.partner"].browse(self.ids["partner"]).unlink()
            backup = dict(self.provider_backup)
            backup.pop("id")
            env.ref("esign_connector.esign_provider_demo").write(backup)

    def _body(self, event_id, envelope_state, client, company):
        keys = self.ids["keys"]
        return json.dumps({
            "id": event_id, "type": "test", "envelope": self.ids["provider_ref"],
            "envelope_state": envelope_state, "occurred_at": "2026-11-23T10:00:00",
            "signers": [{"key": keys["client"], "state": client}, {"key": keys["company"], "state": company}],
        }).encode()

    def _deliver_concurrently(self, bodies):
        barrier = threading.Barrier(len(bodies))
        results, errors = [], []

        def deliver(body):
            try:
                with self.registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    headers = {demo_wire.SIGNATURE_HEADER: demo_wire.sign("concurrency-secret", body)}
                    barrier.wait(timeout=10)
                    func = partial(env["esign.request.event"]._esign_receive_webhook, "demo", headers, body, {})
                    results.append(retrying(func, env))
            except Exception as error:  # reported below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=deliver, args=(body,)) for body in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        self.assertFalse(errors, errors)
        return results

    def test_concurrent_notifications_end_in_one_state(self):
        with self.registry.cursor() as cr:  # both signed at the provider; the callbacks arrive together
            env = api.Environment(cr, SUPERUSER_ID, {})
            envelope = env["esign.demo.envelope"].search([("reference", "=", self.ids["provider_ref"])])
            envelope.signer_ids.write({"state": "signed"})
            envelope.state = "signed"
        results = self._deliver_concurrently([
            self._body("c-client", "sent", "signed", "pending"),
            self._body("c-final", "signed", "signed", "signed"),
            self._body("c-final", "signed", "signed", "signed"),  # the provider's retry, at the same time
        ])
        self.assertEqual(sorted(r[0] for r in results), [200, 200, 200])
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            request = env["esign.request"].browse(self.ids["request"])
            self.assertEqual(request.state, "signed")
            self.assertEqual(request.signer_ids.mapped("state"), ["signed", "signed"])
            webhook_events = request.event_ids.filtered(lambda e: e.source == "webhook")
            self.assertEqual(sorted(webhook_events.mapped("dedup_key")), ["demo:c-client", "demo:c-final"])
            self.assertEqual(set(webhook_events.mapped("state")), {"processed"})
            self.assertEqual(len(request.signed_document_id), 1, "documents attached once")
