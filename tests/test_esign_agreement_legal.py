# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Next to the OCA agreement family: one header, stages, and agreement_sign_oca's flow beside ours.

These tests run on every database. What needs OCA ``agreement_legal`` (stages, its header) or
``agreement_sign_oca`` (Odoo-internal signing) skips, saying so, where that module is not installed;
``tools/test.sh`` runs the whole suite on a database with both (its run 3), and the tests that need
no OCA module check that, without them, the form is as before and there is nothing to configure.
"""
from lxml import etree

from odoo.tests import tagged
from odoo.tests.common import new_test_user

from .common import EsignCommon

OUR_BUTTONS = ["action_esign_send", "action_esign_refresh", "action_esign_refresh"]


def module_installed(env, name):
    return bool(env["ir.module.module"].search_count([("name", "=", name), ("state", "=", "installed")]))


class AgreementFamilyCommon(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.legal = module_installed(cls.env, "agreement_legal")
        cls.sign_oca = module_installed(cls.env, "agreement_sign_oca")
        if cls.legal:
            cls.stage_new = cls.env.ref("agreement_legal.agreement_stage_new")
            cls.stage_active = cls.env.ref("agreement_legal.agreement_stage_active")
            cls.stage_cancelled = cls.env.ref("agreement_legal.agreement_stage_cancelled")

    def require(self, module):
        if not module_installed(self.env, module):
            self.skipTest(f"{module} is not installed here (tools/test.sh runs this on a database with it)")

    def form_arch(self, user=None):
        """The contract's form as the web client gets it (combined, then filtered for the user)."""
        view = self.env["agreement"].with_user(user or self.salesman).get_view(view_type="form")
        return etree.fromstring(view["arch"])

    def sign_with_demo(self, agreement=None, decision="signed"):
        """Sign with Demo, client then representative (or the client refuses)."""
        request, _result = self.send(agreement)
        self.assertEqual(request.state, "sent")
        self.demo_act(request, "client", decision, reason="" if decision == "signed" else "Price too high")
        if decision == "signed":
            self.demo_act(request, "company")
        self.env.cr.flush()  # runs the tracking (stage changes) as a commit would
        return request

    def stage_changes(self, agreement):
        """(old stage, new stage, author) of the stage changes in the contract's chatter, oldest first."""
        changes = []
        for message in agreement.message_ids.sorted("id"):
            for value in message.sudo().tracking_value_ids.filtered(lambda v: v.field_id.name == "stage_id"):
                changes.append((value.old_value_char, value.new_value_char, message.author_id))
        return changes


@tagged("post_install", "-at_install")
class TestOneHeader(AgreementFamilyCommon):

    def test_the_form_has_one_header_holding_our_buttons(self):
        arch = self.form_arch()
        headers = arch.xpath("/form/header")
        self.assertEqual(len(headers), 1, etree.tostring(arch, pretty_print=True).decode()[:3000])
        header = headers[0]
        self.assertEqual([b.get("name") for b in header.xpath("button[starts-with(@name, 'action_esign')]")],
                         OUR_BUTTONS)
        self.assertFalse(arch.xpath("//*[@name='esign_header_marker']"), "the marker never reaches the client")
        if self.legal:
            # agreement_legal's header, with its stage bar, holds our buttons; ours is gone.
            self.assertTrue(header.xpath("field[@name='stage_id'][@widget='statusbar']"))
            self.assertTrue(header.xpath("button[@name='create_new_version']"))
            self.assertNotEqual(header.get("name"), "esign_header")
        else:
            self.assertEqual(header.get("name"), "esign_header")
            self.assertEqual(len(header), 3, "as before: our three buttons only")
        # The smart button and the status badge are where they were.
        self.assertTrue(arch.xpath("//div[@name='button_box']/button[@name='action_view_esign_requests']"))
        self.assertTrue(arch.xpath("//sheet//field[@name='esign_state'][@widget='badge']"))

    def test_both_signing_flows_share_the_header_and_the_button_box(self):
        self.require("agreement_sign_oca")
        self.salesman.groups_id |= self.env.ref("sign_oca.sign_oca_group_user")
        arch = self.form_arch()
        header = arch.xpath("/form/header")
        self.assertEqual(len(header), 1)
        names = [b.get("name") for b in header[0].iter("button")]
        self.assertIn("action_send_for_signature", names)  # agreement_sign_oca's "Request Signature"
        self.assertEqual([n for n in names if n.startswith("action_esign")], OUR_BUTTONS)
        box = [b.get("name") for b in arch.xpath("//div[@name='button_box']/button")]
        self.assertIn("action_view_sign_requests", box)
        self.assertIn("action_view_esign_requests", box)

    def test_without_the_esign_group_only_the_other_modules_buttons_remain(self):
        clerk = new_test_user(self.env, "agreement_clerk", groups="base.group_user")
        arch = self.form_arch(clerk)
        header = arch.xpath("/form/header")
        self.assertFalse(arch.xpath("//button[starts-with(@name, 'action_esign')]"))
        if self.legal:
            self.assertEqual(len(header), 1)
            self.assertTrue(header[0].xpath("field[@name='stage_id']"))


