# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Nobody can forge, leak or double a signature: each promise tried as a salesperson (RPC), a
manager, an administrator and a provider would. Numbers refer to the points of the trust issue."""
import datetime
import json

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from ..api import demo as demo_wire
from ..api.base import ProviderError
from .common import EsignCommon, make_pdf


@tagged("post_install", "-at_install")
class TestTrustAccess(EsignCommon):
    """Points 1-7: who may do what, decided on the server."""

    def _wizard(self, user=None, agreement=None):
        return self.open_wizard(agreement, user or self.salesman)

    # 1. only a PDF of this contract that the sender can read

    def test_1_rpc_cannot_send_a_file_of_another_record(self):
        payslip = self.env["ir.attachment"].create({
            "name": "payslip.pdf", "raw": make_pdf("Payslip: 10,000"), "mimetype": "application/pdf",
            "res_model": "res.partner", "res_id": self.ceo.partner_id.id})
        other = self._make_agreement("C-OTHER", self.client_partner)
        other_pdf = self.env["ir.attachment"].search([("res_model", "=", "agreement"), ("res_id", "=", other.id)])
        for attachment in (payslip, other_pdf):
            wizard = self._wizard()
            wizard.write({"document_source": "attachment", "attachment_id": attachment.id})  # as an RPC would
            with self.assertRaisesRegex(UserError, "not a file of the contract C-001|Contract C-001"):
                wizard.action_send()
        self.assertFalse(self.agreement.esign_request_ids)
        self.assertFalse(self.env["esign.demo.envelope"].search([("filename", "in", ["payslip.pdf", "C-OTHER.pdf"])]))

    def test_1_rpc_cannot_send_another_companys_file(self):
        other_company = self.env["res.company"].create({"name": "Other Co"})
        secret = self.env["ir.attachment"].create({
            "name": "secret.pdf", "raw": make_pdf("Other company"), "mimetype": "application/pdf",
            "company_id": other_company.id, "res_model": "res.company", "res_id": other_company.id})
        wizard = self._wizard()
        wizard.write({"document_source": "attachment", "attachment_id": secret.id})
        with self.assertRaisesRegex(UserError, "not a file of the contract"):
            wizard.action_send()
        self.assertFalse(self.agreement.esign_request_ids)

    def test_1_a_pdf_that_is_not_one_is_refused_with_its_code(self):
        fake = self.env["ir.attachment"].create({
            "name": "fake.pdf", "raw": b"MZ\x90\x00 not a pdf", "mimetype": "application/pdf",
            "res_model": "agreement", "res_id": self.agreement.id})
        problems = self.env["esign.request"]._esign_send_problems(
            self.agreement, self.provider, self.salesman, fake,
            [{"role": "client", "name": "Anna", "email": "anna@client.example.com", "sequence": 1}])
        self.assertEqual([p.code for p in problems], ["ESIGN_NOT_PDF"])

    # 2. requests and signers change only through their methods

    def test_2_salesman_cannot_write_requests_or_signers(self):
        request, _result = self.send()
        as_sales = request.with_user(self.salesman)
        other_doc = self.env["ir.attachment"].search([("res_model", "=", "agreement")], limit=1)
        for vals in ({"state": "signed"}, {"provider_ref": "DEMO-someone-else"},
                     {"acting_account_json": json.dumps({"email": "ceo@acme.example.com"})},
                     {"document_id": other_doc.id}, {"subject": "changed"}):
            with self.assertRaises(AccessError, msg=vals):
                as_sales.write(vals)
        with self.assertRaises(AccessError):
            self.signer(request, "company").with_user(self.salesman).write({"email": "sam@acme.example.com"})
        with self.assertRaises(AccessError):
            self.env["esign.request"].with_user(self.salesman).create({
                "agreement_id": self.agreement.id, "provider_id": self.provider.id,
                "document_id": other_doc.id})
        self.assertEqual(request.state, "sent")
        self.assertEqual(self.agreement.esign_state, "sent")

    def test_2_not_even_an_administrator_writes_the_state(self):
        request, _result = self.send()
        admin = self.env.ref("base.user_admin")
        with self.assertRaises(AccessError):
            request.with_user(admin).write({"state": "signed"})
        with self.assertRaises(AccessError):
            request.with_user(admin).write({"provider_ref": "X"})
        self.assertEqual(request.state, "sent")

    def test_2_the_state_machine_refuses_going_back_even_as_superuser(self):
        request, _result = self.send()
        self.demo_act(request, "client")
        self.demo_act(request, "company")
        self.assertEqual(request.state, "signed")
        for state in ("sent", "sending", "refused"):
            with self.assertRaises(ValidationError):
                request.sudo().write({"state": state})
        self.assertEqual(request.state, "signed")

    # 3. manager-only and admin-only actions refuse others on the server

    def test_3_cancel_needs_a_manager_on_the_server(self):
        request, _result = self.send()
        with self.assertRaises(AccessError):
            request.with_user(self.salesman).action_esign_cancel()
        self.run_jobs()
        self.assertEqual(request.state, "sent")
        self.assertEqual(self.demo_envelope(request).state, "sent")

    def test_3_admin_actions_refuse_salespeople_and_managers(self):
        providers = self.provider
        for code, name in (("yousign", "Yousign"), ("docusign", "DocuSign"), ("autenti", "Autenti")):
            providers |= self.env["esign.provider"].create({"name": name, "code": code, "company_id": self.company.id})
        actions = ["action_generate_key_pair", "action_confirm_key_rotation", "action_cancel_key_rotation",
                   "action_generate_webhook_secret"]
        specific = {"yousign": ["action_yousign_register_webhook"],
                    "docusign": ["action_docusign_test_connection", "action_docusign_open_consent"],
                    "autenti": ["action_autenti_register_callback"]}
        for user in (self.salesman, self.manager):
            for provider in providers:
                for action in actions + specific.get(provider.code, []):
                    with self.assertRaises(AccessError, msg=f"{user.login} {provider.code} {action}"):
                        getattr(provider.with_user(user), action)()
        self.assertFalse(self.provider.jwt_private_key)
        self.assertEqual(self.provider.webhook_secret, "test-secret-for-demo")

    # 4. signing links, provider tokens and raw payloads stay with managers

    def test_4_signing_links_tokens_and_events_are_not_for_salespeople(self):
        request, _result = self.send()
        client = self.signer(request, "client")
        with self.assertRaises(AccessError):
            client.with_user(self.salesman).read(["signing_url"])
        self.assertIn("/esign/demo/sign/", client.with_user(self.manager).signing_url)
        demo_token = self.demo_signer(request, "client").token
        self.assertNotEqual(client.provider_ref, demo_token, "the signer's id at the provider is not its link")
        self.assertNotIn(demo_token, json.dumps(client.with_user(self.salesman).read(
            ["provider_ref", "name", "email", "state"])))
        with self.assertRaises(AccessError):
            request.event_ids.with_user(self.salesman).read(["payload"])
        with self.assertRaises(AccessError):
            request.with_user(self.salesman).read(["event_ids"])
        with self.assertRaises(AccessError):
            request.with_user(self.salesman).action_view_events()
        self.assertTrue(request.with_user(self.manager).event_ids)

    # 5. one live request per contract; templates refused

    def test_5_two_wizards_in_two_tabs_send_one_envelope(self):
        first, second = self._wizard(), self._wizard()
        first.action_send()
        with self.assertRaisesRegex(UserError, "already"):
            second.action_send()
        self.run_jobs()
        self.assertEqual(len(self.agreement.esign_request_ids), 1)
        self.assertEqual(self.env["esign.demo.envelope"].search_count(
            [("external_reference", "in", self.agreement.esign_request_ids.mapped("reference"))]), 1)

    def test_5_the_database_refuses_a_second_live_request(self):
        request, _result = self.send()
        with self.assertRaises(Exception), mute_logger("odoo.sql_db"), self.env.cr.savepoint():
            self.env["esign.request"].sudo().create({
                "agreement_id": self.agreement.id, "provider_id": self.provider.id,
                "document_id": request.document_id.id, "state": "sending"})

    def test_5_templates_are_refused_on_the_server(self):
        template = self._make_agreement("TPL-1", self.client_partner)
        template.is_template = True
        with self.assertRaisesRegex(UserError, "template"):
            template.with_user(self.salesman).action_esign_send()
        wizard = self._wizard()
        self.agreement.is_template = True  # the contract became a template after the dialog opened
        with self.assertRaisesRegex(UserError, "template"):
            wizard.action_send()
        self.assertFalse(self.agreement.esign_request_ids)

    # 6. the company signer is the mode's, decided by the server

    def test_6_central_mode_company_signer_cannot_be_replaced_or_dropped(self):
        wizard = self._wizard()
        company_line = wizard.signer_ids.filtered(lambda s: s.role == "company")
        company_line.write({"email": "sam@acme.example.com", "name": "Sam Seller"})
        with self.assertRaisesRegex(UserError, "representative Celina Boss"):
            wizard.action_send()
        wizard = self._wizard()
        wizard.signer_ids.filtered(lambda s: s.role == "company").unlink()
        wizard.action_send()
        request = self.agreement.esign_request_ids
        company = self.signer(request, "company")
        self.assertEqual((company.email, company.representation_basis),
                         ("ceo@acme.example.com", "CEO, entry in the commercial register"))
        self.assertEqual(request.signer_ids.sorted("sequence").mapped("role"), ["client", "company"])

    def test_6_individual_mode_the_sender_signs_for_the_company(self):
        self.provider.account_mode = "individual"
        wizard = self._wizard()
        wizard.signer_ids.filtered(lambda s: s.role == "company").email = "ceo@acme.example.com"
        with self.assertRaisesRegex(UserError, "the sender signs for the company"):
            wizard.action_send()
        request, _result = self.send()
        self.assertEqual(self.signer(request, "company").email, "sam@acme.example.com")

    # 7. default provider; archived providers

    def test_7_enabled_provider_before_a_test_one_and_archived_never_send(self):
        self.company.esign_provider_id = False
        live = self.env["esign.provider"].create({
            "name": "Yousign", "code": "yousign", "company_id": self.company.id, "state": "enabled",
            "sequence": 200, "representative_email": "ceo@acme.example.com", "representative_first_name": "C"})
        self.assertEqual(self.provider.state, "test")
        self.assertEqual(self.agreement.esign_provider_id, live, "production before the sandbox")
        self.company.esign_provider_id = self.provider
        self.agreement.invalidate_recordset()
        self.assertEqual(self.agreement.esign_provider_id, self.provider, "the company's choice first")
        wizard = self._wizard()
        self.provider.active = False
        self.agreement.invalidate_recordset()
        self.assertEqual(self.agreement.esign_provider_id, live, "an archived default is skipped")
        with self.assertRaisesRegex(UserError, "disabled"):
            wizard.action_send()  # the archived provider chosen before, sent by RPC
        self.assertFalse(self.agreement.esign_request_ids)


@tagged("post_install", "-at_install")
class TestTrustExactlyOnce(EsignCommon):
    """Points 8-14: every send and every callback happens exactly once, nothing is lost."""

    def _envelopes(self, request):
        return self.env["esign.demo.envelope"].search([("external_reference", "=", request.reference)])

    # 8. sending is an outbox

    def test_8_the_provider_is_called_only_after_the_transaction_commits(self):
        request, result = self.send(process=False)
        self.assertEqual(result["params"]["type"], "success")
        self.assertEqual(request.state, "sending")
        self.assertTrue(request.reference)
        self.assertFalse(self._envelopes(request), "nothing reaches the provider inside the user's transaction")
        self.assertTrue(self.env.cr.postcommit._funcs, "the send waits for the commit")
        self.run_jobs()
        self.assertEqual(request.state, "sent")
        self.assertEqual(len(self._envelopes(request)), 1)
        self.run_jobs()
        self.assertEqual(len(self._envelopes(request)), 1, "run once")

    def _claim(self, request):
        with request._esign_own_transaction() as env:
            return env["esign.request"].browse(request.id)._esign_outbox_claim()

    def test_8_a_worker_killed_before_calling_leaves_a_claim_the_cron_settles(self):
        request, _result = self.send(process=False)
        self.assertTrue(self._claim(request))  # claimed, then the worker dies before the call
        request.invalidate_recordset()
        self.run_jobs()
        self.assertEqual(request.state, "sending", "a fresh claim is left alone: its worker may still be calling")
        request.sudo().send_claimed_at = fields.Datetime.now() - datetime.timedelta(minutes=11)
        self.run_jobs()
        self.assertEqual(request.state, "sent")
        self.assertFalse(request.send_outcome_unknown)
        self.assertEqual(len(self._envelopes(request)), 1)

    def test_8_a_worker_killed_after_the_provider_acted_is_found_not_resent(self):
        request, _result = self.send(process=False)
        client, envelope, _lookup = self._claim(request)
        client.send(envelope)  # the provider created it; the worker died before recording the answer
        request.sudo().send_claimed_at = fields.Datetime.now() - datetime.timedelta(minutes=11)
        self.run_jobs()
        self.assertEqual(request.state, "sent")
        (found,) = self._envelopes(request)
        self.assertEqual(request.provider_ref, found.reference, "adopted by our reference")

    def test_8_unclear_send_without_lookup_stays_sending_and_a_manager_decides(self):
        request, _result = self.send(process=False)
        self._claim(request)
        error = ProviderError("timeout", "no answer in time", provider="Demo", outcome_unknown=True)
        with request._esign_own_transaction() as env:
            locked = env["esign.request"].browse(request.id)
            locked.provider_id.escalation_user_id = self.manager
            locked._esign_outbox_record(error, can_lookup=False)  # as for Autenti, Signi, SELL&SIGN
        request.invalidate_recordset()
        self.assertEqual(request.state, "sending")
        self.assertTrue(request.send_outcome_unknown)
        self.assertIn(request.reference, request.last_error)
        self.assertNotIn("Refresh", request.last_error)
        self.assertIn("A manager can then send it again or mark it as not sent", request.last_error)
        activity = request.activity_ids.filtered(lambda a: a.user_id == self.manager)
        self.assertTrue(activity, "never silent")
        with self.assertRaises(AccessError):
            request.with_user(self.salesman).action_esign_abandon_send()
        request.with_user(self.manager).action_esign_abandon_send()
        self.assertEqual(request.state, "error")
        self.assertTrue(self.agreement.with_user(self.salesman).action_esign_send(), "it can be sent again")

    # 9. callbacks are stored and answered first, applied right after

    def test_9_callbacks_are_stored_then_applied_by_the_processing_run(self):
        request, _result = self.send()
        self.demo_act(request, "client", deliver=False)
        body = self.demo_envelope(request)._status_payload("signer.signed")
        raw = json.dumps(body).encode()
        self.assertEqual(self.deliver(raw, process=False), (200, "ok"))
        event = self.env["esign.request.event"].search([("dedup_key", "=", f"demo:{body['id']}")])
        self.assertEqual(event.state, "received")
        self.assertEqual(self.signer(request, "client").state, "pending", "nothing applied while the provider waits")
        self.run_jobs()
        self.assertEqual(event.state, "processed")
        self.assertEqual(self.signer(request, "client").state, "signed")

    # 10. matched later, by provider or our reference; failures escalate

    def test_10_a_callback_before_the_send_is_recorded_is_applied_afterwards(self):
        request, _result = self.send(process=False)
        client, envelope, _lookup = self._claim(request)
        result = client.send(envelope)  # the provider acted; our answer is not recorded yet
        demo = self._envelopes(request)
        demo_signer = demo.signer_ids.sorted("sequence")[:1]
        body = demo._act(demo_signer, "signed")
        self.env.flush_all()
        self.assertEqual(demo_signer._notify(body)[0], 200)
        self.run_jobs()
        event = self.env["esign.request.event"].search([("source", "=", "webhook"), ("reference", "=", request.reference)])
        self.assertEqual((event.state, event.request_id), ("unmatched", request))
        with request._esign_own_transaction() as env:
            env["esign.request"].browse(request.id)._esign_outbox_record(result, can_lookup=True)
        request.invalidate_recordset()
        event.invalidate_recordset()
        self.assertEqual(request.state, "sent")
        self.assertEqual(event.state, "processed")
        self.assertEqual(self.signer(request, "client").state, "signed")

    def test_10_events_failing_five_times_tell_a_manager(self):
        request, _result = self.send()
        self.provider.escalation_user_id = self.manager
        self.demo_envelope(request).unlink()  # the provider lost it: every status read fails
        body = json.dumps({"id": "evt-needs-read", "type": "ping", "envelope": request.provider_ref,
                           "envelope_state": "sent", "signers": []}).encode()
        event_model = self.env["esign.request.event"]
        stored = event_model._esign_receive_webhook("demo", {
            demo_wire.SIGNATURE_HEADER: demo_wire.sign(self.provider.webhook_secret, body)}, body, {})
        self.assertEqual(stored[0], 200)
        event = event_model.search([("dedup_key", "=", "demo:evt-needs-read")])
        event.status_json = False  # a notification that only says "something happened"
        for _attempt in range(6):
            self.run_jobs()
        self.assertEqual((event.state, event.attempts), ("failed", 5), "retried, then left for a person")
        activity = request.activity_ids.filtered(lambda a: a.user_id == self.manager)
        self.assertEqual(len(activity), 1)
        self.assertIn("could not be applied after 5 attempts", activity.note)

    # 11. a secret shared by two companies routes to the company the callback names

    def test_11_shared_secret_routes_to_the_company_of_the_request(self):
        other_company = self.env["res.company"].create({"name": "Acme Czech s.r.o."})
        other_provider = self.env["esign.provider"].create({
            "name": "Demo CZ", "code": "demo", "company_id": other_company.id, "state": "test",
            "account_mode": "central", "representative_email": "ceo@acme.example.cz",
            "representative_first_name": "Jana", "webhook_secret": self.provider.webhook_secret})
        other_company.esign_provider_id = other_provider
        partner = self.env["res.partner"].create({"name": "Petr Novak", "email": "petr@client.example.cz"})
        other_agreement = self._make_agreement("CZ-1", partner, company=other_company)
        manager_cz = new_test_user(self.env, "esign_cz", groups="base.group_user,esign_connector.group_esign_manager",
                                   company_id=other_company.id, company_ids=[other_company.id], name="Jan CZ")
        request, _result = self.send(other_agreement, user=manager_cz)
        self.assertEqual(request.provider_id, other_provider)
        self.demo_act(request, "client")
        event = request.event_ids.filtered(lambda e: e.source == "webhook")
        self.assertEqual(event.provider_id, other_provider, "not the first provider whose check passed")
        self.assertEqual(set(event.verified_provider_ids.ids), {self.provider.id, other_provider.id})
        self.assertEqual(self.signer(request, "client").state, "signed")
        self.assertFalse(self.env["esign.request.event"].with_user(self.manager).search([("id", "=", event.id)]),
                         "the other company's journal stays hidden")

    # 12. provider failures surface as errors

    def test_12_a_provider_failure_is_an_error_with_its_message(self):
        request, _result = self.send()
        body = self.demo_body(request, "envelope.failed", "error", {"client": "pending", "company": "waiting"},
                              event_id="evt-failed")
        payload = json.loads(body)
        payload["reason"] = "Signature certificate service unavailable"
        self.deliver(json.dumps(payload).encode())
        self.assertEqual(request.state, "error")
        self.assertIn("Signature certificate service unavailable", request.last_error)
        self.assertIn("failed", self.agreement.activity_ids.summary.lower())
        self.assertEqual(self.env["esign.request"]._cron_esign_refresh(), 0, "an error is not polled forever")

    # 13. the cron: one broken request does not starve the others; manual refresh keeps its error

    def test_13_a_broken_request_does_not_starve_the_batch(self):
        broken, _result = self.send()
        good, _result = self.send(self._make_agreement("C-002", self.client_partner))
        self.demo_act(good, "client", deliver=False)
        broken.sudo().acting_account_json = "{broken"  # e.g. a bug, or data from an older version
        broken.sudo().last_checked_at = fields.Datetime.now() - datetime.timedelta(days=2)
        good.sudo().last_checked_at = fields.Datetime.now() - datetime.timedelta(days=1)
        with mute_logger("odoo.addons.esign_connector.models.esign_request"):
            self.env["esign.request"]._cron_esign_refresh(batch_size=1)
        self.assertIn("Status read failed", broken.last_error)
        self.assertGreater(broken.last_checked_at, good.last_checked_at, "moved to the back of the queue")
        with mute_logger("odoo.addons.esign_connector.models.esign_request"):
            self.env["esign.request"]._cron_esign_refresh(batch_size=1)
        self.assertEqual(self.signer(good, "client").state, "signed")

    def test_13_manual_refresh_records_its_error_instead_of_losing_it(self):
        request, _result = self.send()
        self.demo_envelope(request).unlink()
        action = self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assertEqual(action["params"]["type"], "warning")
        self.assertIn("does not know this document", action["params"]["message"])
        self.assertIn("does not know this document", request.last_error)
        self.assertTrue(request.last_checked_at)

    # 14. no random secret; OdooBot authors; the provider's completion date

    def test_14_a_new_provider_has_no_invented_secret(self):
        provider = self.env["esign.provider"].create({"name": "Demo 2", "code": "demo",
                                                      "company_id": self.env["res.company"].create({"name": "N"}).id})
        self.assertFalse(provider.webhook_secret)
        self.assertIn("Webhook secret", ", ".join(provider._esign_missing_settings()))
        status, _text = self.env["esign.request.event"]._esign_receive_webhook(
            "demo", {demo_wire.SIGNATURE_HEADER: demo_wire.sign("", b"{}")}, b"{}", {})
        self.assertEqual(status, 403)

    def test_14_callback_notes_are_authored_by_odoobot_and_the_signature_date_is_the_providers(self):
        request, _result = self.send()
        body = json.loads(self.demo_body(request, "envelope.signed", "signed",
                                         {"client": "signed", "company": "signed"}, event_id="evt-done"))
        body["completed_at"] = "2026-01-15T23:30:00+00:00"
        self.salesman.tz = "Europe/Warsaw"
        self.deliver(json.dumps(body).encode())
        self.assertEqual(request.state, "signed")
        self.assertEqual(self.agreement.signature_date, datetime.date(2026, 1, 16), "the provider's day, sender's zone")
        note = self.agreement.message_ids.filtered(lambda m: "signed by all parties" in (m.body or ""))
        self.assertEqual(note.author_id, self.env.ref("base.partner_root"))
        sent_note = self.agreement.message_ids.filtered(lambda m: "Sent for e-signature" in (m.body or ""))
        self.assertEqual(sent_note.author_id, self.salesman.partner_id, "what a user did is theirs")
