# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
from odoo import _, api, fields, models
from odoo.exceptions import UserError


class Agreement(models.Model):
    _inherit = "agreement"

    esign_request_ids = fields.One2many("esign.request", "agreement_id", string="E-Signature Requests")
    esign_request_id = fields.Many2one("esign.request", compute="_compute_esign_request_info",
                                       string="Latest E-Signature Request")
    esign_state = fields.Selection(
        selection=lambda self: self.env["esign.request"]._fields["state"].selection,
        compute="_compute_esign_state", string="E-Signature Status", store=True,
    )
    esign_provider_name = fields.Char(compute="_compute_esign_request_info")
    esign_request_count = fields.Integer(compute="_compute_esign_request_info")
    esign_disabled = fields.Boolean(related="agreement_type_id.esign_disabled")
    esign_provider_id = fields.Many2one("esign.provider", compute="_compute_esign_provider_id",
                                        string="E-Signature Provider")

    @api.depends("esign_request_ids.state")
    def _compute_esign_state(self):
        for agreement in self:
            latest = agreement.esign_request_ids.sorted("id", reverse=True)[:1]
            agreement.esign_state = latest.state or False

    @api.depends("esign_request_ids.provider_id", "esign_provider_id")
    def _compute_esign_request_info(self):
        for agreement in self:
            latest = agreement.esign_request_ids.sorted("id", reverse=True)[:1]
            agreement.esign_request_id = latest
            agreement.esign_request_count = len(agreement.esign_request_ids)
            agreement.esign_provider_name = latest.provider_id.name or agreement.esign_provider_id.name

    @api.depends("company_id")
    @api.depends_context("company")
    def _compute_esign_provider_id(self):
        for agreement in self:
            company = agreement.company_id or self.env.company
            agreement.esign_provider_id = company.sudo().esign_provider_id._origin \
                or self.env["esign.provider"].sudo().search(
                    [("company_id", "=", company.id), ("state", "!=", "disabled")], limit=1)

    def _esign_check_enabled(self):
        for agreement in self:
            if agreement.agreement_type_id.esign_disabled:
                raise UserError(_(
                    "E-signature is disabled for contracts of type %(type)s (%(contract)s).",
                    type=agreement.agreement_type_id.name, contract=agreement.display_name))

    def action_esign_send(self):
        """Open the send wizard (the Sign with ... button)."""
        self.ensure_one()
        self._esign_check_enabled()
        if self.esign_state == "sent":
            raise UserError(_("This contract is already out for signature. Refresh its status or "
                              "cancel that request first."))
        return {
            "type": "ir.actions.act_window",
            "res_model": "esign.send.wizard",
            "view_mode": "form",
            "target": "new",
            "name": _("Send for e-signature"),
            "context": {"default_agreement_id": self.id},
        }

    def action_esign_refresh(self):
        """Read the latest request's status from the provider (the Refresh / Signed with ... button)."""
        for agreement in self:
            if agreement.esign_request_id:
                agreement.esign_request_id.action_esign_refresh()
        return True

    def action_view_esign_requests(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_request_action")
        action["domain"] = [("agreement_id", "=", self.id)]
        action["context"] = {"default_agreement_id": self.id, "create": False}
        return action
