# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Signi connector: the ORM glue between ``esign.provider`` and :mod:`..api.signi`.

Signi issues one API key per **workspace** (Signi app > Workspace settings > API), not per user. Both
account modes use that key; the only thing that changes is the company's counterparty: the
representative in central mode, the salesperson (the login of his esign.user.account line) in
individual mode. The workspace's *proposer* (a workspace member) authors every contract and approves
it automatically.

Signi's notifications are **not signed**. Every request's callback URL therefore carries its own
unguessable ``callback_token`` (``?token=...``), and :meth:`_esign_webhook_authenticate` accepts a
notification only when

1. the token has a plausible form (``client.verify_webhook``),
2. it equals (``hmac.compare_digest``) the token of a request of *this* provider record, and
3. every notification in the body is about that same request's ``provider_ref`` - a token
   authorises only its own request, so a leaked token cannot be used to move another contract.

Anything else raises :class:`WebhookAuthError`, which the core answers with 403 without storing or
applying anything. :func:`authenticate_request_token` is shared with the SELL&SIGN glue.
"""
import hmac

from odoo import fields, models

from ..api import signi as signi_api
from ..api.base import WebhookAuthError, WebhookMalformed

TOKEN_QUERY_PARAM = "token"


def _query_value(query, name):
    value = (query or {}).get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def authenticate_request_token(provider, client, headers, body, query):
    """Authenticate an unsigned notification by the per-request token of its URL (see module doc).

    Returns the matched ``esign.request`` (sudo); raises :class:`WebhookAuthError` otherwise. A body
    that cannot be parsed is let through here so that the core stores it as rejected and answers 400
    (it is never applied); a parsable body naming another contract than the token's request is 403.
    """
    client.verify_webhook(headers, body, query)  # format check only: nothing is signed
    token = _query_value(query, TOKEN_QUERY_PARAM) or ""
    request = provider.env["esign.request"].sudo().search(
        [("provider_id", "=", provider.id), ("callback_token", "=", token)], limit=1)
    if not request or not hmac.compare_digest(
            (request.callback_token or "").encode(), token.encode()):
        raise WebhookAuthError(f"{provider.name}: the notification's token matches no request")
    if not request.provider_ref:
        raise WebhookAuthError(f"{provider.name}: notification for a request that was not sent")
    try:
        notifications = client.parse_webhook(headers, body, query)
    except WebhookMalformed:
        return request
    if any(str(n.provider_ref or "") != request.provider_ref for n in notifications):
        raise WebhookAuthError(f"{provider.name}: the token of request {request.name} does not "
                               "authorise notifications about another contract")
    return request


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
        self.ensure_one()
        provider = self.sudo()
        if provider.api_base_url_override:
            return provider.api_base_url_override.strip().rstrip("/")
        return signi_api.PRODUCTION_URL if provider.state == "enabled" else signi_api.SANDBOX_URL

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

    def _esign_supports_individual_mode(self):
        if self.code != "signi":
            return super()._esign_supports_individual_mode()
        return True  # one workspace key; the salesperson is only the company's counterparty

    def _esign_callback_url(self, request):
        if self.code != "signi":
            return super()._esign_callback_url(request)
        return f"{self.get_base_url()}/esign/webhook/signi?token={request.sudo().callback_token}"

    def _esign_webhook_authenticate(self, client, headers, body, query):
        if self.code != "signi":
            return super()._esign_webhook_authenticate(client, headers, body, query)
        authenticate_request_token(self, client, headers, body, query)
