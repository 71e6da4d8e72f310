# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
from odoo import fields, models


class ResCompany(models.Model):
    _inherit = "res.company"

    esign_provider_id = fields.Many2one(
        "esign.provider", string="Default E-Signature Provider",
        domain="[('company_id', '=', id)]",
    )