@tagged("post_install", "-at_install")
class TestStages(AgreementFamilyCommon):

    def configure(self, signed=None, refused=None):
        """Choose the stages in Settings > E-Signature, as an administrator saves them."""
        settings = self.env["res.config.settings"].create({
            "esign_signed_stage": str(signed.id) if signed else False,
            "esign_refused_stage": str(refused.id) if refused else False,
        })
        settings.execute()
        return settings

    def test_without_agreement_legal_there_is_nothing_to_configure(self):
        if self.legal:
            self.skipTest("agreement_legal is installed here: its stages are tested below")
        settings = self.env["res.config.settings"].create({})
        self.assertFalse(settings.esign_stages_available)
        self.assertEqual(settings._fields["esign_signed_stage"]._description_selection(self.env), [])
        self.assertFalse(settings.esign_signed_stage)
        view = etree.fromstring(self.env["res.config.settings"].get_view(view_type="form")["arch"])
        block = view.xpath("//block[@name='esign_stage_settings']")
        self.assertEqual(block[0].get("invisible"), "not esign_stages_available")
        # A stale id (say, left by an uninstalled agreement_legal) changes nothing and breaks nothing.
        self.company.esign_signed_stage_res_id = 4242
        request = self.sign_with_demo()
        self.assertEqual(request.state, "signed")
        self.assertNotIn("stage_id", self.agreement._fields)

    def test_settings_offer_the_contract_stages_and_keep_the_choice_per_company(self):
        self.require("agreement_legal")
        settings = self.env["res.config.settings"].create({})
        self.assertTrue(settings.esign_stages_available)
        offered = settings._fields["esign_signed_stage"]._description_selection(self.env)
        stages = self.env["agreement.stage"].search([("stage_type", "=", "agreement")])
        self.assertEqual(offered, [(str(s.id), s.name) for s in stages])
        self.assertIn((str(self.stage_active.id), "Active"), offered)
        self.assertFalse(settings.esign_signed_stage)

        self.configure(signed=self.stage_active, refused=self.stage_cancelled)
        self.assertEqual(self.company.esign_signed_stage_res_id, self.stage_active.id)
        self.assertEqual(self.company.esign_refused_stage_res_id, self.stage_cancelled.id)
        again = self.env["res.config.settings"].create({})
        self.assertEqual((again.esign_signed_stage, again.esign_refused_stage),
                         (str(self.stage_active.id), str(self.stage_cancelled.id)))
        other = self.env["res.company"].create({"name": "Other Company"})
        self.assertFalse(other.esign_signed_stage_res_id)

        # An archived stage is neither offered nor shown as chosen (nor used: see below).
        self.stage_cancelled.active = False
        again = self.env["res.config.settings"].create({})
        self.assertNotIn(str(self.stage_cancelled.id), dict(
            again._fields["esign_refused_stage"]._description_selection(self.env)))
        self.assertFalse(again.esign_refused_stage)

    def test_signed_contract_moves_to_the_signed_stage(self):
        self.require("agreement_legal")
        self.configure(signed=self.stage_active, refused=self.stage_cancelled)
        self.assertEqual(self.agreement.stage_id, self.stage_new)
        request, _result = self.send()
        self.demo_act(request, "client")
        self.assertEqual(self.agreement.stage_id, self.stage_new, "not before everyone signed")
        self.demo_act(request, "company")
        self.env.cr.flush()
        self.assertEqual(request.state, "signed")
        self.assertEqual(self.agreement.esign_state, "signed")
        self.assertEqual(self.agreement.stage_id, self.stage_active)
        self.assertEqual(self.stage_changes(self.agreement),
                         [("New", "Active", self.env.ref("base.partner_root"))])
        # Reading the status again changes nothing.
        self.agreement.with_user(self.salesman).action_esign_refresh()
        self.env.cr.flush()
        self.assertEqual(len(self.stage_changes(self.agreement)), 1)

    def test_refused_contract_moves_to_the_refused_stage(self):
        self.require("agreement_legal")
        self.configure(signed=self.stage_active, refused=self.stage_cancelled)
        request = self.sign_with_demo(decision="refused")
        self.assertEqual(request.state, "refused")
        self.assertEqual(self.agreement.stage_id, self.stage_cancelled)
        self.assertEqual([change[:2] for change in self.stage_changes(self.agreement)], [("New", "Cancelled")])

    def test_without_a_chosen_stage_the_contract_stays_where_it_is(self):
        self.require("agreement_legal")
        self.configure(signed=self.stage_active)  # none for a refusal
        refused = self.sign_with_demo(decision="refused")
        self.assertEqual(refused.state, "refused")
        self.assertEqual(self.agreement.stage_id, self.stage_new)
        self.configure()  # none at all
        other = self._make_agreement("C-002", self.client_partner)
        self.assertEqual(self.sign_with_demo(other).state, "signed")
        self.assertEqual(other.stage_id, self.stage_new)
        self.assertFalse(self.stage_changes(self.agreement) + self.stage_changes(other))

    def test_archived_stage_is_not_used(self):
        self.require("agreement_legal")
        self.configure(signed=self.stage_active)
        self.stage_active.active = False
        self.assertEqual(self.sign_with_demo().state, "signed")
        self.assertEqual(self.agreement.stage_id, self.stage_new)

    def test_a_contract_already_in_the_stage_is_not_written(self):
        self.require("agreement_legal")
        self.configure(signed=self.stage_active)
        self.env.cr.flush()  # the contract was created in an earlier transaction: its changes are tracked
        self.agreement.stage_id = self.stage_active
        self.env.cr.flush()
        before = self.stage_changes(self.agreement)
        self.assertEqual(len(before), 1)  # New -> Active, by hand
        self.assertEqual(self.sign_with_demo().state, "signed")
        self.assertEqual(self.stage_changes(self.agreement), before)
        self.assertEqual(self.agreement.stage_id, self.stage_active)


