# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Settings > E-Signature: the default provider and its mode and representative; with OCA
``agreement_legal``, the stages a contract moves to when it is signed or refused through us."""
from odoo import api, fields, models

from .agreement_stage import stage_by_res_id, stage_choices, stages_available


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
    # agreement_legal's stages (see models/agreement_stage.py): a selection of the existing stages,
    # stored on the company as a plain id, because agreement.stage may not exist.
    esign_stages_available = fields.Boolean(compute="_compute_esign_stages_available")
    esign_signed_stage = fields.Selection(
        selection="_esign_stage_selection", string="Stage when signed",
        compute="_compute_esign_stages", inverse="_inverse_esign_stages")
    esign_refused_stage = fields.Selection(
        selection="_esign_stage_selection", string="Stage when refused",
        compute="_compute_esign_stages", inverse="_inverse_esign_stages")

    def _esign_stage_selection(self):
        return stage_choices(self.env)

    def _compute_esign_stages_available(self):
        self.esign_stages_available = stages_available(self.env)

    @api.depends("company_id")
    def _compute_esign_stages(self):
        """Show the company's stages, if they still exist and are active: a selection cannot hold
        another value, and the hook would not use them either."""
        for settings in self:
            company = settings.company_id
            signed = stage_by_res_id(self.env, company.esign_signed_stage_res_id)
            refused = stage_by_res_id(self.env, company.esign_refused_stage_res_id)
            settings.esign_signed_stage = str(signed.id) if signed else False
            settings.esign_refused_stage = str(refused.id) if refused else False

    def _inverse_esign_stages(self):
        """Write the company only when a stage changed: every save of any settings page creates these
        records, and would otherwise write every company it shows."""
        for settings in self:
            vals = {
                "esign_signed_stage_res_id": int(settings.esign_signed_stage or 0),
                "esign_refused_stage_res_id": int(settings.esign_refused_stage or 0),
            }
            company = settings.company_id
            if any(company[fname] != value for fname, value in vals.items()):
                company.write(vals)

    def action_esign_open_providers(self):
        return self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_provider_action")
