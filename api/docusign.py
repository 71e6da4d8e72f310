"""DocuSign eSignature REST API v2.1 client.

Source of every wire detail: ``shared/providers/docusign/NOTES.md`` (cited as "NOTES §x") and the
DocuSign Swagger file next to it (``esignature.rest.swagger-v2.1.json``, March 2021 release). Points
the notes mark [MEM] (from memory, not re-checked) are module constants with a comment, so they are
easy to change once confirmed against a DocuSign developer account.

Authentication (NOTES §2): OAuth JWT grant. We sign an RS256 assertion (iss = integration key,
sub = the impersonated user, aud = the auth host without scheme, scope "signature impersonation")
with the private key whose public half the admin registered on the DocuSign app, and trade it at
``/oauth/token`` for a one-hour access token. There is no refresh token: a new assertion is made when
the token is about to expire. The impersonated user is the sender: in individual mode the
salesperson's DocuSign user, in central mode the company representative's. Each user must consent
once (``consent_url()``); until then DocuSign answers ``consent_required``.

Flow (NOTES §3): one ``POST …/envelopes`` with the PDF (base64), the client as signer with routing
order 1 and the company signer with routing order 2, ``status: sent`` and a per-envelope
``eventNotification`` (Connect) pointing at our callback URL with HMAC signing. Status by
``GET …/envelopes/{id}`` + ``GET …/envelopes/{id}/recipients``; signed PDF ``documents/combined``,
evidence ``documents/certificate`` (Certificate of Completion); cancel = void; remind = resend.

Outbox (base :meth:`~.base.ProviderClient.find_by_reference`): our reference travels as the envelope
text custom field ``esign_reference`` (``customFields.textCustomFields``, value at most 100 characters
[OK]). ``GET …/envelopes`` (Envelopes_GetEnvelopes [OK]) needs ``from_date`` (or ``envelope_ids`` /
``transaction_ids``), filters with ``custom_field=<name>=<value>`` and returns the fields with
``include=custom_fields``; we look back :data:`FIND_LOOKBACK_DAYS`, list only what this user sent, and
check the value ourselves (the spec warns of "extraneous results"). DocuSign's ``transactionId`` is
meant for the same purpose but lives only 7 days [OK], so it is not used. The v2.1 API has no call
that deletes a draft, so a draft left behind is ignored (it was never sent to anyone).
"""
import base64
import datetime
import hashlib
import hmac
import json
import logging
import math
import re
import threading
import time
import urllib.parse

import jwt

from . import keys as rsa_keys
from .base import (REQUEST_FINAL_STATES, Document, EnvelopeStatus, Notification, ProviderClient,
                   ProviderError, SendResult, SignerStatus, WebhookAuthError, WebhookMalformed,
                   body_digest)
from .http import IDEMPOTENT_METHODS, HttpTransport
from .tokens import TokenCache

_logger = logging.getLogger(__name__)

PROVIDER_LABEL = "DocuSign"

# --- hosts (NOTES §1) ----------------------------------------------------------------------------
SANDBOX_URL = "https://demo.docusign.net/restapi"  # developer ("demo") REST base [OK]
# Production accounts live on different hosts (www, na2, eu, …); the real base comes from
# /oauth/userinfo (NOTES §1 [MEM]). This is only the spec's default host, used when nothing else is known.
PRODUCTION_URL = "https://www.docusign.net/restapi"
SANDBOX_AUTH_HOST = "account-d.docusign.com"  # [OK]
PRODUCTION_AUTH_HOST = "account.docusign.com"  # [OK]
API_VERSION_PATH = "/v2.1/accounts/{account_id}"

# --- authentication (NOTES §2) -------------------------------------------------------------------
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "signature impersonation"  # [OK]
ASSERTION_LIFETIME = 3600  # DocuSign caps the token at one hour [2nd]; exp = iat + this
TOKEN_REFRESH_MARGIN = 300  # reuse a token until 5 minutes before it expires
CONSENT_PATH = "/oauth/auth"
TOKEN_PATH = "/oauth/token"
USERINFO_PATH = "/oauth/userinfo"

# --- envelope building (NOTES §3.1, §5.1) --------------------------------------------------------
CLIENT_ROUTING_ORDER = "1"
COMPANY_ROUTING_ORDER = "2"
EMAIL_SUBJECT_MAX = 100  # [MEM] DocuSign refuses longer subjects
EMAIL_BLURB_MAX = 10000  # [OK]
NAME_MAX = 100  # [OK] signer name and e-mail
VOID_REASON_MAX = 200  # [MEM]
DEFAULT_VOID_REASON = "Cancelled by the sender"
# Our reference travels as an envelope text custom field (returned in status and Connect messages,
# never shown to signers); our signer key as a recipient custom field ("name=value" string, NOTES §3
# field list: signer.customFields is an array of strings of at most 100 characters).
REFERENCE_FIELD = "esign_reference"
REFERENCE_MAX = 100  # [OK] textCustomField.value: "Maximum length: 100 characters"
SIGNER_KEY_PREFIX = "esign_key="

