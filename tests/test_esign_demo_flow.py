# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The whole flow on the Demo provider, in both modes."""
import io

from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools.pdf import PdfFileReader

from .common import EsignCommon


@tagged("post_install", "-at_install")
class TestDemoFlow(EsignCommon):

    def test_wizard_prefills_client_first_then_representative_in_central_mode(self):
        wizard = self.open_wizard()
        lines = wizard.signer_ids.sorted("sequence")
        self.assertEqual(lines.mapped("role"), ["client", "company"])
        self.assertEqual(lines[0].email, "anna@client.example.com")
        self.assertEqual(lines[1].email, "ceo@acme.example.com")
        self.assertEqual(lines[1].representation_basis, "CEO, entry in the commercial register")
        self.assertEqual(wizard.provider_id, self.provider)
        self.assertEqual(wizard.document_source, "attachment")

    def test_central_mode_whole_flow(self):
        request, result = self.send()
        self.assertEqual(result["params"]["type"], "success")
        self.assertEqual(request.state, "sent")
        self.assertEqual(self.agreement.esign_state, "sent")
        self.assertEqual(request.account_mode, "central")
        self.assertTrue(request.provider_ref.startswith("DEMO-"))
        client, company = self.signer(request, "client"), self.signer(request, "company")
        self.assertEqual((client.state, company.state), ("pending", "waiting"))
        self.assertIn("/esign/demo/sign/", client.signing_url)
        self.assertEqual(company.first_name, "Celina")

        status, _body = self.demo_act(request, "client")
        self.assertEqual(status, (200, "ok"))
        self.assertEqual((client.state, company.state), ("signed", "pending"))
        self.assertEqual(request.state, "sent")

        self.demo_act(request, "company")
        self.assertEqual(request.state, "signed")
        self.assertEqual(self.agreement.esign_state, "signed")
        self.assertTrue(self.agreement.signature_date)
        self.assertTrue(request.completed_at)
        # Signed PDF: the original with a visible stamp; evidence attached too.
        signed = request.signed_document_id
        self.assertEqual((signed.res_model, signed.res_id), ("agreement", self.agreement.id))
        text = PdfFileReader(io.BytesIO(signed.raw)).getPage(0).extractText()
        self.assertIn("Signed electronically with the Demo provider", text)
        self.assertIn("Anna Kowalska", text)
        self.assertTrue(request.evidence_document_id.raw.startswith(b"%PDF"))
        # The sender is asked to follow up; the contract's chatter tells the story.
        activity = self.agreement.activity_ids
        self.assertEqual(activity.user_id, self.salesman)
        self.assertIn("signed", activity.summary.lower())
        bodies = " ".join(self.agreement.message_ids.mapped("body"))
        for expected in ("Sent for e-signature", "Anna Kowalska (Client) signed", "signed by all parties"):
            self.assertIn(expected, bodies)
        # Send + 2 notifications, each stored and processed.
        self.assertEqual(request.event_ids.mapped("state"), ["processed"] * 3)

    def test_individual_mode_uses_the_senders_own_account(self):
        self.provider.account_mode = "individual"
        request, _result = self.send()
        company = self.signer(request, "company")
        self.assertEqual(company.email, "sam@acme.example.com")
        self.assertEqual(request.account_mode, "individual")
        self.assertIn("sam@acme.example.com", request.acting_account_json)
        self.demo_act(request, "client")
        self.demo_act(request, "company")
        self.assertEqual(request.state, "signed")

    def test_individual_mode_without_account_says_so(self):
        self.provider.account_mode = "individual"
        with self.assertRaisesRegex(UserError, "Mia Manager has no Demo account"):
            self.send(user=self.manager)
        self.assertFalse(self.agreement.esign_request_ids)

    def test_signing_order_is_enforced(self):
        request, _result = self.send()
        with self.assertRaisesRegex(UserError, "not your turn"):
            self.demo_act(request, "company")
        self.assertEqual(self.signer(request, "company").state, "waiting")
        self.assertEqual(request.state, "sent")

    def test_wizard_refuses_company_before_client(self):
        wizard = self.open_wizard()
        wizard.signer_ids.filtered(lambda s: s.role == "company").sequence = 0
        with self.assertRaisesRegex(UserError, "The client signs first"):
            wizard.action_send()

    def test_refusal(self):
        request, _result = self.send()
        self.demo_act(request, "client", "refused", reason="Price too high")
        self.assertEqual(request.state, "refused")
        self.assertEqual(request.reason, "Price too high")
        self.assertEqual(self.signer(request, "client").state, "refused")
        self.assertFalse(self.agreement.signature_date)
        self.assertIn("refused", self.agreement.activity_ids.summary.lower())
        # A refused contract can be sent again.
        self.assertTrue(self.agreement.with_user(self.salesman).action_esign_send())

    def test_disabled_type_is_refused_everywhere(self):
        paper = self._make_agreement("P-1", self.client_partner, self.type_paper)
        with self.assertRaisesRegex(UserError, "disabled for contracts of type Paper only"):
            paper.with_user(self.salesman).action_esign_send()
        with self.assertRaisesRegex(UserError, "disabled"):
            self.env["esign.send.wizard"].with_user(self.salesman).with_context(
                default_agreement_id=paper.id).create({})
        # A wizard created before the type was disabled is refused too (as through RPC).
        wizard = self.open_wizard()
        self.agreement.agreement_type_id = self.type_paper
        with self.assertRaisesRegex(UserError, "disabled"):
            wizard.action_send()
        self.assertFalse(self.agreement.esign_request_ids)

    def test_missing_email_is_named(self):
        partner = self.env["res.partner"].create({"name": "No Mail Ltd"})
        agreement = self._make_agreement("C-NOMAIL", partner)
        wizard = self.open_wizard(agreement)
        with self.assertRaisesRegex(UserError, "No Mail Ltd has no e-mail address"):
            wizard.action_send()
        self.assertFalse(agreement.esign_request_ids)

    def test_missing_document_and_disabled_provider(self):
        wizard = self.open_wizard()
        wizard.attachment_id = False
        with self.assertRaisesRegex(UserError, "Choose the PDF"):
            wizard.action_send()
        wizard = self.open_wizard()
        self.provider.state = "disabled"
        with self.assertRaisesRegex(UserError, "disabled"):
            wizard.action_send()

    def test_not_a_pdf_is_refused(self):
        attachment = self.env["ir.attachment"].create({
            "name": "fake.pdf", "raw": b"hello", "mimetype": "application/pdf",
            "res_model": "agreement", "res_id": self.agreement.id})
        wizard = self.open_wizard()
        wizard.attachment_id = attachment
        with self.assertRaisesRegex(UserError, "not a PDF"):
            wizard.action_send()

    def test_lost_callback_then_refresh_and_cron(self):
        request, _result = self.send()
        self.demo_act(request, "client", deliver=False)  # the callback is lost
        self.assertEqual(self.signer(request, "client").state, "pending")
        result = self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assertEqual(result["params"]["type"], "success", result)
        self.assertEqual(self.signer(request, "client").state, "signed")
        self.demo_act(request, "company", deliver=False)
        self.assertEqual(request.state, "sent")
        processed = self.env["esign.request"]._cron_esign_refresh()
        self.assertGreaterEqual(processed, 1)
        self.assertEqual(request.state, "signed")
        self.assertTrue(request.signed_document_id)
        self.assertIn("refresh", request.event_ids.mapped("source"))

    def test_cancel_needs_a_manager_and_withdraws_at_the_provider(self):
        request, _result = self.send()
        with self.assertRaises(Exception):
            request.with_user(self.salesman).check_access("unlink")
        request.with_user(self.manager).action_esign_cancel()
        self.assertEqual(request.state, "sent", "the provider is called after the transaction commits")
        self.run_jobs()
        self.assertEqual(request.state, "cancelled")
        self.assertEqual(self.demo_envelope(request).state, "cancelled")
        with self.assertRaisesRegex(UserError, "no longer open"):
            self.demo_act(request, "client")

    def test_remind(self):
        request, _result = self.send()
        action = request.with_user(self.salesman).action_esign_remind()
        self.assertEqual(action["params"]["type"], "success")
        self.run_jobs()
        self.assertEqual(self.demo_envelope(request).reminder_count, 1)

    def test_send_printed_report(self):
        # wkhtmltopdf fetches the report's CSS from report.url (default: this server). Under Odoo's
        # own runner the test HTTP server would serve it from inside this test's transaction and
        # wait for it forever; a closed loopback port renders the PDF without styles at once.
        self.env["ir.config_parameter"].set_param("report.url", "http://127.0.0.1:9")
        self.env["ir.attachment"].search([("res_model", "=", "agreement"), ("res_id", "=", self.agreement.id)]).unlink()
        wizard = self.open_wizard()
        self.assertEqual(wizard.document_source, "report")
        wizard = wizard.with_context(force_report_rendering=True)
        wizard.action_send()
        self.run_jobs()
        request = self.agreement.esign_request_ids
        self.assertEqual(request.state, "sent")
        self.assertTrue(request.document_id.raw.startswith(b"%PDF"))

    def test_provider_outage_leaves_an_error_the_user_sees(self):
        # The Demo provider cannot be reached when its envelope model refuses to create: simulate a
        # configuration problem at the provider through a missing secret, checked before sending.
        self.provider.webhook_secret = False
        wizard = self.open_wizard()
        with self.assertRaisesRegex(UserError, "Missing: Webhook secret"):
            wizard.action_send()

    def test_settings_edit_the_default_provider(self):
        settings = self.env["res.config.settings"].create({})
        self.assertEqual(settings.esign_provider_id, self.provider)
        settings.write({"esign_representative_basis": "President of the board", "esign_account_mode": "central"})
        settings.execute()
        self.assertEqual(self.provider.representative_basis, "President of the board")

    def test_key_pair_generation_and_rotation(self):
        self.provider.action_generate_key_pair()
        first_kid = self.provider.jwk_kid
        self.assertIn('"kid": "%s"' % first_kid, self.provider.jwt_public_jwk)
        self.provider.action_generate_key_pair()
        self.assertEqual(self.provider.jwk_kid, first_kid, "the old kid stays until confirmed")
        self.assertNotEqual(self.provider.jwt_next_kid, first_kid)
        self.provider.action_confirm_key_rotation()
        self.assertNotEqual(self.provider.jwk_kid, first_kid)
        self.assertFalse(self.provider.jwt_next_private_key)
