# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""SELL&SIGN connector: the ORM glue between ``esign.provider`` and :mod:`..api.sellandsign`.

SELL&SIGN issues one API token (``j_token``) per licence **seat** (user), and the contract's sender
(``vendor``) must be that seat's e-mail (NOTES §2/§3; the fake enforces it).

Central mode: the representative's seat - ``sellandsign_j_token`` + ``sellandsign_vendor_email``
(administrators only) - sends, and the representative signs for the company.

Individual mode - a deliberate decision: tokens are secrets, and ``esign.user.account`` has no
field restricted to administrators that could hold one (``login`` and ``provider_user_id`` are
readable by e-signature users), so the salespeople's own tokens are **not** stored. Individual mode
therefore sends with the same central seat (its token and its vendor e-mail) and only changes the
company's signer: the salesperson, with the e-mail of his user account line (``login``). Putting
the salesperson's e-mail in ``vendor`` under the central token would be refused by SELL&SIGN
("vendor is not the user of this token"). Giving each salesperson his own seat needs a core field
for per-user secrets (admin-only) on ``esign.user.account``.

Callbacks are unsigned; they are authenticated by the per-request token in the URL, as for Signi
(the core's ``_esign_authenticate_callback_token``): the token must match a request of this provider
and the notification must be about that request's contract, otherwise 403.
"""
from odoo import fields, models

from ..api import sellandsign as sellandsign_api

SIGNATURE_MODES = [
    ("3", "E-mail, then a one-time code by SMS (MAIL_OTP)"),
    ("2", "Immediate touch signature (INSTANT_PAD)"),
    ("1", "Face to face, one-time code by SMS (Contralia)"),
    ("9", "Face to face, one-time code by SMS (SELL&SIGN)"),
    ("8", "Pre-validation before the signatories receive it"),
]


class EsignProviderSellAndSign(models.Model):
    _inherit = "esign.provider"

    code = fields.Selection(selection_add=[("sellandsign", "SELL&SIGN")],
                            ondelete={"sellandsign": "set default"})
    sellandsign_j_token = fields.Char(
        string="SELL&SIGN API Token (j_token)", groups="base.group_system", copy=False,
        help="The j_token of the SELL&SIGN licence seat that sends the contracts (SELL&SIGN gives one "
        "token per user; ask SELL&SIGN support or copy it from the seat's API settings). In both "
        "modes this seat sends; in individual mode only the company's signer changes to the "
        "salesperson.",
    )
    sellandsign_vendor_email = fields.Char(
        string="SELL&SIGN Sender E-mail", groups="base.group_system",
        help="The e-mail of the licence seat the token belongs to (SELL&SIGN's \"vendor\"); usually "
        "the representative's. SELL&SIGN refuses a sender that is not the token's user.",
    )
    sellandsign_contract_definition_id = fields.Char(
        string="SELL&SIGN Contract Definition", groups="base.group_system",
        help="Optional: the contract definition id from your licence's API descriptor document. "
        "Leave empty to use the licence's generic \"PDF ADHOC\" definition.",
    )
    sellandsign_signature_mode = fields.Selection(
        SIGNATURE_MODES, string="SELL&SIGN Signature Mode", groups="base.group_system",
        default=str(sellandsign_api.DEFAULT_SIGNATURE_MODE),
        help="The signature mode enabled on your licence (see its API descriptor document). Modes with "
        "an SMS code need a mobile number for every signer.",
    )

    # ------------------------------------------------------------------ provider interface

    def _sellandsign_base_url(self):
        """The override if set, else the beta cloud in Test Mode and production when Enabled."""
        return self._esign_api_base_url(sellandsign_api.SANDBOX_URL, sellandsign_api.PRODUCTION_URL)

    def _esign_build_client(self, account):
        """The central seat's client, whatever ``account`` (see the module docstring)."""
        if self.code != "sellandsign":
            return super()._esign_build_client(account)
        provider = self.sudo()
        definition = (provider.sellandsign_contract_definition_id or "").strip()
        return sellandsign_api.SellAndSignClient(
            base_url=provider._sellandsign_base_url(),
            j_token=(provider.sellandsign_j_token or "").strip(),
            vendor_email=(provider.sellandsign_vendor_email or "").strip(),
            contract_definition_id=int(definition) if definition.isdigit() else None,
            signature_mode=int(provider.sellandsign_signature_mode
                               or sellandsign_api.DEFAULT_SIGNATURE_MODE),
        )

    def _esign_phone_required(self):
        if self.code != "sellandsign":
            return super()._esign_phone_required()
        mode = int(self.sudo().sellandsign_signature_mode or sellandsign_api.DEFAULT_SIGNATURE_MODE)
        return mode in sellandsign_api.MODES_NEEDING_PHONE

    def _esign_missing_settings(self):
        missing = super()._esign_missing_settings()
        if self.code != "sellandsign":
            return missing
        provider = self.sudo()
        if not (provider.sellandsign_j_token or "").strip():
            missing.append(self.env._("SELL&SIGN API token (j_token)"))
        if "@" not in (provider.sellandsign_vendor_email or ""):
            missing.append(self.env._("SELL&SIGN sender e-mail"))
        definition = (provider.sellandsign_contract_definition_id or "").strip()
        if definition and not definition.isdigit():
            missing.append(self.env._("SELL&SIGN contract definition (a number)"))
        return missing

    def _esign_authenticates_by_callback_token(self):
        return self.code == "sellandsign" or super()._esign_authenticates_by_callback_token()
