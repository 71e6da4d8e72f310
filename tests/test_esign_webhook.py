# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Notifications: authenticity, idempotence, order, unknown references, query budget."""
import json

from odoo.tests import tagged

from ..api import demo as demo_wire
from .common import EsignCommon


@tagged("post_install", "-at_install")
class TestWebhook(EsignCommon):

    def setUp(self):
        super().setUp()
        self.request, _result = self.send()
        self.Event = self.env["esign.request.event"]

    def _client_signed_body(self, event_id="evt-1"):
        return self.demo_body(self.request, "signer.signed", "sent",
                              {"client": "signed", "company": "pending"}, event_id=event_id)

    def test_wrong_signature_is_refused_and_changes_nothing(self):
        events_before = self.Event.search_count([])
        body = self._client_signed_body()
        self.assertEqual(self.deliver(body, secret="not-the-secret")[0], 403)
        self.assertEqual(self.deliver(body, headers={})[0], 403)
        self.assertEqual(self.deliver(body, headers={demo_wire.SIGNATURE_HEADER: "garbage"})[0], 403)
        # A correct signature over another body does not validate this one.
        other = demo_wire.sign(self.provider.webhook_secret, b"{}")
        self.assertEqual(self.deliver(body, headers={demo_wire.SIGNATURE_HEADER: other})[0], 403)
        # An old signature is refused (replay outside the tolerance).
        old = demo_wire.sign(self.provider.webhook_secret, body, timestamp=1_000_000)
        self.assertEqual(self.deliver(body, headers={demo_wire.SIGNATURE_HEADER: old})[0], 403)
        self.assertEqual(self.signer(self.request, "client").state, "pending")
        self.assertEqual(self.Event.search_count([]), events_before)

    def test_malformed_is_400_and_kept(self):
        self.assertEqual(self.deliver(b"not json")[0], 400)
        self.assertEqual(self.deliver(json.dumps({"id": "x"}).encode())[0], 400)
        rejected = self.Event.search([("state", "=", "rejected")])
        self.assertEqual(len(rejected), 2)
        self.assertEqual(self.request.state, "sent")

    def test_unknown_provider_code_is_404(self):
        status, _text = self.env["esign.request.event"].sudo()._esign_receive_webhook("nope", {}, b"{}", {})
        self.assertEqual(status, 404)

    def test_replayed_notification_is_applied_once(self):
        body = self._client_signed_body()
        self.assertEqual(self.deliver(body)[0], 200)
        messages = len(self.agreement.message_ids)
        self.assertEqual(self.deliver(body)[0], 200)
        events = self.Event.search([("dedup_key", "=", "demo:evt-1")])
        self.assertEqual(len(events), 1)
        self.assertEqual(len(self.agreement.message_ids), messages, "nothing posted twice")
        self.assertEqual(self.signer(self.request, "client").state, "signed")

    def test_out_of_order_never_moves_backwards(self):
        final = self.demo_body(self.request, "envelope.signed", "signed",
                               {"client": "signed", "company": "signed"}, event_id="evt-final")
        earlier = self._client_signed_body(event_id="evt-early")
        self.assertEqual(self.deliver(final)[0], 200)
        self.assertEqual(self.request.state, "signed")
        self.assertEqual(self.deliver(earlier)[0], 200)
        self.assertEqual(self.request.state, "signed")
        self.assertEqual(self.signer(self.request, "company").state, "signed")
        # A late "refused" cannot undo a signature either.
        refused = self.demo_body(self.request, "envelope.refused", "refused",
                                 {"client": "refused"}, event_id="evt-refused")
        self.deliver(refused)
        self.assertEqual(self.request.state, "signed")
        self.assertEqual(self.signer(self.request, "client").state, "signed")

    def test_unknown_reference_is_stored_and_acknowledged(self):
        body = json.dumps({
            "id": "evt-unknown", "type": "signer.signed", "envelope": "DEMO-doesnotexist",
            "envelope_state": "sent", "signers": [],
        }).encode()
        self.assertEqual(self.deliver(body)[0], 200)
        event = self.Event.search([("dedup_key", "=", "demo:evt-unknown")])
        self.assertEqual(event.state, "unmatched")
        self.assertFalse(event.request_id)
        self.assertIn("DEMO-doesnotexist", event.payload)

    def test_failed_processing_keeps_the_event_and_the_cron_retries(self):
        # The request's document download fails while the provider "is down": the state is still
        # applied, the download is retried by the cron.
        self.demo_act(self.request, "client")
        envelope = self.demo_envelope(self.request)
        document = envelope.document
        envelope.document = False  # the provider cannot produce the signed file for now
        self.demo_act(self.request, "company")
        self.assertEqual(self.request.state, "signed")
        self.assertTrue(self.request.documents_pending)
        self.assertFalse(self.request.signed_document_id)
        envelope.document = document
        self.env["esign.request"]._cron_esign_refresh()
        self.assertFalse(self.request.documents_pending)
        self.assertTrue(self.request.signed_document_id)

    def test_query_budget_does_not_grow_with_open_requests(self):
        def queries_for_one_notification(event_id):
            body = self._client_signed_body(event_id=event_id)
            # Reset the signer so that each run applies the same change.
            self.signer(self.request, "client").write({"state": "pending"})
            self.env.flush_all()
            self.env.invalidate_all()
            start = self.env.cr.sql_log_count
            self.assertEqual(self.deliver(body)[0], 200)
            self.env.flush_all()
            return self.env.cr.sql_log_count - start

        few = queries_for_one_notification("evt-q1")
        for index in range(15):
            agreement = self._make_agreement(f"Q-{index}", self.client_partner)
            self.send(agreement)
        many = queries_for_one_notification("evt-q2")
        self.assertLessEqual(many, few, f"{few} queries with 1 open request, {many} with 16")
        self.assertLess(few, 120)
