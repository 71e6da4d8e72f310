# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Yousign connector: the ORM glue between ``esign.provider`` and :mod:`..api.yousign`.

Yousign authenticates Odoo with one API key (Yousign app > Developers > API keys), valid for one
organisation, optionally restricted to one workspace. The key acts for nobody in particular: the
company signer is simply a signer we add, so central mode (the representative signs) and individual
mode (the salesperson signs) send the same calls and need no per-user credentials.

Notifications come from one webhook subscription per organisation (``POST /webhooks``, button
"Register notification URL at Yousign"); each delivery is signed with HMAC-SHA256 using the
subscription's secret key, which we keep in the core's ``webhook_secret``.
"""
import pytz

from odoo import fields, models
from odoo.exceptions import UserError

from ..api import yousign as yousign_api
from ..api.base import ProviderError
from .esign_access import check_esign_right

SIGNATURE_LEVELS = [
    ("electronic_signature", "Simple electronic signature"),
    ("advanced_electronic_signature", "Advanced electronic signature"),
    ("electronic_signature_with_qualified_certificate", "Electronic signature with qualified certificate"),
    ("qualified_electronic_signature", "Qualified electronic signature"),
    ("qualified_electronic_signature_mode_1", "Qualified electronic signature (mode 1)"),
]
AUTHENTICATION_MODES = [
    ("otp_email", "One-time code by e-mail"),
    ("otp_sms", "One-time code by SMS (signers need a mobile number)"),
    ("no_otp", "No one-time code"),
]


class EsignProviderYousign(models.Model):
    _inherit = "esign.provider"

    code = fields.Selection(selection_add=[("yousign", "Yousign")], ondelete={"yousign": "set default"})
    yousign_api_key = fields.Char(
        string="Yousign API Key", groups="base.group_system", copy=False,
        help="Yousign app > Developers (or Settings > Integrations) > API keys: create a key and copy "
        "it here. Sandbox and production keys differ: use a sandbox key in Test Mode, a production key "
        "when Enabled. One key covers the whole organisation (or one workspace), so in individual mode "
        "the salespeople need no Yousign credentials of their own: their user account line only gives "
        "the e-mail they sign with.",
    )
    yousign_workspace_id = fields.Char(
        string="Yousign Workspace ID", groups="base.group_system",
        help="Optional. Yousign app > Settings > Workspaces > your workspace: its ID (a UUID). Leave "
        "empty to use the API key's default workspace.",
    )
    yousign_signature_level = fields.Selection(
        SIGNATURE_LEVELS, string="Yousign Signature Level", groups="base.group_system",
        default=yousign_api.DEFAULT_SIGNATURE_LEVEL,
        help="The signature level of every signer. Levels other than the simple electronic signature "
        "must be enabled on your Yousign plan and may require identity verification of the signers.",
    )
    yousign_authentication_mode = fields.Selection(
        AUTHENTICATION_MODES, string="Yousign Signer Authentication", groups="base.group_system",
        default=yousign_api.DEFAULT_AUTHENTICATION_MODE,
        help="How signers confirm their identity with the simple electronic signature (other levels "
        "use Yousign's own rules). By SMS, every signer needs a mobile number.",
    )
    yousign_webhook_id = fields.Char(
        string="Yousign Webhook ID", groups="base.group_system", readonly=True, copy=False,
        help="The webhook subscription Odoo registered at Yousign (Yousign app > Developers > Webhooks).",
    )

    # ------------------------------------------------------------------ provider interface

    def _yousign_base_url(self):
        """The override if set, else the sandbox host in Test Mode and production when Enabled."""
        return self._esign_api_base_url(yousign_api.SANDBOX_URL, yousign_api.PRODUCTION_URL)

    def _yousign_timezone(self, account):
        """The sending user's time zone (dates in Yousign's e-mails and audit trail)."""
        users = [self.env.user]
        if account and account.get("user_id"):
            users.append(self.env["res.users"].sudo().browse(account["user_id"]).exists())
        for user in users:
            if user and user.tz and user.tz in pytz.all_timezones_set:
                return user.tz
        return yousign_api.DEFAULT_TIMEZONE

    def _esign_build_client(self, account):
        if self.code != "yousign":
            return super()._esign_build_client(account)
        provider = self.sudo()
        return yousign_api.YousignClient(
            base_url=provider._yousign_base_url(),
            api_key=(provider.yousign_api_key or "").strip(),
            webhook_secret=provider.webhook_secret or None,
            workspace_id=(provider.yousign_workspace_id or "").strip(),
            signature_level=provider.yousign_signature_level or yousign_api.DEFAULT_SIGNATURE_LEVEL,
            authentication_mode=provider.yousign_authentication_mode or yousign_api.DEFAULT_AUTHENTICATION_MODE,
            timezone=provider._yousign_timezone(account),
        )

    def _esign_phone_required(self):
        if self.code != "yousign":
            return super()._esign_phone_required()
        return self.sudo().yousign_authentication_mode == "otp_sms"

    def _esign_missing_settings(self):
        missing = super()._esign_missing_settings()
        if self.code != "yousign":
            return missing
        provider = self.sudo()
        if not (provider.yousign_api_key or "").strip():
            missing.append(self.env._("Yousign API key"))
        if not provider.webhook_secret:
            missing.append(self.env._("Webhook secret (register the notification URL at Yousign)"))
        return missing

    # ------------------------------------------------------------------ actions

    def action_yousign_register_webhook(self):
        """Subscribe our notification URL at Yousign and keep the secret Yousign signs with."""
        self.ensure_one()
        check_esign_right(self.env, "configure_provider")
        if self.code != "yousign":
            raise UserError(self.env._("This action is for Yousign providers only."))
        provider = self.sudo()
        if not (provider.yousign_api_key or "").strip():
            raise UserError(self.env._("Enter the Yousign API key first."))
        url = provider.webhook_url
        if not (url or "").startswith("https://"):
            raise UserError(self.env._(
                "Yousign only notifies https addresses, and the notification URL is %s. Make Odoo "
                "reachable over https (system parameter web.base.url) and try again.", url))
        try:
            client = provider._esign_build_client({})
            webhook_id, secret = client.register_webhook(url, sandbox=provider.state != "enabled")
        except ProviderError as error:
            raise UserError(provider._esign_error_message(error)) from error
        if not secret:
            raise UserError(self.env._(
                "Yousign registered the notification URL (webhook %s) but sent no secret key. Copy "
                "the webhook's secret key from Yousign into the Webhook secret field.", webhook_id))
        provider.write({"webhook_secret": secret, "yousign_webhook_id": webhook_id})
        return {
            "type": "ir.actions.client", "tag": "display_notification",
            "params": {
                "type": "success",
                "message": self.env._(
                    "Yousign will notify %(url)s (webhook %(id)s). Its secret key is saved as the "
                    "webhook secret.", url=url, id=webhook_id),
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }
