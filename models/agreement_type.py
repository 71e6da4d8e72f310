# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
from odoo import fields, models


class AgreementType(models.Model):
    _inherit = "agreement.type"

    esign_disabled = fields.Boolean(
        string="Disable e-signature",
        help="Contracts of this type cannot be sent for e-signature: the sign button is hidden "
        "and sending is refused.",
    )
