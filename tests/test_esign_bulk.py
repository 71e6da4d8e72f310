# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Bulk sending from the contracts list: one dialog, every contract checked first (with the send's
codes), one request per contract, sent in the background; refused by RPC what the list would not offer."""
from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged
from odoo.tests.common import new_test_user

from .common import EsignCommon


@tagged("post_install", "-at_install")
class TestBulkSend(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.paper = cls._make_agreement("P-1", cls.client_partner, cls.type_paper)
        cls.no_mail = cls._make_agreement("N-1", cls.env["res.partner"].create({"name": "No Mail Ltd"}))
        cls.other_company = cls.env["res.company"].create({"name": "Other Co"})

    def run_jobs(self):
        """After commit: the bulk send's batches (its triggered cron), then the outbox and the events."""
        self.env["esign.campaign"]._cron_esign_campaign()
        super().run_jobs()

    def open_bulk(self, agreements, user=None, **values):
        """The list's "Send for e-signature" action, as the web client opens it."""
        env = self.env(user=user or self.salesman)
        action = self.env.ref("esign_connector.esign_bulk_send_wizard_action")
        self.assertEqual(action.binding_model_id.model, "agreement")
        return env["esign.bulk.send.wizard"].with_context(
            active_model="agreement", active_ids=agreements.ids).create(values)

    def bulk_of(self, result):
        return self.env["esign.campaign"].browse(result["params"]["next"]["res_id"])

    def test_dialog_says_which_contracts_go_and_which_not_with_codes(self):
        wizard = self.open_bulk(self.agreement | self.paper | self.no_mail)
        self.assertEqual((wizard.ready_count, wizard.refused_count), (1, 2))
        self.assertEqual({line.agreement_id: (line.ready, line.code) for line in wizard.line_ids}, {
            self.agreement: (True, False),
            self.paper: (False, "ESIGN_TYPE_DISABLED"),
            self.no_mail: (False, "ESIGN_NO_EMAIL"),
        })
        self.assertIn("1 of 3 contract(s) will be sent", wizard.summary)
        self.assertIn("ESIGN_NO_EMAIL (1)", wizard.summary)
        self.assertIn("ESIGN_TYPE_DISABLED (1)", wizard.summary)
        self.assertIn("No Mail Ltd has no e-mail address", wizard.line_ids.filtered(
            lambda line: line.agreement_id == self.no_mail).message)
        self.assertFalse(self.env["esign.request"].search([]), "checking sends nothing")

    def test_send_queues_one_request_per_contract_in_the_background(self):
        wizard = self.open_bulk(self.agreement | self.paper | self.no_mail,
                                message="Dear {{ object.partner_id.name }}, please sign.")
        result = wizard.action_send()
        self.assertEqual(result["params"]["type"], "warning")
        self.assertIn("2 will not be sent", result["params"]["message"])
        self.assertFalse(self.agreement.esign_request_ids, "nothing is printed or sent inside the click")
        bulk = self.bulk_of(result)
        self.assertEqual((bulk.kind, bulk.state, bulk.user_id), ("contracts", "running", self.salesman))
        self.run_jobs()
        request = self.agreement.esign_request_ids
        self.assertEqual(request.state, "sent")
        self.assertEqual(request.user_id, self.salesman, "sent as the salesperson who selected it")
        self.assertEqual(request.subject, "Please sign: Contract C-001")
        self.assertEqual(request.message, "Dear Anna Kowalska, please sign.")
        self.assertFalse(self.paper.esign_request_ids | self.no_mail.esign_request_ids)
        self.assertEqual({row.agreement_id: (row.state, row.result_code) for row in bulk.row_ids}, {
            self.agreement: ("sent", False),
            self.paper: ("failed", "ESIGN_TYPE_DISABLED"),
            self.no_mail: ("failed", "ESIGN_NO_EMAIL"),
        })
        self.assertEqual(bulk.state, "done")
        self.assertEqual((bulk.sent_count, bulk.failed_count), (1, 2))
        self.assertIn("ESIGN_NO_EMAIL", bulk.failure_html)
        self.assertEqual(len(self.demo_envelope(request)), 1)
        self.run_jobs()
        self.assertEqual(len(self.agreement.esign_request_ids), 1, "running again sends nothing twice")

    def test_progress_follows_the_signatures(self):
        second = self._make_agreement("C-002", self.client_partner)
        bulk = self.bulk_of(self.open_bulk(self.agreement | second).action_send())
        self.run_jobs()
        self.assertEqual(bulk.sent_count, 2)
        request = self.agreement.esign_request_ids
        self.demo_act(request, "client")
        self.demo_act(request, "company")
        self.demo_act(second.esign_request_ids, "client", decision="refused", reason="Too expensive")
        bulk.invalidate_recordset()
        self.assertEqual((bulk.sent_count, bulk.signed_count, bulk.refused_count), (0, 1, 1))

    def test_a_contract_sent_meanwhile_is_not_sent_twice(self):
        result = self.open_bulk(self.agreement).action_send()
        self.send()  # someone sends it through the dialog before the bulk send's batch runs
        self.run_jobs()
        self.assertEqual(len(self.agreement.esign_request_ids), 1)
        row = self.bulk_of(result).row_ids
        self.assertEqual((row.state, row.result_code), ("failed", "ESIGN_ALREADY_OUT"))
        self.assertFalse(row.request_id, "the row does not claim someone else's request")

    def test_rpc_with_another_companys_contract_or_a_template_is_refused(self):
        foreign = self._make_agreement("F-1", self.client_partner, company=self.other_company)
        template = self._make_agreement("T-1", self.client_partner)
        template.is_template = True
        Wizard = self.env(user=self.salesman)["esign.bulk.send.wizard"]
        for agreements, code in ((foreign, "ESIGN_NO_RIGHTS"), (template, "ESIGN_TEMPLATE")):
            wizard = Wizard.create({"agreement_ids": [fields.Command.set(agreements.ids)]})
            with self.assertRaisesRegex(UserError, "None of the selected contracts can be sent"):
                wizard.action_send()
            self.assertEqual(wizard.line_ids.code, code)
        self.assertFalse(self.env["esign.campaign"].search([("kind", "=", "contracts")]),
                         "nothing recorded for a refused send")
        wizard = Wizard.create({"agreement_ids": [fields.Command.set((self.agreement | foreign | template).ids)]})
        hidden = wizard.line_ids.filtered(lambda line: not line.agreement_id)
        self.assertEqual(hidden.code, "ESIGN_NO_RIGHTS")
        self.assertEqual(hidden.agreement_name, f"Contract #{foreign.id}", "another company's contract is not named")
        bulk = self.bulk_of(wizard.action_send())
        self.run_jobs()
        self.assertEqual(self.agreement.esign_request_ids.state, "sent")
        self.assertFalse((foreign | template).sudo().esign_request_ids)
        self.assertEqual(bulk.row_ids.agreement_id, self.agreement | template, "the foreign contract is not kept")
        self.assertEqual(bulk.row_ids.filtered(lambda r: r.agreement_id == template).result_code, "ESIGN_TEMPLATE")

    def test_another_companys_provider_is_refused(self):
        other_provider = self.provider.sudo().copy({"company_id": self.other_company.id, "name": "Demo (Other Co)",
                                                   "state": "test", "representative_user_id": False})
        wizard = self.open_bulk(self.agreement, provider_id=other_provider.id)
        self.assertEqual(wizard.line_ids.code, "ESIGN_PROVIDER_COMPANY")
        with self.assertRaises(UserError):
            wizard.action_send()

    def test_without_a_pdf_the_attachment_source_is_refused_and_auto_prints(self):
        self.env["ir.attachment"].search([("res_model", "=", "agreement"), ("res_id", "=", self.agreement.id)]).unlink()
        self.assertEqual(self.open_bulk(self.agreement, document_source="attachment").line_ids.code, "ESIGN_NO_DOCUMENT")
        self.assertTrue(self.open_bulk(self.agreement, document_source="auto").line_ids.ready,
                        "printed when it is sent, in the background")

    def test_who_may_use_it(self):
        plain = new_test_user(self.env, "esign_plain_bulk", groups="base.group_user", name="Paul Plain")
        with self.assertRaises(AccessError):
            self.open_bulk(self.agreement, user=plain)
        wizard = self.open_bulk(self.agreement)
        other = new_test_user(self.env, "esign_sales_bulk2", groups="base.group_user,esign_connector.group_esign_user",
                              name="Olga Other")
        with self.assertRaises(AccessError):
            wizard.with_user(other).action_send()
        bulk = self.bulk_of(wizard.action_send())
        with self.assertRaises(AccessError, msg="a salesperson cancels only their own bulk send"):
            bulk.with_user(other).action_cancel()
        bulk.with_user(self.salesman).action_cancel()
        self.run_jobs()
        self.assertEqual(bulk.row_ids.state, "cancelled")
        self.assertFalse(self.agreement.esign_request_ids)
        self.assertEqual(bulk.with_user(other).read(["state"])[0]["state"], "cancelled", "salespeople read bulk sends")

    def test_more_than_a_thousand_contracts_are_refused(self):
        with self.assertRaisesRegex(UserError, "at most 1000"):
            self.env(user=self.salesman)["esign.bulk.send.wizard"].with_context(
                active_model="agreement", active_ids=list(range(1, 1002))).default_get(["agreement_ids", "line_ids"])
