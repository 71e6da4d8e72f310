# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Signi connector: the ORM glue between ``esign.provider`` and :mod:`..api.signi`.

Signi issues one API key per **workspace** (Signi app > Workspace settings > API), not per user. Both
account modes use that key; the only thing that changes is the company's counterparty: the
representative in central mode, the salesperson (the login of his esign.user.account line) in
individual mode. The workspace's *proposer* (a workspace member) authors every contract and approves
it automatically.

Signi's notifications are **not signed**, so this provider authenticates them by the per-request
token of the callback URL (``_esign_authenticates_by_callback_token``; the check itself is the
core's ``_esign_authenticate_callback_token``): the token must match a sent request of this
provider and the notification must be about that request's contract, otherwise 403.
"""
from odoo import fields, models

from ..api import signi as signi_api


class EsignProviderSigni(models.Model):
    _inherit = "esign.provider"

    code = fields.Selection(selection_add=[("signi", "Signi")], ondelete={"signi": "set default"})
    signi_api_key = fields.Char(
        string="Signi API Key", groups="base.group_system", copy=False,
        help="Signi app > Workspace settings > API > Generate a key: copy it here. One key per "
        "workspace serves everyone: in individual mode the salespeople need no Signi account, their "
        "user account line only gives the e-mail they sign with. For tests, use the key of a Signi "
        "DEMO workspace (Signi has no separate sandbox host).",
    )
    signi_proposer_email = fields.Char(
        string="Signi Proposer E-mail", groups="base.group_system",
        help="The e-mail of a member of the Signi workspace (e.g. its founder) who authors every "
        "contract and approves it automatically. It must not be one of the signers.",
    )

    # ------------------------------------------------------------------ provider interface

    def _signi_base_url(self):
        """The override if set, else Signi's API host (the same for Test Mode and Enabled)."""
        return self._esign_api_base_url(signi_api.SANDBOX_URL, signi_api.PRODUCTION_URL)

    def _esign_build_client(self, account):
        if self.code != "signi":
            return super()._esign_build_client(account)
        provider = self.sudo()
        return signi_api.SigniClient(
            base_url=provider._signi_base_url(),
            api_key=(provider.signi_api_key or "").strip(),
            proposer_email=(provider.signi_proposer_email or "").strip(),
        )

    def _esign_missing_settings(self):
        missing = super()._esign_missing_settings()
        if self.code != "signi":
            return missing
        provider = self.sudo()
        if not (provider.signi_api_key or "").strip():
            missing.append(self.env._("Signi API key"))
        if "@" not in (provider.signi_proposer_email or ""):
            missing.append(self.env._("Signi proposer e-mail"))
        return missing

    def _esign_authenticates_by_callback_token(self):
        return self.code == "signi" or super()._esign_authenticates_by_callback_token()
