# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Check the signers and the document, then send: the "Sign with <provider>" dialog."""
from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

from ..models import esign_send_checks as checks



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
        pdf = agreement._esign_attached_pdf()
        if pdf and not self.env.context.get("default_document_source"):
            values["attachment_id"] = pdf.id
            values["document_source"] = "attachment"
        if "signer_ids" in fields_list:
            values["signer_ids"] = [fields.Command.create(v) for v in self._signer_defaults(agreement, provider)]
        return values

    @api.model
    def _signer_defaults(self, agreement, provider):
        """The client first, then the company signer the provider's mode decides (read-only)."""
        lines = agreement._esign_client_signers()
        company = agreement.company_id or self.env.company
        if provider and provider.company_id == company and provider.has_access("read"):
            try:
                company_line = self.env["esign.request"]._esign_company_signer(provider, self.env.user)
            except UserError:
                company_line = None  # shown as a clear error when sending
            if company_line:
                lines.append({key: company_line.get(key) for key in (
                    "partner_id", "name", "email", "role", "action", "representation_basis")} | {"sequence": 2})
        return lines

    @api.onchange("provider_id")
    def _onchange_provider_id(self):
        if self.provider_id and self.agreement_id:
            self.signer_ids = [fields.Command.clear()] + [
                fields.Command.create(v) for v in self._signer_defaults(self.agreement_id, self.provider_id)]

    # ------------------------------------------------------------------ checks

    def _signer_values(self):
        return [line._signer_values() for line in self.signer_ids]

    def _send_problems(self, document):
        self.ensure_one()
        problems = self.env["esign.request"]._esign_send_problems(
            self.agreement_id, self.provider_id, self.env.user, document, self._signer_values())
        if self.document_source == "report" and not document:
            problems = [p for p in problems if p.code != "ESIGN_NO_DOCUMENT"]
        return problems

    def _check_before_send(self):
        """Everything a user can fix here, said at once and precisely (the server checks it again)."""
        self.ensure_one()
        document = self.attachment_id if self.document_source == "attachment" else self.env["ir.attachment"]
        problems = self._send_problems(document)
        if self.document_source == "attachment" and not self.attachment_id:
            problems = [p for p in problems if p.code != "ESIGN_NO_DOCUMENT"]
            problems.insert(0, checks.SendProblem("ESIGN_NO_DOCUMENT", _(
                "Choose the PDF to sign, or print the contract instead.")))
        if problems:
            raise UserError(checks.format_problems(problems))

    def _get_document(self):
        """The attachment to send: the chosen PDF, or the contract printed now."""
        self.ensure_one()
        if self.document_source == "attachment":
            return self.attachment_id
        return self.agreement_id._esign_document("report")

    # ------------------------------------------------------------------ send

    def action_send(self):
        """Queue the send; the provider is called once this transaction has committed."""
        self.ensure_one()
        if self.create_uid != self.env.user and not self.env.su:
            raise AccessError(_("This dialog was opened by someone else."))
        self._check_before_send()
        request = self.env["esign.request"]._esign_queue_send(
            self.agreement_id, self.provider_id, self._get_document(), self._signer_values(),
            subject=self.subject, message=self.message)
        return {
            "type": "ir.actions.client", "tag": "display_notification",
            "params": {"type": "success",
                       "message": _("%(request)s: sending to %(provider)s. The client signs first.",
                                    request=request.name, provider=self.provider_id.name),
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

    def _signer_values(self):
        """The line as the server's send takes it (the company line is checked against the mode)."""
        self.ensure_one()
        return {
            "partner_id": self.partner_id.id, "name": self.name, "email": self.email, "phone": self.phone,
            "role": self.role, "sequence": self.sequence, "action": self.action,
        }
