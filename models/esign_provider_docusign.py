# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""DocuSign connector: the ORM glue between ``esign.provider`` and :mod:`..api.docusign`.

DocuSign authenticates Odoo with the OAuth JWT grant: Odoo signs an assertion with the provider's
RSA key (``jwt_private_key``, "Signing key" tab) whose public half (PEM) the administrator adds to
the integration (app) in DocuSign's Apps and Keys page. The assertion impersonates one DocuSign
user, identified by their user ID (a GUID): the representative (central mode) or the salesperson
(individual mode, ``esign.user.account.provider_user_id``). Each of them grants consent once
(``docusign_consent_url``).

Notifications come from DocuSign Connect, per envelope, signed with HMAC-SHA256: the HMAC key
generated in DocuSign (Connect > Connect Keys) is pasted into the provider's notification secret
(``webhook_secret``).
"""
from odoo import api, fields, models
from odoo.exceptions import UserError

from ..api import docusign as docusign_api
from ..api import keys as rsa_keys
from ..api.base import ProviderError
from .esign_access import check_esign_right
from .esign_send_checks import SendProblem


class EsignProviderDocuSign(models.Model):
    _inherit = "esign.provider"

    code = fields.Selection(selection_add=[("docusign", "DocuSign")], ondelete={"docusign": "set default"})
    docusign_integration_key = fields.Char(
        string="DocuSign Integration Key", groups="base.group_system",
        help="DocuSign > Settings > Apps and Keys > your app: the \"Integration Key\" (a GUID).",
    )
    docusign_account_id = fields.Char(
        string="DocuSign API Account ID", groups="base.group_system",
        help="DocuSign > Settings > Apps and Keys: \"API Account ID\" (a GUID). Leave empty to use "
        "the default account of the user Odoo acts for.",
    )
    docusign_auth_host_override = fields.Char(
        string="DocuSign Authentication Host Override", groups="base.group_system",
        help="Leave empty: account-d.docusign.com in Test Mode, account.docusign.com when Enabled. "
        "Set it only for a proxy or a test server.",
    )
    docusign_consent_redirect_uri = fields.Char(
        string="Consent Redirect URI", groups="base.group_system",
        help="One of the \"Redirect URIs\" of your app in DocuSign > Settings > Apps and Keys. "
        "DocuSign sends the user there after they grant consent.",
    )
    docusign_public_key_pem = fields.Text(
        string="Public Key (PEM)", compute="_compute_docusign_public_key_pem", groups="base.group_system",
        help="Add this public key to your app in DocuSign > Settings > Apps and Keys > "
        "Service Integration > Upload RSA public key.",
    )
    docusign_next_public_key_pem = fields.Text(
        string="New Public Key (PEM)", compute="_compute_docusign_public_key_pem", groups="base.group_system",
        help="Add this key to your app in DocuSign too, then confirm the rotation.",
    )
    docusign_consent_url = fields.Char(
        string="Consent URL", compute="_compute_docusign_consent_url", groups="base.group_system",
        help="Open this address once as each DocuSign user Odoo acts for (the representative, or each "
        "salesperson) and accept, so that Odoo may send envelopes in their name.",
    )

    # ------------------------------------------------------------------ computes

    @api.depends("jwt_private_key", "jwt_next_private_key")
    def _compute_docusign_public_key_pem(self):
        for provider in self:
            provider.docusign_public_key_pem = provider._docusign_public_pem(provider.jwt_private_key)
            provider.docusign_next_public_key_pem = provider._docusign_public_pem(
                provider.jwt_next_private_key)

    def _docusign_public_pem(self, private_pem):
        if not private_pem:
            return False
        try:
            return rsa_keys.public_pem(private_pem)
        except ValueError as exc:
            return self.env._("Invalid private key: %s", exc)

    @api.depends("code", "state", "docusign_integration_key", "docusign_auth_host_override",
                 "docusign_consent_redirect_uri")
    def _compute_docusign_consent_url(self):
        for provider in self:
            if provider.code != "docusign" or not provider.docusign_integration_key:
                provider.docusign_consent_url = False
                continue
            provider.docusign_consent_url = provider._docusign_client_for_user("").consent_url()

    # ------------------------------------------------------------------ provider interface

    def _docusign_auth_host(self):
        self.ensure_one()
        provider = self.sudo()
        if provider.docusign_auth_host_override:
            return provider.docusign_auth_host_override.strip().rstrip("/")
        return docusign_api.PRODUCTION_AUTH_HOST if provider.state == "enabled" else docusign_api.SANDBOX_AUTH_HOST

    def _docusign_base_url(self):
        """The REST base (``…/restapi``): the override, else the sandbox host in Test Mode.

        Enabled (production) without an override returns ``""``: a production account lives on
        its own host (www, na2, eu, …), which the client reads from /oauth/userinfo; forcing the
        spec's default host there would break accounts on other hosts.
        """
        return self._esign_api_base_url(docusign_api.SANDBOX_URL, "")

    def _docusign_client_for_user(self, user_id):
        self.ensure_one()
        provider = self.sudo()
        base_url = provider._docusign_base_url()
        return docusign_api.DocuSignClient(
            integration_key=(provider.docusign_integration_key or "").strip(),
            user_id=(user_id or "").strip(),
            private_key_pem=provider.jwt_private_key or "",
            # The configured base is used as is only with an account id (no userinfo call);
            # without one, userinfo picks the account and the configured base still wins.
            account_id=(provider.docusign_account_id or "").strip(),
            base_url=base_url,
            auth_host=provider._docusign_auth_host(),
            hmac_secrets=[provider.webhook_secret] if provider.webhook_secret else [],
            redirect_uri=(provider.docusign_consent_redirect_uri or "").strip(),
        )

    def _esign_build_client(self, account):
        if self.code != "docusign":
            return super()._esign_build_client(account)
        return self._docusign_client_for_user((account or {}).get("provider_user_id") or "")

    def _esign_missing_settings(self):
        missing = super()._esign_missing_settings()
        if self.code != "docusign":
            return missing
        provider = self.sudo()
        if not provider.docusign_integration_key:
            missing.append(self.env._("DocuSign integration key"))
        if not provider.jwt_private_key:
            missing.append(self.env._("Signing key (generate it in the Signing key tab)"))
        if not provider.webhook_secret:
            missing.append(self.env._("Notification secret (the DocuSign Connect HMAC key)"))
        if provider.account_mode == "central" and not provider.representative_provider_user_id:
            missing.append(self.env._("Representative's DocuSign user ID"))
        return missing

    def _esign_account_problems(self, user):
        problems = super()._esign_account_problems(user)
        if self.code != "docusign" or self.account_mode != "individual" or problems:
            return problems
        if not self._esign_user_account(user).provider_user_id:
            problems.append(SendProblem("ESIGN_NO_ACCOUNT", self.env._(
                "%(user)s's DocuSign account has no DocuSign user ID. Ask an administrator to enter it "
                "under E-Signature > User Accounts (DocuSign > Settings > Users > the user: \"User ID\", "
                "a GUID).", user=user.name)))
        return problems

    # ------------------------------------------------------------------ actions

    def _docusign_check_button(self):
        self.ensure_one()
        check_esign_right(self.env, "configure_provider")
        if self.code != "docusign":
            raise UserError(self.env._("This button is for DocuSign providers only."))

    def action_docusign_open_consent(self):
        """Open DocuSign's consent page (to be accepted once by each user Odoo acts for)."""
        self._docusign_check_button()
        url = self.sudo().docusign_consent_url
        if not url:
            raise UserError(self.env._("Enter the DocuSign integration key first."))
        return {"type": "ir.actions.act_url", "url": url, "target": "new"}

    def action_docusign_test_connection(self):
        """Log in as the representative (or the current user's account) and find the API account."""
        self._docusign_check_button()
        missing = self.sudo()._esign_missing_settings()
        if missing:
            raise UserError(self.env._(
                "Complete the DocuSign settings first. Missing: %(missing)s.", missing=", ".join(missing)))
        account = self._esign_acting_account(self.env.user)
        client = self._esign_get_client(account=account)
        try:
            account_id, base = client._resolve_account()
            client._token()
        except ProviderError as error:
            raise UserError(self._esign_error_message(error)) from error
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "title": self.env._("DocuSign"),
                "message": self.env._("Connected as DocuSign user %(user)s, account %(account)s (%(base)s).",
                                      user=client.user_id, account=account_id, base=base),
                "sticky": False,
            },
        }
