# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
from odoo import fields, models


class ResCompany(models.Model):
    _inherit = "res.company"

    esign_provider_id = fields.Many2one(
        "esign.provider", string="Default E-Signature Provider",
        domain="[('company_id', '=', id)]",
    )
    esign_notify_mode = fields.Selection(
        [("activity", "An activity"), ("email", "An e-mail"), ("both", "An activity and an e-mail")],
        string="Tell the Sender by", default="activity", required=True,
        help="How the salesperson who sent a contract learns that it was signed, refused, expired or failed.")
