# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
from odoo import _, api, fields, models
from odoo.exceptions import UserError

from . import esign_send_checks as checks
from .esign_access import check_esign_right
from .esign_request import LIVE_STATES


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
        Provider = self.env["esign.provider"]
        for agreement in self:
            agreement.esign_provider_id = Provider._esign_default_for_company(
                agreement.company_id or self.env.company)

    def _esign_check_enabled(self):
        """Refuse contracts that can never be sent (type without e-signature, templates)."""
        for agreement in self:
            problems = [p for p in checks.agreement_problems(agreement, self.env.user)
                        if p.code in ("ESIGN_TYPE_DISABLED", "ESIGN_TEMPLATE", "ESIGN_NO_RIGHTS")]
            if problems:
                raise UserError(checks.format_problems(problems))

    def _esign_on_signature_outcome(self, new_state, request):
        """Hook: ``request`` (of this contract) reached ``new_state``. Extended by the bridges to other
        agreement modules (e.g. moving the contract to a stage); runs in superuser mode."""
        return True

    def action_esign_send(self):
        """Open the send wizard (the Sign with ... button)."""
        self.ensure_one()
        check_esign_right(self.env, "send")
        self._esign_check_enabled()
        if self.esign_state in LIVE_STATES:
            raise UserError(_("This contract is already being sent, out for signature or signed. Refresh its "
                              "status, or cancel that request first."))
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
        check_esign_right(self.env, "refresh")
        requests = self.mapped("esign_request_id")
        if not requests:
            raise UserError(_("This contract was not sent for e-signature."))
        return requests.action_esign_refresh()

    def action_view_esign_requests(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_request_action")
        action["domain"] = [("agreement_id", "=", self.id)]
        action["context"] = {"default_agreement_id": self.id, "create": False}
        return action
