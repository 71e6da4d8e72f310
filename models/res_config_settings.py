# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Settings > E-Signature: the default provider and its mode and representative."""
from odoo import fields, models


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    esign_provider_id = fields.Many2one(related="company_id.esign_provider_id", readonly=False)
    esign_account_mode = fields.Selection(related="esign_provider_id.account_mode", readonly=False)
    esign_representative_user_id = fields.Many2one(related="esign_provider_id.representative_user_id",
                                                   readonly=False)
    esign_representative_first_name = fields.Char(related="esign_provider_id.representative_first_name",
                                                  readonly=False)
    esign_representative_last_name = fields.Char(related="esign_provider_id.representative_last_name",
                                                 readonly=False)
    esign_representative_email = fields.Char(related="esign_provider_id.representative_email", readonly=False)
    esign_representative_basis = fields.Char(related="esign_provider_id.representative_basis", readonly=False)
    esign_jwk_kid = fields.Char(related="esign_provider_id.jwk_kid", readonly=False)

    def action_esign_open_providers(self):
        return self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_provider_action")