# --- finding an envelope by our reference (outbox; Envelopes_GetEnvelopes [OK]) ------------------
# [GUESS] How far back the listing looks (``from_date``; the default ``from_to_status`` "changed"
# lists envelopes whose status changed since then, so a recent send is always inside). The outbox
# looks an envelope up soon after a send whose outcome is unknown; 30 days leaves room for an
# outbox that was stuck, without asking DocuSign to scan the account's whole history.
FIND_LOOKBACK_DAYS = 30
# [OK] value of ``user_filter``: only envelopes this user sent (a send and its lookup act as the same
# user), never envelopes where the user is only a recipient.
FIND_USER_FILTER = "sender"
FIND_PAGE_SIZE = 100  # ``count``; our reference is unique, so more than one page means trouble
FIND_MAX_PAGES = 5
# Envelope states that mean "never went out": a draft, and a draft the sender deleted (a ``deleted``
# envelope with a ``sentDateTime`` did go out and counts as started).
NOT_STARTED_STATES = frozenset({"created", "deleted"})
# [GUESS] A draft younger than this may be an envelope DocuSign is still creating and sending (our
# POST asks for ``status: sent`` in one call): the lookup says "cannot tell now" instead of letting
# the outbox send a second one. Older drafts are ignored.
DRAFT_SETTLE_SECONDS = 300
# [MEM] ``GET …/envelopes/{id}`` returns the custom fields only when asked (the spec's envelope has a
# ``customFieldsUri``); ``include`` itself and ``custom_fields`` are [OK].
STATUS_INCLUDE = "custom_fields"
# Connect subscription (NOTES §5.1): the legacy per-envelope event lists exist in the 2021 spec;
# the newer ``events`` list does not, so we do not send it.
ENVELOPE_EVENTS = ("Sent", "Completed", "Declined", "Voided")
RECIPIENT_EVENTS = ("Completed", "Declined")
CONNECT_EVENT_DATA = {"version": "restv2.1", "format": "json", "includeData": ["recipients", "custom_fields"]}

# --- webhooks (NOTES §5.3) ------------------------------------------------------------------------
SIGNATURE_HEADER_PREFIX = "x-docusign-signature-"

# ONE table: DocuSign's states -> ours (NOTES §3.5; values [OK] from the spec's descriptions).
STATUS_MAP = {
    "envelope": {
        "created": "draft",
        "sent": "sent",
        "delivered": "sent",
        # "signed" is a transient state before "completed" (documents not yet finalised): keep it
        # in progress so we only download once DocuSign says completed.
        "signed": "sent",
        "completed": "signed",
        "declined": "refused",
        "voided": "cancelled",
        # list-query-only values (Envelopes_GetEnvelopes ``status``)
        "deleted": "cancelled",
        "timedout": "expired",
        "processing": "sent",
        "correct": "sent",
    },
    "recipient": {
        "created": "waiting",  # not their turn yet (or draft)
        "sent": "pending",  # their turn, e-mail sent
        "delivered": "pending",  # opened, not signed yet
        "autoresponded": "pending",  # their mailbox auto-replied; still their turn
        "faxpending": "pending",
        "signed": "signed",  # transient, becomes completed
        "completed": "signed",
        "declined": "refused",
    },
}
UNKNOWN_ENVELOPE_STATE = "sent"  # an unlisted status must not look final
UNKNOWN_RECIPIENT_STATE = "waiting"
# [MEM] DocuSign voids an envelope that passes its expiration date with this reason; such a void
# is our "expired", not a cancellation.
EXPIRED_VOID_REASONS = ("envelope has expired",)
# No DocuSign envelope status means "DocuSign failed the envelope" [OK: the spec's envelope status
# lists, 2021]: voided, declined and deleted are people's decisions, timedout is an expiry. So no
# DocuSign state maps to our "error"; failures come as HTTP errors instead. ``deleted`` (the sender
# removed or purged the envelope) is a cancellation.
DELETED_REASON = "The envelope was deleted in DocuSign."
# [OK] recipient ``autoresponded``: the signer's mailbox bounced DocuSign's e-mail. Still their
# turn (the sender can correct the address), so it stays pending, with this reason.
AUTORESPONDED_REASON = "DocuSign's e-mail to this signer bounced (auto-responded)."
# When DocuSign says the envelope reached its final state, per DocuSign state [OK field names];
# ``statusChangedDateTime`` when that field is absent.
COMPLETED_AT_FIELDS = {
    "completed": "completedDateTime",
    "declined": "declinedDateTime",
    "voided": "voidedDateTime",
    "deleted": "deletedDateTime",
}

# DocuSign error codes whose meaning is clearer than their HTTP status (NOTES §4; names [MEM]
# except Hourly_Envelope_Polling_Limit_Exceeded [OK]). Compared case-insensitively.
ERROR_CODE_KINDS = {
    "ENVELOPE_DOES_NOT_EXIST": "not_found",
    "ENVELOPE_CANNOT_VOID_INVALID_STATE": "conflict",
    "ENVELOPE_INVALID_STATUS": "conflict",
    "HOURLY_APIINVOCATION_LIMIT_EXCEEDED": "rate_limited",
    "HOURLY_ENVELOPE_POLLING_LIMIT_EXCEEDED": "rate_limited",
    "BURST_APIINVOCATION_LIMIT_EXCEEDED": "rate_limited",
    "USER_AUTHENTICATION_FAILED": "auth",
    "AUTHORIZATION_INVALID_TOKEN": "auth",
    "USER_LACKS_MEMBERSHIP": "auth",
}
# OAuth token errors (``{"error": …}``) explained for the admin (NOTES §2; names [MEM]).
TOKEN_ERROR_HINTS = {
    "consent_required": "the user has not granted consent to the integration",
    "invalid_grant": "the assertion was refused",
    "no_valid_keys_or_signatures": "the assertion's signature does not match any public key of the "
                                   "integration (is the right RSA key pair registered?)",
    "issuer_not_found": "the integration key is unknown in this environment (demo vs production?)",
    "user_not_found": "the user id is unknown in this environment",
    "invalid_scope": "the scope is not allowed for this integration",
    "expired": "the assertion has expired (is the server clock right?)",
}

