# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The e-signature provider: one record per service per company, payment-provider style.

Everything provider-specific goes through the ``_esign_*`` hooks below; a connector extends
``code`` with ``selection_add`` and overrides the hooks for its code only (``if self.code != 'x':
return super()...``), the way ``payment_stripe`` extends ``payment.provider``.
"""
import hmac
import json
import logging
import secrets

from odoo import _, api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..api import keys as rsa_keys
from ..api.base import WebhookAuthError, WebhookMalformed
from .esign_access import GROUP_MANAGER, check_esign_right
from .esign_send_checks import SendProblem

_logger = logging.getLogger(__name__)

CALLBACK_TOKEN_PARAM = "token"


class EsignProvider(models.Model):
    _name = "esign.provider"
    _description = "E-Signature Provider"
    _order = "sequence, name, id"
    _check_company_auto = True

    name = fields.Char(required=True, translate=True)
    sequence = fields.Integer(default=10)
    code = fields.Selection(
        selection=[("demo", "Demo")],
        required=True,
        default="demo",
        help="The service this provider talks to.",
    )
    state = fields.Selection(
        selection=[("disabled", "Disabled"), ("test", "Test Mode"), ("enabled", "Enabled")],
        default="disabled",
        required=True,
        copy=False,
        help="Test mode uses the provider's sandbox; Enabled uses production.",
    )
    company_id = fields.Many2one(
        "res.company", required=True, index=True, default=lambda self: self.env.company
    )
    active = fields.Boolean(default=True)
    account_mode = fields.Selection(
        selection=[("individual", "Individual accounts"), ("central", "Central representative")],
        default="central",
        required=True,
        help="Individual: each salesperson signs for the company with their own account at the "
        "provider.\nCentral: one representative (e.g. the CEO) signs every contract for the company.",
    )
    # Central representative
    representative_user_id = fields.Many2one(
        "res.users", string="Representative", check_company=True,
        help="The person who signs every contract for the company in central mode.",
    )
    representative_first_name = fields.Char()
    representative_last_name = fields.Char()
    representative_email = fields.Char()
    representative_provider_user_id = fields.Char(
        string="Representative's ID at the Provider",
        help="The representative's user id at the provider, where the provider needs one "
        "(e.g. DocuSign user id, Autenti user id).",
    )
    representative_basis = fields.Char(
        string="Basis of Representation",
        translate=True,
        help="Printed next to the representative's signature, e.g. "
        "\"CEO, entry in the commercial register\".",
    )
    user_account_ids = fields.One2many("esign.user.account", "provider_id", string="User Accounts")
    # Credentials and keys: administrators only.
    api_base_url_override = fields.Char(
        string="API Base URL Override", groups="base.group_system",
        help="Leave empty to use the provider's sandbox or production host. Set it only for a "
        "proxy or a test server.",
    )
    webhook_secret = fields.Char(
        groups="base.group_system", copy=False,
        help="Shared secret used to verify the notifications the provider sends to Odoo. It comes from "
        "the provider (or, for the Demo provider, from Generate secret); an empty secret is reported "
        "as a missing setting, never replaced by a random one.",
    )
    escalation_user_id = fields.Many2one(
        "res.users", string="Escalation Manager", check_company=True,
        domain=lambda self: [("groups_id", "in", self.env.ref(GROUP_MANAGER).ids)],
        help="Who gets an activity when something needs a person: a notification that could not be "
        "applied after several attempts, a send whose outcome the provider did not confirm. Empty: the "
        "first e-signature manager of the company.",
    )
    jwt_private_key = fields.Text(
        string="Private Key", groups="base.group_system", copy=False,
        help="RSA private key (PEM) that signs our authentication tokens. Never leaves Odoo.",
    )
    jwk_kid = fields.Char(
        string="JWK Key ID", groups="base.group_system", copy=False,
        help="The key id (kid) of the public key registered at the provider.",
    )
    jwt_public_jwk = fields.Text(
        string="Public Key (JWK)", compute="_compute_jwt_public_jwk", groups="base.group_system",
        help="Paste this into the provider's panel.",
    )
    jwt_next_private_key = fields.Text(groups="base.group_system", copy=False)
    jwt_next_kid = fields.Char(string="New JWK Key ID", groups="base.group_system", copy=False)
    jwt_next_public_jwk = fields.Text(
        string="New Public Key (JWK)", compute="_compute_jwt_public_jwk", groups="base.group_system"
    )
    webhook_url = fields.Char(compute="_compute_webhook_url", string="Notification URL")
    request_count = fields.Integer(compute="_compute_request_count")

    _sql_constraints = [
        ("code_company_uniq", "unique(code, company_id)",
         "A company can have only one provider of each kind."),
    ]

    # ------------------------------------------------------------------ computes / constraints

    @api.depends("jwt_private_key", "jwk_kid", "jwt_next_private_key", "jwt_next_kid")
    def _compute_jwt_public_jwk(self):
        for provider in self:
            provider.jwt_public_jwk = provider._esign_jwk_json(provider.jwt_private_key, provider.jwk_kid)
            provider.jwt_next_public_jwk = provider._esign_jwk_json(
                provider.jwt_next_private_key, provider.jwt_next_kid)

    @staticmethod
    def _esign_jwk_json(private_pem, kid):
        if not private_pem:
            return False
        try:
            return json.dumps(rsa_keys.public_jwk(private_pem, kid or None), indent=2)
        except ValueError as exc:
            return _("Invalid private key: %s", exc)

    def _compute_webhook_url(self):
        for provider in self:
            provider.webhook_url = f"{provider.get_base_url()}/esign/webhook/{provider.code}"

    def _compute_request_count(self):
        groups = self.env["esign.request"]._read_group(
            [("provider_id", "in", self.ids)], ["provider_id"], ["__count"])
        counts = {provider.id: count for provider, count in groups}
        for provider in self:
            provider.request_count = counts.get(provider.id, 0)

    @api.constrains("state", "account_mode", "representative_email")
    def _check_central_representative(self):
        for provider in self:
            if provider.state != "disabled" and provider.account_mode == "central" \
                    and not provider.representative_email:
                raise ValidationError(_(
                    "%(provider)s works in central mode: set the representative's e-mail before "
                    "enabling it.", provider=provider.name))

    @api.onchange("representative_user_id")
    def _onchange_representative_user_id(self):
        user = self.representative_user_id
        if user:
            first, _sep, last = (user.name or "").partition(" ")
            self.representative_first_name = self.representative_first_name or first
            self.representative_last_name = self.representative_last_name or last
            self.representative_email = self.representative_email or user.email

    # ------------------------------------------------------------------ actions

    def action_generate_key_pair(self):
        """Create an RSA key pair. A first key is used at once; a replacement waits for confirmation.

        Rotating keeps the current key and kid working until the admin confirms that the new public
        key is registered at the provider, so signing never stops in between.
        """
        self.ensure_one()
        check_esign_right(self.env, "configure_provider")
        pem = rsa_keys.generate_private_key_pem()
        kid = rsa_keys.public_jwk(pem)["kid"]
        if self.jwt_private_key:
            self.write({"jwt_next_private_key": pem, "jwt_next_kid": kid})
        else:
            self.write({"jwt_private_key": pem, "jwk_kid": kid})
        return True

    def action_confirm_key_rotation(self):
        self.ensure_one()
        check_esign_right(self.env, "configure_provider")
        if not self.jwt_next_private_key:
            raise UserError(_("There is no new key to confirm. Generate one first."))
        self.write({
            "jwt_private_key": self.jwt_next_private_key,
            "jwk_kid": self.jwt_next_kid,
            "jwt_next_private_key": False,
            "jwt_next_kid": False,
        })
        return True

    def action_cancel_key_rotation(self):
        check_esign_right(self.env, "configure_provider")
        self.write({"jwt_next_private_key": False, "jwt_next_kid": False})
        return True

    def action_generate_webhook_secret(self):
        """A new random secret, for providers where Odoo chooses it (Demo). Administrators only."""
        check_esign_right(self.env, "configure_provider")
        for provider in self:
            provider.webhook_secret = secrets.token_urlsafe(32)
        return True

    def action_view_requests(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_request_action")
        action["domain"] = [("provider_id", "=", self.id)]
        return action

    # ------------------------------------------------------------------ provider interface

    def _esign_api_base_url(self, sandbox_url, production_url):
        """The provider's API root: the admin's override, else its sandbox (test) or production host."""
        self.ensure_one()
        override = self.sudo().api_base_url_override
        if override:
            return override.strip().rstrip("/")
        return production_url if self.state == "enabled" else sandbox_url

    def _esign_build_client(self, account):
        """Return a :class:`~..api.base.ProviderClient` acting for ``account``. Overridden per code."""
        raise UserError(_("The provider %s has no connector installed.", self.name))

    def _esign_missing_settings(self):
        """Labels of the settings that must be filled before sending. Extended per code."""
        self.ensure_one()
        missing = []
        if self.account_mode == "central":
            if not self.representative_email:
                missing.append(_("Representative's e-mail"))
            if not (self.representative_first_name or self.representative_last_name
                    or self.representative_user_id):
                missing.append(_("Representative's name"))
        return missing

    def _esign_phone_required(self):
        """True when this provider's settings make it send a code by SMS to every signer. Extended per code."""
        return False

    def _esign_account_problems(self, user):
        """Problems with the account the provider would act for when ``user`` sends. Extended per code."""
        self.ensure_one()
        if self.account_mode == "individual" and not self._esign_user_account(user):
            return [SendProblem("ESIGN_NO_ACCOUNT", _(
                "%(provider)s works with individual accounts, and %(user)s has no %(provider)s account. Ask "
                "an administrator to add it under E-Signature > User Accounts.",
                provider=self.name, user=user.name))]
        return []

    def _esign_user_account(self, user):
        return self.env["esign.user.account"].sudo().search(
            [("provider_id", "=", self.id), ("user_id", "=", user.id), ("active", "=", True)], limit=1)

    @api.model
    def _esign_default_for_company(self, company):
        """The provider a contract of ``company`` is sent with by default.

        The company's chosen default when it can send; otherwise the first provider in production
        (Enabled) before any in test mode. Archived and disabled providers never send.
        """
        chosen = company.sudo().esign_provider_id
        if chosen and chosen.active and chosen.state != "disabled":
            return chosen
        providers = self.sudo().search([("company_id", "=", company.id), ("state", "!=", "disabled")])
        return providers.sorted(lambda p: (p.state != "enabled", p.sequence, p.name, p.id))[:1]

    def _esign_escalation_user(self):
        """Who is told when something needs a person (see ``escalation_user_id``)."""
        self.ensure_one()
        if self.escalation_user_id.active:
            return self.escalation_user_id
        managers = self.env.ref(GROUP_MANAGER).sudo().users.filtered(
            lambda u: u.active and not u.share and self.company_id in u.company_ids
            and u != self.env.ref("base.user_root"))
        return managers.sorted("id")[:1]

    def _esign_acting_account(self, user):
        """The account the provider acts for: the sender's own (individual) or the representative's.

        Returns a plain dict the connector turns into its credentials: ``email``, ``name``,
        ``first_name``, ``last_name``, ``provider_user_id``, ``subject`` (a stable id of that person
        on our side).
        """
        self.ensure_one()
        if self.account_mode == "central":
            rep = self.sudo()
            name = " ".join(filter(None, [rep.representative_first_name, rep.representative_last_name])) \
                or rep.representative_user_id.name or rep.representative_email
            return {
                "email": rep.representative_email,
                "name": name,
                "first_name": rep.representative_first_name or "",
                "last_name": rep.representative_last_name or "",
                "provider_user_id": rep.representative_provider_user_id or "",
                "subject": f"odoo-representative-{rep.id}",
                "user_id": rep.representative_user_id.id,
            }
        account = self._esign_user_account(user)
        if not account:
            raise UserError(_(
                "%(provider)s works with individual accounts, and %(user)s has no %(provider)s "
                "account. Ask an administrator to add it under E-Signature > User Accounts.",
                provider=self.name, user=user.name))
        return account._esign_account_values()

    def _esign_company_signer_values(self, user):
        """Values of the company signer line the send wizard prefills."""
        self.ensure_one()
        account = self._esign_acting_account(user)
        partner = self.env["res.users"].browse(account.get("user_id")).partner_id \
            if account.get("user_id") else self.env["res.partner"]
        basis = self.representative_basis if self.account_mode == "central" else False
        return {
            "partner_id": partner.id,
            "name": account["name"],
            "email": account["email"],
            "role": "company",
            "action": "sign",
            "representation_basis": basis or False,
        }

    def _esign_get_client(self, user=None, account=None):
        """A client acting for ``account`` (or for ``user``'s acting account)."""
        self.ensure_one()
        if account is None:
            account = self._esign_acting_account(user or self.env.user)
        return self.sudo()._esign_build_client(account)

    def _esign_webhook_client_for(self, headers, body, query):
        """The client that verifies and parses a notification; it acts for no one in particular."""
        self.ensure_one()
        return self.sudo()._esign_build_client({})

    def _esign_authenticates_by_callback_token(self):
        """True for providers whose notifications are not signed (Signi, SELL&SIGN).

        Their callback URL then carries the request's unguessable ``callback_token``, and a
        notification is accepted only through :meth:`_esign_authenticate_callback_token`.
        """
        return False

    def _esign_webhook_authenticate(self, client, headers, body, query):
        """Raise :class:`~..api.base.WebhookAuthError` unless the notification is proven authentic.

        The client verifies what the provider signs (signatures, HMAC); for unsigned providers it
        only checks the token's form, and the token must then match a request.
        """
        client.verify_webhook(headers, body, query)
        if self._esign_authenticates_by_callback_token():
            self._esign_authenticate_callback_token(client, headers, body, query)

    def _esign_authenticate_callback_token(self, client, headers, body, query):
        """Accept an unsigned notification only for the request its URL's token belongs to.

        The token must equal (constant time) the ``callback_token`` of a request of *this* provider,
        and every notification in the body must be about that request's contract: a token authorises
        only its own request, so a leaked one cannot move another contract. While the request has no
        provider reference yet (its send answer was lost), the notifications must carry our
        reference instead; the outbox then confirms the envelope with the provider before adopting
        it. A body that cannot be parsed is let through, so that the core stores it as rejected and
        answers 400 (it is never applied). Returns the request (sudo).
        """
        token = query.get(CALLBACK_TOKEN_PARAM) if isinstance(query, dict) else None
        if isinstance(token, (list, tuple)):
            token = token[0] if token else None
        token = token if isinstance(token, str) else ""
        request = self.env["esign.request"].sudo().search(
            [("provider_id", "=", self.id), ("callback_token", "=", token)], limit=1)
        if not request or not hmac.compare_digest((request.callback_token or "").encode(), token.encode()):
            raise WebhookAuthError(f"{self.name}: the notification's token matches no request")
        if not request.provider_ref and request.state != "sending":
            raise WebhookAuthError(f"{self.name}: notification for a request that was not sent")
        try:
            notifications = client.parse_webhook(headers, body, query)
        except WebhookMalformed:
            return request
        if not request.provider_ref:
            if any(str(n.reference or "") != request.reference for n in notifications):
                raise WebhookAuthError(f"{self.name}: the token of request {request.name} does not "
                                       "authorise notifications about another contract")
            return request
        if any(str(n.provider_ref or "") != request.provider_ref for n in notifications):
            raise WebhookAuthError(f"{self.name}: the token of request {request.name} does not "
                                   "authorise notifications about another contract")
        return request

    def _esign_callback_url(self, request):
        """Where the provider must notify us about ``request``."""
        url = f"{self.get_base_url()}/esign/webhook/{self.code}"
        if self._esign_authenticates_by_callback_token():
            url = f"{url}?{CALLBACK_TOKEN_PARAM}={request.sudo().callback_token}"
        return url

    def _esign_error_message(self, error):
        """Word a :class:`ProviderError` for the user, in their language."""
        name = self.name
        detail = error.detail or ""
        messages = {
            "config": _("%(provider)s is not configured correctly: %(detail)s"),
            "auth": _("%(provider)s refused our credentials%(code)s. Check the connection settings "
                      "(keys, secret, account). Details: %(detail)s"),
            "rejected": _("%(provider)s refused the request%(code)s: %(detail)s"),
            "not_found": _("%(provider)s does not know this document any more%(code)s: %(detail)s"),
            "conflict": _("%(provider)s cannot do this now%(code)s: %(detail)s"),
            "rate_limited": _("%(provider)s is receiving too many requests%(code)s. "
                              "Try again in a few minutes."),
            "unavailable": _("%(provider)s is unavailable%(code)s. Try again later. Details: %(detail)s"),
            "timeout": _("%(provider)s did not answer in time."),
            "protocol": _("%(provider)s sent an answer we do not understand%(code)s: %(detail)s"),
        }
        code = f" (HTTP {error.status_code})" if error.status_code else ""
        return messages.get(error.kind, messages["protocol"]) % {
            "provider": name, "code": code, "detail": detail}

