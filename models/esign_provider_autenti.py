# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Autenti connector: the ORM glue between ``esign.provider`` and :mod:`..api.autenti`.

Autenti authenticates Odoo with the OAuth2 JWT-bearer grant: the assertion is signed with the
provider's RSA key (``jwt_private_key`` / ``jwk_kid``, "Signing key" tab) whose public JWK the
administrator pastes into the client application in Autenti's panel. The ``email`` claim selects
the Autenti user Odoo acts for: the salesperson (individual mode) or the representative (central).
Callbacks are registered once per organisation and signed by Autenti (detached JWS, Autenti JWKS).
"""
from odoo import api, fields, models
from odoo.exceptions import UserError

from ..api import autenti as autenti_api
from ..api.base import ProviderError
from .esign_access import check_esign_right

SIGNATURE_TYPES = {
    "basic": autenti_api.SIGNATURE_BASIC,
    "advanced": autenti_api.SIGNATURE_ADVANCED,
    "qualified": autenti_api.SIGNATURE_QUALIFIED,
}


class EsignProviderAutenti(models.Model):
    _inherit = "esign.provider"

    code = fields.Selection(selection_add=[("autenti", "Autenti")], ondelete={"autenti": "set default"})
    autenti_client_id = fields.Char(
        string="Autenti Client ID", groups="base.group_system",
        help="Autenti panel > Integrations (API) > your client application: the \"Client ID\".",
    )
    autenti_client_secret = fields.Char(
        string="Autenti Client Secret", groups="base.group_system", copy=False,
        help="Autenti panel > Integrations (API) > your client application: the \"Client secret\".",
    )
    autenti_organisation_id = fields.Char(
        string="Organisation Identifier", groups="base.group_system",
        compute="_compute_autenti_organisation_id", store=True, readonly=False,
        help="Identifies this Odoo (database and company) to Autenti in every authentication token "
        "(claim \"iss\"). Keep the suggested value unless Autenti gave you one.",
    )
    autenti_signature_type = fields.Selection(
        selection=[("basic", "Basic electronic signature"), ("advanced", "Advanced electronic signature"),
                   ("qualified", "Qualified electronic signature")],
        string="Signature Type", default="basic", groups="base.group_system",
        help="The kind of signature Autenti asks every signer for. Advanced and qualified signatures "
        "must be enabled in your Autenti plan.",
    )
    autenti_jwks_url_override = fields.Char(
        string="Notification Keys URL Override", groups="base.group_system",
        help="Leave empty: Autenti's published key set (sandbox or production) verifies the "
        "notifications. Set it only for a proxy or a test server.",
    )

    # ------------------------------------------------------------------ computes

    @api.depends("code", "company_id")
    def _compute_autenti_organisation_id(self):
        for provider in self:
            if provider.code == "autenti" and not provider.autenti_organisation_id and provider.company_id:
                provider.autenti_organisation_id = provider._autenti_default_organisation_id()

    def _autenti_default_organisation_id(self):
        self.ensure_one()
        db_uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid") or self.env.cr.dbname
        return f"odoo-{db_uuid}-{self.company_id.id}"

    # ------------------------------------------------------------------ provider interface

    def _autenti_base_url(self):
        return self._esign_api_base_url(autenti_api.SANDBOX_URL, autenti_api.PRODUCTION_URL)

    def _esign_build_client(self, account):
        if self.code != "autenti":
            return super()._esign_build_client(account)
        provider = self.sudo()
        account = account or {}
        base_url = provider._autenti_base_url()
        return autenti_api.AutentiClient(
            base_url=base_url,
            client_id=(provider.autenti_client_id or "").strip(),
            client_secret=(provider.autenti_client_secret or "").strip(),
            organisation_id=(provider.autenti_organisation_id or "").strip()
            or provider._autenti_default_organisation_id(),
            private_key_pem=provider.jwt_private_key or "",
            kid=provider.jwk_kid or "",
            acting_email=account.get("email") or "",
            acting_subject=account.get("subject") or "",
            jwks_url=(provider.autenti_jwks_url_override or "").strip() or autenti_api.jwks_url_for(base_url),
            signature_type=SIGNATURE_TYPES.get(provider.autenti_signature_type or "basic",
                                               autenti_api.SIGNATURE_BASIC),
        )

    def _esign_missing_settings(self):
        missing = super()._esign_missing_settings()
        if self.code != "autenti":
            return missing
        provider = self.sudo()
        if not provider.autenti_client_id:
            missing.append(self.env._("Autenti client ID"))
        if not provider.autenti_client_secret:
            missing.append(self.env._("Autenti client secret"))
        if not provider.jwt_private_key:
            missing.append(self.env._("Signing key (generate it in the Signing key tab)"))
        if not provider.jwk_kid:
            missing.append(self.env._("JWK key ID"))
        return missing

    # ------------------------------------------------------------------ actions

    def action_autenti_register_callback(self):
        """Register this database's notification URL at Autenti (once per organisation)."""
        self.ensure_one()
        check_esign_right(self.env, "configure_provider")
        if self.code != "autenti":
            raise UserError(self.env._("This button is for Autenti providers only."))
        missing = self.sudo()._esign_missing_settings()
        if missing:
            raise UserError(self.env._(
                "Complete the Autenti settings first. Missing: %(missing)s.", missing=", ".join(missing)))
        account = self._esign_acting_account(self.env.user)  # representative, or the user's own account
        client = self._esign_get_client(account=account)
        try:
            client.register_callback(self.webhook_url)
        except ProviderError as error:
            raise UserError(self._esign_error_message(error)) from error
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "title": self.env._("Autenti"),
                "message": self.env._("Autenti will send its notifications to %s.", self.webhook_url),
                "sticky": False,
            },
        }