# Module-level caches (shared by all instances in this worker process).
_LOCK = threading.Lock()
_TOKENS = TokenCache(TOKEN_REFRESH_MARGIN)  # (auth host, integration key, user id) -> token
_ACCOUNTS = {}  # (auth host, integration key, user id, wanted account id) -> (account_id, rest base)


def clear_caches():
    """Forget cached tokens and accounts (tests; after changing credentials)."""
    _TOKENS.clear()
    rsa_keys.load_private_key_cached.cache_clear()
    with _LOCK:
        _ACCOUNTS.clear()


def auth_url_for(auth_host):
    """``https://<host>`` for a bare host; a full URL (a proxy, a fake) is kept as given."""
    auth_host = (auth_host or "").strip().rstrip("/")
    if not auth_host:
        return ""
    return auth_host if "://" in auth_host else f"https://{auth_host}"


def audience_for(auth_url):
    """The JWT ``aud``: the auth host without scheme (NOTES §2)."""
    return urllib.parse.urlsplit(auth_url).netloc


# --- error bodies --------------------------------------------------------------------------------


def _json_or_none(response):
    try:
        return response.json()
    except ValueError:
        return None


def error_detail(response):
    """A readable message from DocuSign's ``{errorCode, message}`` or OAuth ``{error, error_description}``."""
    data = _json_or_none(response)
    if isinstance(data, dict):
        code = data.get("errorCode")
        message = data.get("message")
        if code or message:
            if code and message:
                return f"{message} [{code}]"
            return str(message or code)
        error = data.get("error")
        if error:
            description = data.get("error_description") or TOKEN_ERROR_HINTS.get(str(error), "")
            return f"{error}: {description}" if description else str(error)
    text = (response.text or "").strip()
    return text[:500] or (response.reason or "")


class DocuSignTransport(HttpTransport):
    """The shared transport, plus DocuSign's error codes and rate-limit headers.

    DocuSign announces when the hourly window resets in ``X-RateLimit-Reset`` (epoch seconds,
    NOTES §6); used as the wait when no ``Retry-After`` is given.
    """

    def to_error(self, response, outcome_unknown=False):
        error = super().to_error(response, outcome_unknown=outcome_unknown)
        data = _json_or_none(response)
        code = data.get("errorCode") if isinstance(data, dict) else None
        kind = ERROR_CODE_KINDS.get(str(code).upper()) if code else None
        if kind and kind != error.kind:
            error = ProviderError(kind, error.detail, status_code=error.status_code, provider=error.provider,
                                  retry_after=error.retry_after, body=error.body,
                                  outcome_unknown=error.outcome_unknown)
        if error.kind == "rate_limited" and error.retry_after is None:
            reset = response.headers.get("X-RateLimit-Reset")
            try:
                error.retry_after = max(0.0, float(reset) - time.time()) if reset else None
            except ValueError:
                pass
        return error


# --- small helpers -------------------------------------------------------------------------------


def parse_datetime(value):
    """DocuSign timestamps (``2026-11-23T08:42:00.1234567Z``, 7 fraction digits) as naive UTC."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed


def map_envelope_state(status, voided_reason=""):
    status = (status or "").lower()
    if status == "voided" and (voided_reason or "").strip().lower().rstrip(".") in EXPIRED_VOID_REASONS:
        return "expired"
    return STATUS_MAP["envelope"].get(status, UNKNOWN_ENVELOPE_STATE)


def map_recipient_state(status):
    return STATUS_MAP["recipient"].get((status or "").lower(), UNKNOWN_RECIPIENT_STATE)


def _signer_key(recipient):
    for value in recipient.get("customFields") or ():
        if isinstance(value, str) and value.startswith(SIGNER_KEY_PREFIX):
            return value[len(SIGNER_KEY_PREFIX):]
    return ""


def signer_statuses(recipients):
    """Our :class:`SignerStatus` list from an ``EnvelopeRecipients`` object (status read or Connect)."""
    result = []
    for recipient in (recipients or {}).get("signers") or ():
        if not isinstance(recipient, dict):
            continue
        state = map_recipient_state(recipient.get("status"))
        changed = (recipient.get("declinedDateTime") if state == "refused" else
                   recipient.get("signedDateTime") if state == "signed" else
                   recipient.get("deliveredDateTime") or recipient.get("sentDateTime"))
        result.append(SignerStatus(
            state=state,
            key=_signer_key(recipient),
            provider_ref=str(recipient.get("recipientId") or ""),
            email=(recipient.get("email") or "").strip(),
            changed_at=parse_datetime(changed),
            reason=_recipient_reason(recipient),
        ))
    return tuple(result)


def _recipient_reason(recipient):
    if (recipient.get("status") or "").lower() == "autoresponded":
        return AUTORESPONDED_REASON
    return recipient.get("declinedReason") or ""


def envelope_reference(envelope_data):
    """Our reference from an envelope's text custom fields, or ``""``."""
    fields = ((envelope_data or {}).get("customFields") or {}).get("textCustomFields") or ()
    for field in fields:
        if isinstance(field, dict) and field.get("name") == REFERENCE_FIELD:
            return field.get("value") or ""
    return ""