@tagged("post_install", "-at_install")
class TestNextToSignOca(AgreementFamilyCommon):
    """agreement_sign_oca's "Request Signature" (signing inside Odoo) and our "Sign with Demo" on one
    contract: each flow keeps its own requests, state and stage setting."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not cls.sign_oca:
            return
        cls.signed_in_odoo = cls.env["agreement.stage"].create({
            "name": "Signed in Odoo", "stage_type": "agreement", "sequence": 75})
        cls.company.agreement_sign_oca_signed_stage_id = cls.signed_in_odoo
        cls.company.esign_signed_stage_res_id = cls.stage_active.id
        # agreement_sign_oca's signers: the partner's contact, and a company contact who is a user.
        cls.agreement.write({"partner_contact_id": cls.client_partner.id,
                             "company_contact_id": cls.ceo.partner_id.id})
        cls.legal_user = new_test_user(
            cls.env, "agreement_legal_user", name="Lena Legal", email="lena@acme.example.com",
            groups="base.group_user,agreement_legal.group_agreement_manager,sign_oca.sign_oca_group_user")

    def request_signature_in_odoo(self):
        """agreement_sign_oca's button, printing the contract with agreement_legal's report."""
        action = self.agreement.with_user(self.legal_user).with_context(
            force_report_rendering=True).action_send_for_signature()
        return self.env["sign.oca.request"].browse(action["res_id"])

    def sign_in_odoo(self, sign_request):
        """Each signer types their name on page 1, as on sign_oca's signing page."""
        name_field = self.env.ref("sign_oca.sign_field_name")
        for signer in sign_request.signer_ids:
            sign_request.add_item({"field_id": name_field.id, "role_id": signer.role_id.id, "page": 1,
                                   "position_x": 10, "position_y": 10 + 10 * len(sign_request.signatory_data),
                                   "width": 20, "height": 5, "required": True})
        sign_request.action_send()
        for signer in sign_request.signer_ids:
            items = {key: dict(item, value=signer.partner_id.name)
                     for key, item in signer.get_info()["items"].items()}
            signer.action_sign(items)

    def test_both_flows_on_one_contract_each_with_its_own_state(self):
        self.require("agreement_sign_oca")
        sign_request = self.request_signature_in_odoo()
        self.assertEqual(sign_request.state, "1_draft")
        self.assertEqual(self.agreement.sign_request_count, 1)
        self.assertFalse(self.agreement.esign_state, "their request is not ours")

        # Ours, on the same contract, while theirs is open.
        request = self.sign_with_demo()
        self.assertEqual((request.state, self.agreement.esign_state), ("signed", "signed"))
        self.assertEqual(self.agreement.stage_id, self.stage_active)
        self.assertEqual(sign_request.state, "1_draft")
        self.assertFalse(self.agreement.signed_contract, "agreement_sign_oca's signed document is theirs")
        signature_date = self.agreement.signature_date

        # Theirs, to the end: their stage; our request, state and date stay.
        self.sign_in_odoo(sign_request)
        self.assertEqual(sign_request.state, "2_signed")
        self.assertEqual(self.agreement.stage_id, self.signed_in_odoo)
        self.assertTrue(self.agreement.signed_contract)
        self.assertEqual((request.state, self.agreement.esign_state), ("signed", "signed"))
        self.assertEqual(self.agreement.signature_date, signature_date)

        # Each smart button lists its own requests.
        self.assertEqual((self.agreement.sign_request_count, self.agreement.esign_request_count), (1, 1))
        theirs = self.agreement.with_user(self.legal_user).action_view_sign_requests()
        self.assertEqual(self.env["sign.oca.request"].search(theirs["domain"]), sign_request)
        ours = self.agreement.with_user(self.salesman).action_view_esign_requests()
        self.assertEqual(self.env["esign.request"].search(ours["domain"]), request)
        # One chatter tells both stories.
        self.env.cr.flush()
        bodies = " ".join(self.agreement.message_ids.mapped("body"))
        self.assertIn("signed by all parties with Demo", bodies)
        self.assertEqual([change[:2] for change in self.stage_changes(self.agreement)],
                         [("New", "Active"), ("Active", "Signed in Odoo")])

    def test_their_request_first_does_not_block_ours(self):
        self.require("agreement_sign_oca")
        sign_request = self.request_signature_in_odoo()
        self.sign_in_odoo(sign_request)
        self.assertEqual(self.agreement.stage_id, self.signed_in_odoo)
        # A contract signed inside Odoo may still be sent to a provider (e.g. for a qualified
        # signature); our flow does not read theirs.
        wizard = self.open_wizard()
        self.assertTrue(wizard.signer_ids)
        request = self.sign_with_demo()
        self.assertEqual(request.state, "signed")
        self.assertEqual(self.agreement.stage_id, self.stage_active)
        self.assertEqual(sign_request.state, "2_signed")
