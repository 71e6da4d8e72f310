# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Check the signers and the document, then send: the "Sign with <provider>" dialog."""
from odoo import _, api, fields, models
from odoo.exceptions import UserError

REPORT_XMLID = "esign_connector.action_report_agreement_contract"


class EsignSendWizard(models.TransientModel):
    _name = "esign.send.wizard"
    _description = "Send a contract for e-signature"

    agreement_id = fields.Many2one("agreement", required=True, readonly=True)
    company_id = fields.Many2one(related="agreement_id.company_id")
    provider_id = fields.Many2one(
        "esign.provider", required=True,
        domain="[('state', '!=', 'disabled'), ('company_id', '=', provider_company_id)]",
    )
    provider_company_id = fields.Many2one("res.company", compute="_compute_provider_company_id")
    account_mode = fields.Selection(related="provider_id.account_mode")
    document_source = fields.Selection(
        [("attachment", "A PDF attached to the contract"), ("report", "The contract printed by Odoo")],
        required=True, default="report")
    attachment_id = fields.Many2one(
        "ir.attachment", string="PDF",
        domain="[('res_model', '=', 'agreement'), ('res_id', '=', agreement_id), "
               "('mimetype', '=', 'application/pdf')]",
    )
    subject = fields.Char(required=True)
    message = fields.Text()
    signer_ids = fields.One2many("esign.send.wizard.signer", "wizard_id", string="Signers")

    @api.depends("agreement_id")
    def _compute_provider_company_id(self):
        for wizard in self:
            wizard.provider_company_id = wizard.agreement_id.company_id or self.env.company

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        agreement = self.env["agreement"].browse(values.get("agreement_id") or self.env.context.get("default_agreement_id"))
        if not agreement:
            return values
        agreement._esign_check_enabled()
        provider = agreement.esign_provider_id
        values.setdefault("provider_id", provider.id)
        values.setdefault("subject", _("Please sign: %s", agreement.name))
        pdf = self.env["ir.attachment"].search([
            ("res_model", "=", "agreement"), ("res_id", "=", agreement.id),
            ("mimetype", "=", "application/pdf")], order="id desc", limit=1)
        if pdf and not self.env.context.get("default_document_source"):
            values["attachment_id"] = pdf.id
            values["document_source"] = "attachment"
        if "signer_ids" in fields_list:
            values["signer_ids"] = [fields.Command.create(v) for v in self._signer_defaults(agreement, provider)]
        return values

    @api.model
    def _signer_defaults(self, agreement, provider):
        """The client first, then the company signer of the provider's mode."""
        lines = []
        partner = agreement.partner_id
        if partner:
            lines.append({
                "partner_id": partner.id, "name": partner.name, "email": partner.email or False,
                "phone": partner.phone or partner.mobile or False, "role": "client", "sequence": 1,
                "action": "sign",
            })
        if provider:
            try:
                company_line = provider._esign_company_signer_values(self.env.user)
            except UserError:
                company_line = None  # shown as a clear error when sending
            if company_line:
                company_line["sequence"] = 2
                lines.append(company_line)
        return lines

    @api.onchange("provider_id")
    def _onchange_provider_id(self):
        if self.provider_id and self.agreement_id:
            self.signer_ids = [fields.Command.clear()] + [
                fields.Command.create(v) for v in self._signer_defaults(self.agreement_id, self.provider_id)]

    # ------------------------------------------------------------------ checks

    def _check_before_send(self):
        """Everything a user can fix here, said at once and precisely."""
        self.ensure_one()
        self.agreement_id._esign_check_enabled()
        if not self.env.user.has_group("esign_connector.group_esign_user"):
            raise UserError(_("You are not allowed to send contracts for e-signature."))
        problems = []
        if not self.provider_id:
            problems.append(_("Choose an e-signature provider."))
        elif self.provider_id.state == "disabled":
            problems.append(_("The provider %s is disabled.", self.provider_id.name))
        if self.document_source == "attachment" and not self.attachment_id:
            problems.append(_("Choose the PDF to sign, or print the contract instead."))
        if not self.signer_ids:
            problems.append(_("Add at least one signer."))
        elif "client" not in self.signer_ids.mapped("role"):
            problems.append(_("Add the client as a signer."))
        for signer in self.signer_ids:
            if not signer.email:
                problems.append(_("%s has no e-mail address.", signer.name or _("A signer")))
        clients = self.signer_ids.filtered(lambda s: s.role == "client")
        companies = self.signer_ids.filtered(lambda s: s.role == "company")
        if clients and companies and max(clients.mapped("sequence")) > min(companies.mapped("sequence")):
            problems.append(_("The client signs first: give the company signer a higher signing order."))
        if problems:
            raise UserError("\n".join(problems))

    def _get_document(self):
        """The attachment to send: the chosen PDF, or the contract printed now."""
        self.ensure_one()
        if self.document_source == "attachment":
            return self.attachment_id
        report = self.env.ref(REPORT_XMLID).sudo()
        pdf, _type = report._render_qweb_pdf(REPORT_XMLID, [self.agreement_id.id])
        # sudo: attaching to a contract needs write access on it, which salespeople do not have.
        return self.env["ir.attachment"].sudo().create({
            "name": f"{self.agreement_id.code or self.agreement_id.name}.pdf".replace("/", "-"),
            "raw": pdf,
            "mimetype": "application/pdf",
            "res_model": "agreement",
            "res_id": self.agreement_id.id,
        })

    # ------------------------------------------------------------------ send

    def action_send(self):
        self.ensure_one()
        self._check_before_send()
        self.provider_id._esign_check_ready(self.env.user)
        request = self.env["esign.request"].create({
            "agreement_id": self.agreement_id.id,
            "provider_id": self.provider_id.id,
            "company_id": (self.agreement_id.company_id or self.env.company).id,
            "user_id": self.env.user.id,
            "subject": self.subject,
            "message": self.message,
            "document_id": self._get_document().id,
            "signer_ids": [fields.Command.create(line._request_signer_values()) for line in self.signer_ids],
        })
        request._esign_send()
        if request.state == "error":
            return {
                "type": "ir.actions.client", "tag": "display_notification",
                "params": {"type": "danger", "sticky": True, "message": request.last_error,
                           "next": {"type": "ir.actions.act_window_close"}},
            }
        return {
            "type": "ir.actions.client", "tag": "display_notification",
            "params": {"type": "success",
                       "message": _("Sent to %(provider)s. The client signs first.",
                                    provider=self.provider_id.name),
                       "next": {"type": "ir.actions.act_window_close"}},
        }