def completed_at(envelope_data, state):
    """When DocuSign says the envelope became final (naive UTC), or None while it is in progress."""
    if state not in REQUEST_FINAL_STATES:
        return None
    field = COMPLETED_AT_FIELDS.get((envelope_data.get("status") or "").lower())
    return parse_datetime(envelope_data.get(field) if field else None) or parse_datetime(
        envelope_data.get("statusChangedDateTime"))


def _was_started(envelope_data):
    """True for an envelope that went out to its signers (whatever happened since)."""
    status = (envelope_data.get("status") or "").lower()
    return status not in NOT_STARTED_STATES or bool(envelope_data.get("sentDateTime"))


def _created_at(envelope_data):
    """When DocuSign created the envelope (naive UTC); the distant past when it does not say."""
    return (parse_datetime(envelope_data.get("createdDateTime"))
            or parse_datetime(envelope_data.get("statusChangedDateTime")) or datetime.datetime.min)


def build_status(envelope_id, envelope_data, recipients):
    """Our :class:`EnvelopeStatus` from the envelope object and its recipients (status read or Connect)."""
    envelope_data = envelope_data or {}
    provider_state = (envelope_data.get("status") or "").lower()
    voided_reason = envelope_data.get("voidedReason") or ""
    signers = signer_statuses(recipients)
    state = map_envelope_state(provider_state, voided_reason)
    reason = voided_reason
    if state == "refused":
        reason = next((s.reason for s in signers if s.state == "refused" and s.reason), reason)
    elif provider_state == "deleted":
        reason = reason or DELETED_REASON
    return EnvelopeStatus(provider_ref=envelope_id, state=state, signers=signers,
                          provider_state=provider_state, reason=reason,
                          raw={"envelope": envelope_data, "recipients": recipients or {}},
                          completed_at=completed_at(envelope_data, state),
                          reference=envelope_reference(envelope_data))


