# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Automation rules without code: the Send for e-signature and Check e-signature status actions."""
from odoo import Command
from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged
from odoo.tests.common import new_test_user
from odoo.tools import mute_logger

from .common import EsignCommon


@tagged("post_install", "-at_install")
class TestEsignAutomation(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Contracts made from a template have no PDF yet: the module's report prints them. wkhtmltopdf
        # fetches the report's CSS from report.url; a closed loopback port renders it at once (see
        # test_send_printed_report), and force_report_rendering renders a real PDF in tests.
        cls.env["ir.config_parameter"].set_param("report.url", "http://127.0.0.1:9")
        cls.env = cls.env(context=dict(cls.env.context, force_report_rendering=True))
        cls.contract_admin = new_test_user(
            cls.env, "esign_contract_admin", groups="base.group_user,base.group_system,base.group_partner_manager",
            name="Carl Contracts", email="carl@acme.example.com")
        cls.plain_user = new_test_user(cls.env, "esign_plain", groups="base.group_user", name="Paul Plain",
                                       email="paul@acme.example.com")
        cls.template = cls.env["agreement"].create({
            "code": "MAINT", "name": "Maintenance contract", "is_template": True,
            "agreement_type_id": cls.type_esign.id,
        })
        cls.tag = cls.env["res.partner.category"].create({"name": "Maintenance client (test)"})
        cls.todo = cls.env.ref("mail.mail_activity_data_todo")

    # ------------------------------------------------------------------ helpers

    def rule(self, model, action, domain=None, pre_domain=None, trigger="on_create_or_write"):
        """An automation rule on ``model`` with one action (``action``: its values)."""
        model_id = self.env["ir.model"]._get_id(model)
        return self.env["base.automation"].create({
            "name": f"Rule on {model}",
            "model_id": model_id,
            "trigger": trigger,
            "filter_domain": repr(domain) if domain else False,
            "filter_pre_domain": repr(pre_domain) if pre_domain else False,
            "action_server_ids": [Command.create(dict(
                {"name": action["state"], "model_id": model_id, "usage": "base_automation"}, **action))],
        })

    def tag_rule(self, **action):
        """When a contact gets the tag, make the contract from the template and send it."""
        return self.rule("res.partner", dict({"state": "esign_send", "esign_template_id": self.template.id}, **action),
                         domain=[("category_id", "in", [self.tag.id])],
                         pre_domain=[("category_id", "not in", [self.tag.id])])

    def contracts_of(self, record):
        return self.env["agreement"].search([("esign_origin_ref", "=", f"{record._name},{record.id}")])

    def client(self, name="Jan Nowak", email="jan@client.example.com", **vals):
        return self.env["res.partner"].create(dict({"name": name, "email": email, "user_id": self.salesman.id}, **vals))

    def activities(self, record, user):
        return record.activity_ids.filtered(lambda a: a.user_id == user)

    def signed_on_the_demo_page(self, request):
        """Both parties sign on the Demo page, but the notifications never reach Odoo."""
        self.demo_act(request, "client", deliver=False)
        self.demo_act(request, "company", deliver=False)
        self.assertEqual(request.state, "sent", "nothing told Odoo yet")

    # ------------------------------------------------------------------ send: on a contract

    def test_rule_on_a_contract_type_sends_the_contract(self):
        self.rule("agreement", {"state": "esign_send", "esign_subject": "Umowa {{ object.code }}",
                                "esign_message": "Dzień dobry {{ object.partner_id.name }}"},
                  domain=[("agreement_type_id", "=", self.type_esign.id)])
        agreement = self._make_agreement("A-1", self.client_partner, self.type_paper)
        agreement.with_user(self.contract_admin).agreement_type_id = self.type_esign
        request = agreement.esign_request_ids
        self.assertEqual(request.state, "sending", "queued in the saving transaction, sent after it commits")
        self.assertEqual(request.user_id, self.contract_admin, "no salesperson on the contract: who triggered it")
        self.assertEqual((request.subject, request.message), ("Umowa A-1", "Dzień dobry Anna Kowalska"))
        self.assertEqual(request.document_id.name, "A-1.pdf", "the PDF attached to the contract")
        self.run_jobs()
        self.assertEqual(request.state, "sent")
        self.assertEqual(agreement.esign_state, "sent")
        self.assertFalse(agreement.esign_error_code)

    def test_a_contract_already_out_is_left_alone(self):
        rule = self.rule("agreement", {"state": "esign_send"})
        request, _result = self.send()
        action = rule.action_server_ids.with_context(
            active_model="agreement", active_id=self.agreement.id, active_ids=self.agreement.ids)
        action.run()
        self.assertEqual(self.agreement.esign_request_ids, request, "no second request")
        self.assertFalse(self.agreement.esign_error_code, "firing again is not an error")
        self.assertFalse(self.agreement.activity_ids)

    def test_run_by_hand_from_the_action_menu(self):
        action = self.env["ir.actions.server"].create({
            "name": "Send for e-signature", "model_id": self.env["ir.model"]._get_id("agreement"),
            "state": "esign_send", "esign_provider_id": self.provider.id, "esign_document_source": "attachment",
        })
        paper = self._make_agreement("P-1", self.client_partner, self.type_paper)
        agreements = self.agreement | paper
        result = action.with_user(self.contract_admin).with_context(
            active_model="agreement", active_ids=agreements.ids, active_id=agreements[0].id).run()
        self.assertEqual(result["params"]["type"], "warning")
        self.assertIn("1 contract(s) queued for e-signature, 1 not sent", result["params"]["message"])
        self.assertEqual(self.agreement.esign_request_ids.provider_id, self.provider)
        self.assertEqual(paper.esign_error_code, "ESIGN_TYPE_DISABLED")

    def test_a_user_without_write_access_cannot_run_it_by_hand(self):
        action = self.env["ir.actions.server"].create({
            "name": "Send for e-signature", "model_id": self.env["ir.model"]._get_id("agreement"),
            "state": "esign_send"})
        with self.assertRaises(AccessError), mute_logger("odoo.addons.base.models.ir_actions"):
            # Odoo's own check: may this user write the records?
            action.with_user(self.salesman).with_context(
                active_model="agreement", active_ids=self.agreement.ids, active_id=self.agreement.id).run()
        self.assertFalse(self.agreement.esign_request_ids)

    # ------------------------------------------------------------------ send: from another record

    def test_rule_on_a_contact_creates_the_contract_from_the_template(self):
        self.tag_rule(esign_subject="Umowa {{ object.code }}")
        partner = self.client(category_id=[Command.link(self.tag.id)])
        agreement = self.contracts_of(partner)
        self.assertEqual(len(agreement), 1)
        self.assertEqual((agreement.partner_id, agreement.esign_origin_ref), (partner, partner))
        self.assertFalse(agreement.is_template)
        self.assertEqual(agreement.agreement_type_id, self.type_esign)
        self.assertTrue(partner.message_ids.filtered(lambda m: agreement.display_name in str(m.body)),
                        "the contact's chatter says which contract was made")
        request = agreement.esign_request_ids
        self.assertEqual(request.user_id, self.salesman, "sent on behalf of the contact's salesperson")
        self.assertTrue(request.document_id.raw.startswith(b"%PDF"), "the contract printed by Odoo")
        self.assertTrue(request.subject.startswith("Umowa MAINT-"))
        self.run_jobs()
        self.assertEqual(request.state, "sent")
        self.assertEqual(self.signer(request, "client").email, "jan@client.example.com")
        self.assertFalse(self.template.esign_request_ids, "the template itself is never sent")

    def test_the_rule_firing_again_makes_no_second_contract_while_the_first_is_out(self):
        self.tag_rule()
        partner = self.client(category_id=[Command.link(self.tag.id)])
        self.run_jobs()
        partner.category_id = [Command.unlink(self.tag.id)]
        partner.category_id = [Command.link(self.tag.id)]
        self.assertEqual(len(self.contracts_of(partner)), 1)
        self.assertEqual(len(self.contracts_of(partner).esign_request_ids), 1)

    def test_client_field_names_the_partner(self):
        action = self.env["ir.actions.server"].create({
            "name": "Send", "model_id": self.env["ir.model"]._get_id("res.partner.bank"), "state": "esign_send",
            "esign_template_id": self.template.id})
        self.assertEqual(action.esign_partner_field_id.name, "partner_id", "proposed from the model")
        self.tag_rule(esign_partner_field_id=self.env["ir.model.fields"]._get("res.partner", "parent_id").id)
        company = self.env["res.partner"].create({"name": "Nowak Sp. z o.o.", "is_company": True,
                                                  "email": "biuro@nowak.example.com"})
        contact = self.client(parent_id=company.id, email="jan@nowak.example.com",
                              category_id=[Command.link(self.tag.id)])
        agreement = self.contracts_of(contact)
        self.assertEqual(agreement.partner_id, company, "the contract is the contact's company's")
        self.assertEqual(agreement.esign_request_ids.user_id, self.salesman)

    def test_individual_mode_the_salesperson_signs_for_the_company(self):
        self.provider.account_mode = "individual"
        self.tag_rule()
        partner = self.client(category_id=[Command.link(self.tag.id)])
        request = self.contracts_of(partner).esign_request_ids
        self.assertEqual(self.signer(request, "company").email, "sam@acme.example.com")

    def test_the_clients_own_user_never_sends(self):
        # An employee's user_id is the employee, who signs: the user who triggered the rule sends.
        self.tag_rule()
        partner = self.env["res.partner"].browse(self.salesman.partner_id.id)  # self.env renders the report
        partner.user_id = self.salesman
        partner.with_user(self.contract_admin).category_id = [Command.link(self.tag.id)]
        agreement = self.contracts_of(partner)
        self.assertEqual(agreement.esign_request_ids.user_id, self.contract_admin, agreement.esign_error_message)

    # ------------------------------------------------------------------ send: problems never raise

    def test_a_failing_check_is_stored_and_told_then_the_same_contract_is_sent(self):
        self.tag_rule()
        partner = self.client(email=False, category_id=[Command.link(self.tag.id)])
        agreement = self.contracts_of(partner)
        self.assertEqual(len(agreement), 1, "made and kept, with the reason")
        self.assertFalse(agreement.esign_request_ids)
        self.assertEqual(agreement.esign_error_code, "ESIGN_NO_EMAIL")
        self.assertIn("Jan Nowak has no e-mail address", agreement.esign_error_message)
        activity = self.activities(agreement, self.salesman)
        self.assertEqual(len(activity), 1)
        self.assertIn("Not sent for e-signature", activity.summary)
        self.assertIn("no e-mail address", str(activity.note))
        self.assertFalse(self.env["ir.attachment"].search([("res_model", "=", "agreement"), ("res_id", "=", agreement.id)]),
                         "a contract printed for nothing is not kept")
        # Fixed, tagged again: that contract is sent, no copy piles up.
        partner.write({"email": "jan@client.example.com", "category_id": [Command.unlink(self.tag.id)]})
        partner.category_id = [Command.link(self.tag.id)]
        self.assertEqual(self.contracts_of(partner), agreement)
        self.assertEqual(agreement.esign_request_ids.state, "sending")
        self.assertFalse(agreement.esign_error_code)

    def test_contract_type_without_e_signature(self):
        self.rule("agreement", {"state": "esign_send"}, domain=[("agreement_type_id", "!=", False)])
        agreement = self._make_agreement("P-2", self.client_partner, self.type_paper)
        self.assertEqual(agreement.esign_error_code, "ESIGN_TYPE_DISABLED")
        self.assertIn("disabled for contracts of type Paper only", agreement.esign_error_message)
        self.assertTrue(agreement.activity_ids, "the responsible user is told")
        self.assertFalse(agreement.esign_request_ids)

    def test_the_responsible_users_rights_apply(self):
        self.tag_rule()
        partner = self.client(user_id=self.plain_user.id, category_id=[Command.link(self.tag.id)])
        agreement = self.contracts_of(partner)
        self.assertEqual(agreement.esign_error_code, "ESIGN_NO_RIGHTS",
                         "a rule cannot send as someone who could not send by hand")
        self.assertTrue(self.activities(agreement, self.plain_user))
        self.assertFalse(agreement.esign_request_ids)

    def test_a_record_without_client_is_told_on_the_record(self):
        self.tag_rule(esign_partner_field_id=self.env["ir.model.fields"]._get("res.partner", "parent_id").id)
        partner = self.client(category_id=[Command.link(self.tag.id)])
        self.assertFalse(self.contracts_of(partner))
        activity = self.activities(partner, self.salesman)
        self.assertEqual(activity.activity_type_id, self.todo)
        self.assertIn("no client", str(activity.note))

    def test_a_rule_names_its_actions(self):
        action = self.tag_rule().action_server_ids
        action.esign_template_id = self.template  # what the form's onchange does
        self.assertEqual(action.name, "Send for e-signature: Maintenance contract")
        action = self.rule("agreement", {"state": "esign_send"}).action_server_ids
        action.state = "esign_check"
        self.assertEqual(action.name, "Check e-signature status")

    def test_a_template_that_is_no_longer_one(self):
        self.tag_rule()
        self.template.is_template = False
        partner = self.client(category_id=[Command.link(self.tag.id)])
        self.assertFalse(self.contracts_of(partner))
        self.assertIn("no longer a template", str(self.activities(partner, self.salesman).note))

    def test_the_action_is_checked_when_saved(self):
        partner_model = self.env["ir.model"]._get_id("res.partner")
        with self.assertRaisesRegex(ValidationError, "choose the contract template"):
            self.env["ir.actions.server"].create({"name": "Send", "model_id": partner_model, "state": "esign_send"})
        with self.assertRaisesRegex(ValidationError, "choose the contract template"):
            self.env["ir.actions.server"].create({"name": "Send", "model_id": partner_model, "state": "esign_send",
                                                  "esign_template_id": self.agreement.id})
        with self.assertRaisesRegex(ValidationError, "choose the field that names the client"):
            self.env["ir.actions.server"].create({
                "name": "Send", "model_id": self.env["ir.model"]._get_id("res.partner.bank"), "state": "esign_send",
                "esign_template_id": self.template.id, "esign_partner_field_id": False})
        action = self.env["ir.actions.server"].new({"name": "Send", "state": "esign_send"})
        models = action.available_model_ids.mapped("model")
        self.assertIn("agreement", models)
        self.assertIn("res.partner", models)
        self.assertNotIn("res.currency", models, "no partner: nothing to send")

    # ------------------------------------------------------------------ check, and the next rule

    def test_check_reads_the_status_and_the_next_rule_reacts(self):
        check = self.rule("agreement", {"state": "esign_check"}, trigger="on_time_created")
        reacted = self.rule("agreement", {
            "state": "next_activity", "activity_type_id": self.todo.id, "activity_summary": "Start the onboarding",
            "activity_user_type": "specific", "activity_user_id": self.manager.id,
        }, domain=[("esign_state", "=", "signed")])
        self.assertEqual(reacted.trigger_field_ids.name, "esign_state")
        request, _result = self.send()
        self.assertFalse(self.activities(self.agreement, self.manager), "sent is not signed")
        self.signed_on_the_demo_page(request)
        check._process(self.agreement)  # what the scheduler runs
        self.assertEqual(request.state, "signed")
        self.assertEqual(self.agreement.esign_state, "signed")
        self.assertTrue(request.signed_document_id)
        onboarding = self.activities(self.agreement, self.manager)
        self.assertEqual(onboarding.summary, "Start the onboarding", "the following rule reacted to signed")

    def test_check_on_the_record_the_contract_was_made_from(self):
        self.tag_rule()
        check = self.rule("res.partner", {"state": "esign_check"}, trigger="on_time_created")
        partner = self.client(category_id=[Command.link(self.tag.id)])
        self.run_jobs()
        request = self.contracts_of(partner).esign_request_ids
        self.demo_act(request, "client", "refused", reason="Too expensive", deliver=False)
        check._process(partner)
        self.assertEqual(request.state, "refused")
        self.assertEqual(self.contracts_of(partner).esign_state, "refused")

    def test_a_failed_status_read_is_stored_told_once_and_cleared(self):
        check = self.rule("agreement", {"state": "esign_check"}, trigger="on_time_created")
        request, _result = self.send()
        envelope = self.demo_envelope(request)
        reference = envelope.reference
        envelope.reference = "DEMO-lost"  # the provider cannot find it for a while
        check._process(self.agreement)
        check._process(self.agreement)  # the next scheduled run
        self.assertEqual(request.state, "sent")
        self.assertEqual(self.agreement.esign_error_code, "ESIGN_CHECK_FAILED")
        self.assertIn("no envelope", self.agreement.esign_error_message)
        told = self.agreement.activity_ids.filtered(lambda a: "status not read" in (a.summary or ""))
        self.assertEqual(len(told), 1, "one activity, not one per run")
        self.assertEqual(told.user_id, self.salesman)
        envelope.reference = reference
        self.signed_on_the_demo_page(request)
        check._process(self.agreement)
        self.assertEqual(request.state, "signed")
        self.assertFalse(self.agreement.esign_error_code)

    def test_check_leaves_requests_being_sent_to_the_outbox(self):
        check = self.rule("agreement", {"state": "esign_check"}, trigger="on_time_created")
        request, _result = self.send(process=False)
        check._process(self.agreement)
        self.assertEqual(request.state, "sending")
        self.assertFalse(self.agreement.esign_error_code)
        self.run_jobs()
        self.assertEqual(request.state, "sent")

    def test_demo_rule(self):
        rule = self.env.ref("esign_connector.base_automation_esign_maintenance", raise_if_not_found=False)
        if not rule:
            self.skipTest("demo data not installed")
        partner = self.client(category_id=[Command.link(self.env.ref("esign_connector.res_partner_category_maintenance").id)])
        agreement = self.contracts_of(partner)
        self.assertEqual(agreement.partner_id, partner)
        self.assertTrue(agreement.esign_request_ids.subject.startswith("Maintenance contract MAINT-"))
        self.run_jobs()
        self.assertEqual(agreement.esign_request_ids.state, "sent")