class EsignSendWizardSigner(models.TransientModel):
    _name = "esign.send.wizard.signer"
    _description = "Signer to send to"
    _order = "sequence, id"

    wizard_id = fields.Many2one("esign.send.wizard", required=True, ondelete="cascade")
    partner_id = fields.Many2one("res.partner", string="Contact")
    name = fields.Char(required=True)
    email = fields.Char()
    phone = fields.Char()
    role = fields.Selection([("client", "Client"), ("company", "Company")], required=True, default="client")
    sequence = fields.Integer(string="Signing Order", default=1, required=True)
    action = fields.Selection([("sign", "Sign"), ("approve", "Approve"), ("view", "View only")],
                              required=True, default="sign")
    representation_basis = fields.Char(string="Basis of Representation")

    @api.onchange("partner_id")
    def _onchange_partner_id(self):
        if self.partner_id:
            self.name = self.partner_id.name
            self.email = self.partner_id.email
            self.phone = self.partner_id.phone or self.partner_id.mobile

    def _request_signer_values(self):
        self.ensure_one()
        first, _sep, last = (self.name or "").partition(" ")
        provider = self.wizard_id.provider_id
        values = {
            "partner_id": self.partner_id.id, "name": self.name, "email": self.email, "phone": self.phone,
            "role": self.role, "sequence": self.sequence, "action": self.action,
            "representation_basis": self.representation_basis,
            "first_name": first, "last_name": last,
        }
        if self.role == "company":
            account = provider._esign_acting_account(self.env.user)
            if (account.get("email") or "").lower() == (self.email or "").lower():
                values.update({
                    "first_name": account.get("first_name") or first,
                    "last_name": account.get("last_name") or last,
                    "provider_user_id": account.get("provider_user_id") or False,
                })
        return values