class DocuSignClient(ProviderClient):
    """DocuSign client acting as one DocuSign user (``user_id``) through one integration.

    ``account_id`` + ``base_url`` given: used as they are (no userinfo call). Otherwise the account
    comes from ``/oauth/userinfo``: the one with ``account_id`` if given, else the user's default.
    ``auth_host`` is a bare host (``account-d.docusign.com``) or a full URL (proxy, test fake); the
    JWT ``aud`` is its host part unless ``audience`` is given.
    """

    calls_per_send = 1  # one POST /envelopes (token and account cached)

    code = "docusign"

    def __init__(self, integration_key="", user_id="", private_key_pem="", account_id="", base_url="",
                 auth_host=SANDBOX_AUTH_HOST, audience="", hmac_secrets=(), redirect_uri="",
                 timeout=(5.0, 30.0), max_retries=2, sleep=time.sleep, session=None):
        self.integration_key = (integration_key or "").strip()
        self.user_id = (user_id or "").strip()
        self.private_key_pem = private_key_pem or ""
        self.account_id = (account_id or "").strip()
        self.base_url = (base_url or "").rstrip("/")
        self.auth_url = auth_url_for(auth_host or SANDBOX_AUTH_HOST)
        self.audience = audience or audience_for(self.auth_url)
        if isinstance(hmac_secrets, str):
            hmac_secrets = [hmac_secrets]
        self.hmac_secrets = [s for s in (hmac_secrets or ()) if s]
        self.redirect_uri = redirect_uri or ""
        self._transport_options = dict(timeout=timeout, max_retries=max_retries, sleep=sleep,
                                       session=session, error_detail=error_detail)
        self.auth = DocuSignTransport(self.auth_url, PROVIDER_LABEL, **self._transport_options)
        self._rest = None  # DocuSignTransport on the account's REST base, once known
        self._account = None  # (account_id, rest base)

    def _error(self, kind, detail, **kwargs):
        return ProviderError(kind, detail, provider=PROVIDER_LABEL, **kwargs)

    # ------------------------------------------------------------------ authentication

    def consent_url(self, redirect_uri=None):
        """The page where the impersonated user (or an admin) grants consent once (NOTES §2.1)."""
        params = {"response_type": "code", "scope": SCOPE, "client_id": self.integration_key}
        redirect_uri = redirect_uri if redirect_uri is not None else self.redirect_uri
        if redirect_uri:
            params["redirect_uri"] = redirect_uri
        return f"{self.auth_url}{CONSENT_PATH}?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)

    def _check_credentials(self):
        missing = [label for label, value in (
            ("integration key", self.integration_key), ("user id", self.user_id),
            ("RSA private key", self.private_key_pem)) if not value]
        if missing:
            raise self._error("config", "DocuSign settings incomplete, missing: " + ", ".join(missing))
        self._private_key()

    def _private_key(self):
        try:
            return rsa_keys.load_private_key_cached(self.private_key_pem)
        except (ValueError, TypeError) as exc:
            raise self._error("config", f"the DocuSign private key cannot be used: {exc}") from exc

    def build_assertion(self, now=None):
        """The RS256 JWT-grant assertion (NOTES §2.2)."""
        now = int(now if now is not None else time.time())
        claims = {"iss": self.integration_key, "sub": self.user_id, "aud": self.audience,
                  "iat": now, "exp": now + ASSERTION_LIFETIME, "scope": SCOPE}
        return jwt.encode(claims, self._private_key(), algorithm="RS256", headers={"typ": "JWT"})

    def _token_key(self):
        return (self.audience, self.integration_key, self.user_id)

    def _token(self, force=False):
        self._check_credentials()
        key = self._token_key()
        now = time.time()
        cached = None if force else _TOKENS.get(key, now)
        if cached:
            return cached
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": self.build_assertion(now)}
        try:
            # A token request changes nothing at DocuSign: safe to repeat after a timeout.
            data = self.auth.json("POST", TOKEN_PATH, data=form, retry=True)
        except ProviderError as error:
            if error.status_code in (400, 401, 403):
                raise self._token_error(error) from error
            # The transport flags a failed POST as "may have acted"; a token request creates
            # nothing that could be sent twice, so a send failing here certainly sent nothing.
            error.outcome_unknown = False
            raise
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise self._error("protocol", "DocuSign's token answer has no access_token")
        try:
            expires_in = float(data.get("expires_in") or ASSERTION_LIFETIME)
        except (TypeError, ValueError):
            expires_in = float(ASSERTION_LIFETIME)
        _TOKENS.put(key, token, now + expires_in)
        return token

    def _token_error(self, error):
        code = error.body.get("error") if isinstance(error.body, dict) else None
        if code == "consent_required":
            return self._error(
                "auth",
                f"DocuSign user {self.user_id} has not yet allowed this integration to act for them "
                f"(consent_required). Open this address once, logged in as that user (or as an admin "
                f"granting consent for the organisation), and accept: {self.consent_url()}",
                status_code=error.status_code, body=error.body)
        return self._error(
            "auth",
            f"DocuSign refused to log in as user {self.user_id} with integration key "
            f"{self.integration_key} ({error.detail or 'no detail'}). Check the integration key, the "
            "user id (a GUID, not an e-mail), the RSA key pair registered on the app and the "
            "environment (demo vs production).",
            status_code=error.status_code, body=error.body)

    def _forget_token(self):
        _TOKENS.forget(self._token_key())

    def _resolve_account(self):
        """``(account_id, REST base)``: configured, or read from /oauth/userinfo (NOTES §2.4)."""
        if self._account:
            return self._account
        if self.account_id and self.base_url:
            self._account = (self.account_id, self.base_url)
            return self._account
        cache_key = (*self._token_key(), self.account_id)
        with _LOCK:
            cached = _ACCOUNTS.get(cache_key)
        if cached:
            self._account = cached
            return cached
        info = None
        for attempt in (1, 2):
            token = self._token(force=attempt == 2)
            try:
                info = self.auth.json("GET", USERINFO_PATH, headers={"Authorization": f"Bearer {token}"})
                break
            except ProviderError as error:
                if error.status_code != 401 or attempt == 2:
                    raise
                self._forget_token()
        accounts = [a for a in (info or {}).get("accounts") or () if isinstance(a, dict)]
        if self.account_id:
            chosen = next((a for a in accounts if a.get("account_id") == self.account_id), None)
        else:
            chosen = next((a for a in accounts if str(a.get("is_default")).lower() == "true"),
                          accounts[0] if accounts else None)
        if not chosen or not chosen.get("base_uri"):
            known = ", ".join(f"{a.get('account_name')} ({a.get('account_id')})" for a in accounts) or "none"
            raise self._error(
                "config", f"DocuSign user {self.user_id} has no account "
                f"{self.account_id or '(default)'} with an API base URI; accounts seen: {known}")
        base = self.base_url or chosen["base_uri"].rstrip("/") + "/restapi"
        self._account = (chosen["account_id"], base)
        with _LOCK:
            _ACCOUNTS[cache_key] = self._account
        return self._account

    def _rest_transport(self):
        account_id, base = self._resolve_account()
        if self._rest is None:
            self._rest = DocuSignTransport(base + API_VERSION_PATH.format(account_id=account_id),
                                           PROVIDER_LABEL, **self._transport_options)
        return self._rest

    def _api(self, method, path, **kwargs):
        """An authenticated REST call; a 401 gets one fresh token and one retry."""
        transport = self._rest_transport()
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (1, 2):
            token = self._token(force=attempt == 2)
            headers["Authorization"] = f"Bearer {token}"
            try:
                return transport.request(method, path, headers=headers, **kwargs)
            except ProviderError as error:
                if error.status_code != 401:
                    raise
                self._forget_token()
                if attempt == 2:
                    raise self._error(
                        "auth", f"DocuSign refused a fresh access token for user {self.user_id} on "
                        f"{method} {path} ({error.detail or 'HTTP 401'})",
                        status_code=401, body=error.body) from error
        raise AssertionError("unreachable")

    def _api_json(self, method, path, **kwargs):
        """An authenticated call answering a JSON object.

        An unreadable 2xx answer to a call that changes something means DocuSign did act: the
        error says so with ``outcome_unknown``.
        """
        response = self._api(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return {}
        acted = method.upper() not in IDEMPOTENT_METHODS
        try:
            data = response.json()
        except ValueError as exc:
            raise self._error("protocol", f"{method} {path} did not answer JSON",
                              status_code=response.status_code, outcome_unknown=acted) from exc
        if not isinstance(data, dict):
            raise self._error("protocol", f"{method} {path} answered an unexpected JSON value",
                              status_code=response.status_code, outcome_unknown=acted)
        return data

    @staticmethod
    def _envelope_path(envelope_id, suffix=""):
        if not envelope_id:
            raise ProviderError("config", "no DocuSign envelope id", provider=PROVIDER_LABEL)
        return f"/envelopes/{urllib.parse.quote(str(envelope_id), safe='')}{suffix}"

    # ------------------------------------------------------------------ send

    def _signer_entry(self, signer, index, routing_order):
        first, last = signer.split_name()
        name = (signer.name or f"{first} {last}").strip()
        entry = {
            "recipientId": str(index),
            "routingOrder": routing_order,
            "name": name[:NAME_MAX],
            "email": signer.email.strip(),
            "customFields": [f"{SIGNER_KEY_PREFIX}{signer.key}"[:100]],
        }
        if first and last:
            entry["firstName"] = first
            entry["lastName"] = last
        if signer.organisation is not None and signer.organisation.name:
            # Shown to the other signer in DocuSign's e-mails and certificate [MEM]; the free
            # ``note`` field is the only place the 2021 spec offers for "signs on behalf of".
            basis = f" ({signer.representation_basis})" if signer.representation_basis else ""
            tax = f", {signer.organisation.tax_id}" if signer.organisation.tax_id else ""
            entry["note"] = f"Signs on behalf of {signer.organisation.name}{tax}{basis}"[:1000]
        return entry

    def build_envelope_definition(self, envelope, now=None):
        """The ``envelopeDefinition`` body for :meth:`send`; raises ``rejected`` on unusable input."""
        def rejected(detail):
            return self._error("rejected", detail)

        document = envelope.document
        if document is None or not document.content:
            raise rejected("there is no document to sign")
        signers = list(envelope.ordered_signers())
        if not signers:
            raise rejected("the envelope has no signers")
        if not any(s.role == "client" for s in signers):
            raise rejected("add the client as a signer")
        seen = set()
        for signer in signers:
            label = signer.name or signer.email or signer.key
            email = (signer.email or "").strip()
            if "@" not in email or " " in email or len(email) > NAME_MAX:
                raise rejected(f"signer {label} has no valid e-mail address")
            if not (signer.name or "".join(signer.split_name())).strip():
                raise rejected(f"signer {email} has no name; DocuSign requires one")
            if signer.action != "sign":
                raise rejected(f"signer {label}: only signing is supported with DocuSign here")
            if (email.lower(), signer.role) in seen:
                raise rejected(f"{email} appears twice")
            seen.add((email.lower(), signer.role))
        if not (envelope.reference or "").strip():
            raise self._error("config", "the envelope has no reference to give DocuSign")
        if len(envelope.reference) > REFERENCE_MAX:
            # Cut short, it could not find the envelope again; DocuSign keeps at most this much.
            raise rejected(f"our reference {envelope.reference[:20]}… is longer than the "
                           f"{REFERENCE_MAX} characters a DocuSign custom field holds")
        if not envelope.callback_url:
            raise self._error("config", "no callback URL for DocuSign Connect notifications")
        if not self.hmac_secrets:
            # Without a secret our webhook refuses every message; better to say so before sending.
            raise self._error("config", "no DocuSign Connect HMAC secret is configured; callbacks "
                              "could not be verified")
        filename = document.filename or "document.pdf"
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "pdf"
        subject = (envelope.title or filename).strip()
        body = {
            "emailSubject": subject[:EMAIL_SUBJECT_MAX],
            "status": "sent",
            "documents": [{
                "documentId": "1",
                "name": filename,
                "fileExtension": extension,
                "documentBase64": base64.b64encode(document.content).decode("ascii"),
            }],
            "recipients": {"signers": [
                self._signer_entry(s, i, CLIENT_ROUTING_ORDER if s.role == "client" else COMPANY_ROUTING_ORDER)
                for i, s in enumerate(signers, start=1)
            ]},
            "customFields": {"textCustomFields": [
                {"name": REFERENCE_FIELD, "value": envelope.reference, "show": "false", "required": "false"},
            ]},
            "eventNotification": {
                "url": envelope.callback_url,
                "requireAcknowledgment": "true",
                "includeHMAC": "true",
                "loggingEnabled": "true",
                "includeEnvelopeVoidReason": "true",
                "eventData": json.loads(json.dumps(CONNECT_EVENT_DATA)),
                "envelopeEvents": [{"envelopeEventStatusCode": e} for e in ENVELOPE_EVENTS],
                "recipientEvents": [{"recipientEventStatusCode": e} for e in RECIPIENT_EVENTS],
            },
        }
        if envelope.message:
            body["emailBlurb"] = envelope.message[:EMAIL_BLURB_MAX]
        if envelope.expires_at:
            now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            expires_at = envelope.expires_at
            if expires_at.tzinfo is not None:
                expires_at = expires_at.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            days = max(1, math.ceil((expires_at - now).total_seconds() / 86400))
            body["notification"] = {
                "useAccountDefaults": "false",
                "expirations": {"expireEnabled": "true", "expireAfter": str(days), "expireWarn": "0"},
            }
        return body

    def send(self, envelope):
        """Create and send the envelope in one ``POST …/envelopes`` (``status: sent``).

        Only a failure of that POST can leave an envelope behind: logging in and finding the
        account come first and fail with ``outcome_unknown`` False; the POST's own errors keep
        the transport's verdict (timeout, 5xx, lost answer: unknown; refused, 4xx, 429: not sent).
        """
        self._check_credentials()
        body = self.build_envelope_definition(envelope)
        self._rest_transport()
        self._token()
        try:
            data = self._api_json("POST", "/envelopes", json=body)
        except ProviderError as error:
            if not error.outcome_unknown:
                raise
            raise ProviderError(
                error.kind, f"creating the DocuSign envelope failed ({error.detail}); it is unknown "
                "whether DocuSign created and sent it (envelope custom field "
                f"{REFERENCE_FIELD}={envelope.reference}).",
                status_code=error.status_code, provider=PROVIDER_LABEL, retry_after=error.retry_after,
                body=error.body, outcome_unknown=True) from error
        envelope_id = data.get("envelopeId")
        if not envelope_id:
            raise self._error("protocol", "DocuSign created an envelope but returned no envelopeId",
                              outcome_unknown=True)
        signers = []
        for entry in body["recipients"]["signers"]:
            first = entry["routingOrder"] == CLIENT_ROUTING_ORDER
            signers.append(SignerStatus(state="pending" if first else "waiting",
                                        key=entry["customFields"][0][len(SIGNER_KEY_PREFIX):],
                                        provider_ref=entry["recipientId"], email=entry["email"]))
        return SendResult(provider_ref=envelope_id, signers=tuple(signers), raw=data)

    # ------------------------------------------------------------------ finding by our reference

    can_find_by_reference = True

    def find_by_reference(self, reference):
        """The started envelope this user sent with our ``reference``, or None (see module doc).

        Several started envelopes (a send repeated after a lookup that missed) give the latest,
        with a warning naming the others so that someone voids them.
        """
        reference = (reference or "").strip()
        if not reference:
            raise self._error("config", "no reference to look for in DocuSign")
        listed = self._list_by_reference(reference)
        started = [e for e in listed if _was_started(e)]
        if not started:
            self._skip_drafts(reference, listed)
            return None
        started.sort(key=_created_at)
        chosen = started[-1]
        envelope_id = chosen["envelopeId"]
        warnings = ()
        if len(started) > 1:
            others = ", ".join(e["envelopeId"] for e in started[:-1])
            warnings = (f"DocuSign has {len(started)} envelopes for reference {reference}; following the "
                        f"latest ({envelope_id}). Void the others in DocuSign: {others}.",)
        recipients = self._api_json("GET", self._envelope_path(envelope_id, "/recipients"))
        return SendResult(provider_ref=envelope_id, signers=signer_statuses(recipients), raw=chosen,
                          warnings=warnings)

    def _list_by_reference(self, reference):
        """Every listed envelope whose custom field is exactly ``reference``, all pages read."""
        since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=FIND_LOOKBACK_DAYS)
        params = {
            "from_date": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "custom_field": f"{REFERENCE_FIELD}={reference}",
            "include": "custom_fields",
            "user_filter": FIND_USER_FILTER,
            "count": str(FIND_PAGE_SIZE),
        }
        found, start = [], 0
        for _page in range(FIND_MAX_PAGES):
            data = self._api_json("GET", "/envelopes", params=dict(params, start_position=str(start)))
            envelopes, total = self._listing_page(data)
            found.extend(e for e in envelopes if self._listed_reference(e) == reference)
            start += len(envelopes)
            if not envelopes or start >= total:
                return found
        raise self._error("protocol", f"DocuSign lists more than {FIND_PAGE_SIZE * FIND_MAX_PAGES} "
                          f"envelopes for reference {reference}; cannot tell which one is ours")

    def _listing_page(self, data):
        """``(envelopes, totalSetSize)`` of one ``envelopesInformation`` page, or a protocol error."""
        envelopes = data.get("envelopes")
        if envelopes is None and "resultSetSize" not in data:
            raise self._error("protocol", "DocuSign's envelope list has neither envelopes nor a result size")
        envelopes = envelopes or []
        try:
            total = int(data.get("totalSetSize") or len(envelopes))
        except (TypeError, ValueError) as exc:
            raise self._error("protocol", "DocuSign's envelope list has an unreadable totalSetSize") from exc
        if not isinstance(envelopes, list) or not all(
                isinstance(e, dict) and e.get("envelopeId") for e in envelopes):
            raise self._error("protocol", "DocuSign's envelope list holds entries without an envelopeId")
        return envelopes, total

    def _listed_reference(self, envelope_data):
        """Our reference on a listed envelope; a listing without custom fields cannot be judged."""
        if not isinstance(envelope_data.get("customFields"), dict):
            raise self._error("protocol", f"DocuSign listed envelope {envelope_data['envelopeId']} without "
                              "its custom fields; cannot tell whether it is ours")
        return envelope_reference(envelope_data)

    def _skip_drafts(self, reference, listed):
        """Ignore our drafts that never went out; a draft too young to judge means "cannot tell now"."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        for envelope_data in listed:
            age = (now - _created_at(envelope_data)).total_seconds()
            if (envelope_data.get("status") or "").lower() == "created" and age < DRAFT_SETTLE_SECONDS:
                raise self._error(
                    "unavailable", f"DocuSign has a draft envelope {envelope_data['envelopeId']} for "
                    f"reference {reference}, created {int(age)} s ago: it may still be on its way to the "
                    "signers. Look again later.", retry_after=DRAFT_SETTLE_SECONDS - max(age, 0))
            _logger.info("DocuSign envelope %s for reference %s never went out (%s): ignored",
                         envelope_data["envelopeId"], reference, envelope_data.get("status"))

    # ------------------------------------------------------------------ status

    def get_status(self, provider_ref):
        envelope_data = self._api_json("GET", self._envelope_path(provider_ref),
                                       params={"include": STATUS_INCLUDE})
        recipients = self._api_json("GET", self._envelope_path(provider_ref, "/recipients"))
        return build_status(provider_ref, envelope_data, recipients)

    # ------------------------------------------------------------------ documents

    def download_signed(self, provider_ref, hints=None):
        """All documents as one PDF (``documents/combined``), call once the envelope is completed."""
        content = self._api("GET", self._envelope_path(provider_ref, "/documents/combined"),
                            headers={"Accept": "application/pdf"}).content
        if not content:
            raise self._error("protocol", f"DocuSign returned an empty signed PDF for {provider_ref}")
        filename = (hints or {}).get("filename") or f"docusign-{provider_ref}-signed.pdf"
        return Document(filename=filename, content=content, mimetype="application/pdf")

    def download_evidence(self, provider_ref, hints=None):
        """The Certificate of Completion (``documents/certificate``, NOTES §3.6 [MEM])."""
        content = self._api("GET", self._envelope_path(provider_ref, "/documents/certificate"),
                            headers={"Accept": "application/pdf"}).content
        if not content:
            return None
        return Document(filename=f"docusign-{provider_ref}-certificate.pdf", content=content,
                        mimetype="application/pdf")

    # ------------------------------------------------------------------ cancel / remind

    def cancel(self, provider_ref, reason=""):
        """Void the envelope (NOTES §3.7). A repeated void of an envelope already voided is success."""
        body = {"status": "voided", "voidedReason": (reason or DEFAULT_VOID_REASON).strip()[:VOID_REASON_MAX]}
        try:
            self._api("PUT", self._envelope_path(provider_ref), json=body)
        except ProviderError as error:
            if error.kind != "conflict":
                raise
            # The PUT may have been retried after a lost answer: voided already means done.
            status = self.get_status(provider_ref)
            if status.provider_state == "voided":
                return
            raise self._error("conflict", f"DocuSign cannot void this envelope, it is {status.provider_state} "
                              f"({error.detail})", status_code=error.status_code, body=error.body) from error

    def remind(self, provider_ref):
        """Resend the envelope to the recipients whose turn it is (NOTES §3.8)."""
        self._api("PUT", self._envelope_path(provider_ref), params={"resend_envelope": "true"}, json={})

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, headers, body, query):
        """Accept the message if any ``X-DocuSign-Signature-N`` matches a configured secret (NOTES §5.3)."""
        if not self.hmac_secrets:
            raise WebhookAuthError("no DocuSign Connect HMAC secret is configured")
        signatures = [v.strip() for k, v in (headers or {}).items()
                      if k.lower().startswith(SIGNATURE_HEADER_PREFIX) and v]
        if not signatures:
            raise WebhookAuthError("the DocuSign message carries no X-DocuSign-Signature header")
        raw = body if isinstance(body, bytes) else (body or "").encode("utf-8")
        for secret in self.hmac_secrets:
            expected = base64.b64encode(
                hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).digest()).decode("ascii")
            for signature in signatures:
                if hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
                    return
        raise WebhookAuthError("no X-DocuSign-Signature header matches a configured Connect secret")

    def parse_webhook(self, headers, body, query):
        """One Connect JSON (SIM, restv2.1) message -> one :class:`Notification`."""
        try:
            message = json.loads(body)
        except (TypeError, ValueError, UnicodeDecodeError) as exc:
            raise WebhookMalformed(f"DocuSign message is not JSON ({exc}); is the Connect format "
                                   "set to JSON, version restv2.1?") from exc
        if not isinstance(message, dict):
            raise WebhookMalformed("DocuSign message is not a JSON object")
        event = message.get("event")
        data = message.get("data")
        if not isinstance(event, str) or not event or not isinstance(data, dict):
            raise WebhookMalformed("DocuSign message lacks 'event' or 'data'")
        summary = data.get("envelopeSummary") if isinstance(data.get("envelopeSummary"), dict) else None
        envelope_id = data.get("envelopeId") or (summary or {}).get("envelopeId")
        if not envelope_id or not isinstance(envelope_id, str):
            raise WebhookMalformed("DocuSign message has no data.envelopeId")
        generated = message.get("generatedDateTime")
        if generated:
            # Retries of one message keep generatedDateTime (retryCount changes): same key.
            parts = [envelope_id, event, str(data.get("recipientId") or ""), str(generated)]
            dedup_key = "docusign:" + ":".join(parts)
        else:
            dedup_key = body_digest(body if isinstance(body, bytes) else str(body).encode())
        status = None
        if summary and summary.get("status"):
            # Without recipients (not in includeData) the signer part is simply empty.
            recipients = summary.get("recipients") if isinstance(summary.get("recipients"), dict) else None
            status = build_status(envelope_id, summary, recipients)
        hints = {"recipient_id": str(data["recipientId"])} if data.get("recipientId") else None
        # Our reference rides in envelopeSummary.customFields.textCustomFields (connect.schema-v2.json),
        # present because we ask for includeData custom_fields.
        return [Notification(dedup_key=dedup_key, event_type=event, provider_ref=envelope_id,
                             occurred_at=parse_datetime(generated), status=status, payload=message,
                             hints=hints, reference=envelope_reference(summary))]
