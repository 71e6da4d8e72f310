# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Settings > E-Signature: how the sender is told of the outcome (per company)."""
from odoo import fields, models


class ResConfigSettingsNotify(models.TransientModel):
    _inherit = "res.config.settings"

    esign_notify_mode = fields.Selection(related="company_id.esign_notify_mode", readonly=False)
