# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""A salesperson's own account at a provider, for individual mode."""
from odoo import api, fields, models


class EsignUserAccount(models.Model):
    _name = "esign.user.account"
    _description = "E-Signature User Account"
    _order = "provider_id, user_id"
    _check_company_auto = True

    provider_id = fields.Many2one("esign.provider", required=True, ondelete="cascade", index=True,
                                  check_company=True)
    company_id = fields.Many2one(related="provider_id.company_id", store=True, index=True)
    user_id = fields.Many2one("res.users", required=True, ondelete="cascade", index=True,
                              check_company=True, string="User")
    login = fields.Char(string="Login / E-mail at Provider", required=True,
                        help="The e-mail the user signs in with at the provider.")
    provider_user_id = fields.Char(string="ID at Provider",
                                   help="The user's id at the provider, where the provider needs one.")
    first_name = fields.Char()
    last_name = fields.Char()
    active = fields.Boolean(default=True)

    _sql_constraints = [
        ("provider_user_uniq", "unique(provider_id, user_id)",
         "A user can have only one account per provider."),
    ]

    @api.depends("user_id", "provider_id", "login")
    def _compute_display_name(self):
        for account in self:
            account.display_name = f"{account.user_id.name} @ {account.provider_id.name} ({account.login})"

    @api.onchange("user_id")
    def _onchange_user_id(self):
        if self.user_id:
            self.login = self.login or self.user_id.email
            first, _sep, last = (self.user_id.name or "").partition(" ")
            self.first_name = self.first_name or first
            self.last_name = self.last_name or last

    def _esign_account_values(self):
        self.ensure_one()
        name = " ".join(filter(None, [self.first_name, self.last_name])) or self.user_id.name
        return {
            "email": self.login,
            "name": name,
            "first_name": self.first_name or "",
            "last_name": self.last_name or "",
            "provider_user_id": self.provider_user_id or "",
            "subject": f"odoo-user-{self.user_id.id}",
            "user_id": self.user_id.id,
        }
