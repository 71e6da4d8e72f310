"""Autenti (Public API v2, "Document Process API") client.

Source of every wire detail below: ``shared/providers/autenti/NOTES.md`` (section numbers cited as
"NOTES §x"). Autenti's own OpenAPI document was not available; the partial Swagger of Autenti's
Power Automate connector is the only machine-readable description, and two of its request bodies
are Power-Automate forms, not the wire format (NOTES §10). Where the notes mark a point [GUESS] the
decision is a module constant below, so it is easy to change once Autenti confirms it.

Flow (NOTES §4): create the document process with its parties (client first, company second via
``PARTICIPATION_PRIORITY``) -> upload the PDF -> ``POST …/actions`` with an ``X-ASSERTION`` selecting
``DOCUMENT_SENT``. Autenti e-mails the signers itself. Status by ``GET /document-processes/{id}``,
callbacks are organisation-wide and signed as a detached JWS (NOTES §7).

Authentication (NOTES §2a): OAuth2 JWT-bearer grant. We sign an RS256 assertion with the private
key whose public JWK the customer pasted into Autenti; the ``email`` claim selects the Autenti user
we act for (individual mode: the salesperson; central mode: the representative).

Outbox (``base.ProviderClient.send`` / ``find_by_reference``):

* **Our reference travels in the title.** The create body Autenti describes has ``title``,
  ``description`` and ``processLanguage`` [OK, S1], plus ``parties``, ``tags`` and ``constraints``
  [2nd, NOTES §4.1]. None of them is an external id, metadata or custom attribute: tags are the
  organisation's predefined tags (listed by ``GET /tags``, [2nd] S4), not free text, and ``extIds``
  identify a party (a company's tax id), not the process. The title is the one value of ours that
  Autenti keeps and shows back, so we append ``TITLE_REFERENCE_TAG`` to it; ``get_status`` reads it
  back into ``EnvelopeStatus.reference``. Autenti's callbacks carry only ``id``, ``actor``,
  ``eventType``, ``object {id, type}`` and ``timestamp`` [OK, S1 notification schema], so a
  notification never names our reference; the core matches it by ``object.id``.
* **No lookup by reference** (``can_find_by_reference = False``). The only listing,
  ``GET /document-processes`` [OK, S1], documents no filter, search or paging parameter, needs an extra
  purchase, and its declared item looks like a file record [GUESS, NOTES §4.5]. Scanning it could not
  prove that no process carries our reference (a second page we do not know how to ask for), and a
  wrong "none" makes the outbox send the contract twice.
* **What a failed send leaves behind.** Only our own ``DOCUMENT_SENT`` action starts a process, and
  ``send`` knows the process id from the create answer on. So it settles every doubt it can itself:
  a send action whose answer is lost is followed by a status read (a safe GET): if the process left
  the draft state the send succeeded and is returned as such; otherwise the process is withdrawn
  (``_abandon``). ``outcome_unknown`` is True only when a draft or a started process may remain: the
  create answer was lost (a draft we cannot name), the status could not be read after an unclear
  send, the status is one we do not know, or the withdrawal failed.
"""
import base64
import binascii
import datetime
import json
import logging
import re
import threading
import time
import urllib.parse
import uuid

import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import keys as rsa_keys
from .base import (REQUEST_FINAL_STATES, Document, EnvelopeStatus, Notification, ProviderClient,
                   ProviderError, SendResult, SignerStatus, WebhookAuthError, WebhookMalformed)
from .http import IDEMPOTENT_METHODS, HttpTransport, redact_url
from .tokens import TokenCache

_logger = logging.getLogger(__name__)

PROVIDER_LABEL = "Autenti"

# --- hosts (NOTES §1, [OK]) ---------------------------------------------------------------------
SANDBOX_URL = "https://api.accept.autenti.net/api/v2"  # Autenti's test environment "ACCEPT"
PRODUCTION_URL = "https://api.autenti.com/api/v2"
# Webhook signing keys (NOTES §7, [2nd] from two independent integrations).
JWKS_URL_PRODUCTION = "https://autenti.com/developers/keys/webhook.jwks"
JWKS_URL_SANDBOX = "https://autenti.com/developers/keys/accept-webhook.jwks"

# --- authentication (NOTES §2a, [2nd] from WEBCON's plugin) -------------------------------------
TOKEN_PATH = "/auth/token"  # same {base}/auth/token on ACCEPT is [GUESS] but consistent with S6
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_AUDIENCE = "autenti.com"
ASSERTION_LIFETIME = 300  # exp = iat + 300 s, as WEBCON does; Autenti's maximum is unknown
# [GUESS] NOTES §2b: form-encoded and JSON token bodies are both seen working; WEBCON's JWT-bearer
# code (the model we copy) sends a form. Switch to "json" here if Autenti ever refuses the form.
TOKEN_BODY_ENCODING = "form"
# Tokens are reused until this many seconds before they expire (clock drift + request time).
TOKEN_REFRESH_MARGIN = 30

# --- vocabulary (NOTES §3) ----------------------------------------------------------------------
PROCESS_LANGUAGES = ("pl", "en", "de")  # [OK] the create body's enum
DEFAULT_LANGUAGE = "en"
CONTACT_EMAIL = "CONTACT-TYPE:EMAIL"
RELATIONSHIP_MEMBER = "PARTY_RELATIONSHIP-TYPE:MEMBER"
TAX_ID_SPACE = "TAXID-{country}-NIP"  # WEBCON builds TAXID-<CC>-NIP from the VAT prefix [OK for PL]
ROLE_BY_ACTION = {"sign": "SIGNER", "approve": "APPROVER", "view": "VIEWER"}
ORDERED_ROLES = ("SIGNER", "APPROVER")  # WEBCON adds PARTICIPATION_PRIORITY only to these
ACTION_SIGN = "ACTION:SIGNATURE_APPLICATION"
CONSTRAINT_SIGNATURE_TYPE = "CONSTRAINT-UNIQUE_TYPE:SIGNATURE_TYPE"
CONSTRAINT_PRIORITY = "CONSTRAINT-UNIQUE_TYPE:PARTICIPATION_PRIORITY"
SIGNATURE_BASIC = "SIGNATURE_PROVIDER-SIGNATURE_TYPE:BASIC"
SIGNATURE_QUALIFIED = "SIGNATURE_PROVIDER-SIGNATURE_TYPE:QUALIFIED"
SIGNATURE_ADVANCED = "SIGNATURE_PROVIDER-SIGNATURE_TYPE:ADVANCED"
# [GUESS] NOTES §4.2: that priority 1 signs first is how WEBCON numbers rows; not confirmed.
FIRST_PRIORITY = 1

CHALLENGE_ACTION_SELECTION = "CHALLENGE_CLASSIFIER-UNIQUE_TYPE:ACTION_SELECTION"
CHALLENGE_REMINDER_PARTY = "CHALLENGE_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_REMINDER_PARTY_SELECTION"
CHALLENGE_ACCESS_UNLOCK = "CHALLENGE_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_ACCESS_UNLOCK"
EVENT_SENT = "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_SENT"
EVENT_WITHDRAWAL = "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_WITHDRAWAL"
EVENT_REMINDER = "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_REMINDER_SENT"
EVENT_REJECTION = "EVENT_CLASSIFIER-UNIQUE_TYPE:SIGNATURE_REJECTION"
EVENT_COMPLETED = "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_PROCESS_COMPLETED"
# [GUESS] NOTES §4.8: how two X-ASSERTION values travel is unknown; .NET's HttpClient (WEBCON) joins
# repeated headers with ", ". Base64 never contains a comma, so the join is unambiguous.
ASSERTION_JOIN = ", "

PURPOSE_SOURCE = "SOURCE_FILE"
PURPOSE_SIGNED = "SIGNED_CONTENT_FILE"
# [GUESS] NOTES §4.6: Autenti has no audit-trail endpoint; the signature card (a PDF) is the nearest
# thing to evidence, the content archive (a ZIP, only at COMPLETED) the fallback. In this order.
EVIDENCE_PURPOSES = ("SIGNATURE_CARD", "CONTENT_ARCHIVE")
EVIDENCE_MIMETYPES = {"SIGNATURE_CARD": "application/pdf", "CONTENT_ARCHIVE": "application/zip"}
FILES_ACCEPT = "application/stream+json, application/json"  # GET …/files answers NDJSON (NOTES §4.6)

# --- our reference and the outbox (see the module docstring, "Outbox") ---------------------------
# Appended to the title, the only value of ours Autenti keeps on a process. "{reference}" is ours.
TITLE_REFERENCE_TAG = "[ref {reference}]"
# [GUESS] Autenti publishes no maximum title length; the title (never the tag) is cut to fit this.
TITLE_MAX_LENGTH = 250
# [GUESS] NOTES §6: transitions are undocumented. We assume a withdrawn process can never be sent,
# so a DOCUMENT_SENT still running at Autenti after our timeout cannot revive a draft we withdrew:
# "draft seen, then withdrawn" leaves nothing to sign (outcome_unknown False). Set False if Autenti
# turns out to accept a send after a withdrawal; such failures then report outcome_unknown True.
WITHDRAWAL_IS_FINAL = True
# [GUESS] NOTES §6 lists FAILED/ERROR but no text says where Autenti explains them. These
# process-level keys are read first, then the last event of a party whose status is FAILED
# (``attributes.comment`` / ``description``, like a rejection's comment, [2nd] S4); else the reason
# names Autenti's status.
FAILURE_REASON_KEYS = ("statusDescription", "errorMessage", "failureReason")
# [GUESS] Autenti publishes no completion date. Signed and refused processes take the time of the
# last signature / the refusal (party event timestamps); other final states (withdrawn, failed) take
# this process field, the last modification (adding the signed file a little later, NOTES §4.6, may
# move it). None leaves ``completed_at`` empty instead.
COMPLETED_AT_FALLBACK_KEY = "modifiedAt"

CALLBACK_ADAPTER = "CALLBACK_ADAPTER:API_V2"
MAX_CALLBACKS = 5  # "at most 5 callbacks per organization" [2nd] NOTES §7

# --- webhook verification (NOTES §7) --------------------------------------------------------------
WEBHOOK_SIGNATURE_HEADER = "x-jws-signature"
WEBHOOK_ALGORITHMS = ("RS256",)
JWKS_TTL = 3600  # seconds a fetched JWKS is trusted before it is fetched again
# An unknown kid triggers one immediate refetch (key rotation); further unknown kids within this
# many seconds do not, so forged headers cannot make us hammer Autenti's key server.
JWKS_REFETCH_COOLDOWN = 60

# ONE table: Autenti's states -> ours (NOTES §6, [2nd] from WEBCON's drop-downs).
STATUS_MAP = {
    "process": {
        "DRAFT": "draft",  # [GUESS] name of the initial status
        "PROCESSING": "sent",
        "COMPLETED": "signed",  # all signatures collected [OK]
        "SUCCESS": "signed",  # listed by WEBCON, meaning unconfirmed [GUESS]
        "WITHDRAWN": "cancelled",
        "REJECTED": "refused",
        "FAILED": "error",
        "ERROR": "error",
    },
    "party": {
        "NONE": "waiting",  # not their turn yet
        "PENDING": "pending",  # their turn
        "COMPLETED": "signed",
        "REJECTED": "refused",
        "OBSOLETE": "waiting",  # no longer asked (withdrawn / someone else refused): never acted
        "FAILED": "waiting",  # [GUESS] a failed attempt is not a signature; keep them unsigned
    },
}
UNKNOWN_PROCESS_STATE = "sent"  # an unlisted status must not look final
UNKNOWN_PARTY_STATE = "waiting"

# Module-level caches (shared by all instances of this worker process).
_LOCK = threading.Lock()
_TOKENS = TokenCache(TOKEN_REFRESH_MARGIN)  # (base_url, client_id, email) -> token
_JWKS = {}  # jwks_url -> {"keys": {kid: public_key}, "fetched_at": t, "forced_at": t}


def clear_caches():
    """Forget cached tokens and webhook keys (tests; after changing credentials)."""
    _TOKENS.clear()
    with _LOCK:
        _JWKS.clear()


def jwks_url_for(base_url):
    """Autenti's webhook JWKS for an API host: production keys for production, ACCEPT otherwise."""
    return JWKS_URL_PRODUCTION if (base_url or "").rstrip("/") == PRODUCTION_URL else JWKS_URL_SANDBOX


# --- small helpers ------------------------------------------------------------------------------


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text):
    """base64url with optional padding; tolerates the standard alphabet too (NOTES §5)."""
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_assertion(classifier, selected_ids):
    """One ``X-ASSERTION`` value: standard base64 of compact JSON (NOTES §4.4)."""
    data = {"classifiers": [classifier], "attributes": {"selectedIds": list(selected_ids)}}
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode("ascii")


def _json_values(text):
    """All JSON values in ``text``: NDJSON, concatenated objects or one array (NOTES §4.6 quirk)."""
    decoder = json.JSONDecoder()
    values, pos, text = [], 0, text.strip()
    while pos < len(text):
        value, end = decoder.raw_decode(text, pos)
        if isinstance(value, list):
            values.extend(value)
        else:
            values.append(value)
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
    return values


def _quote_process(process_id):
    return urllib.parse.quote(process_id, safe=":")


def _quote_file(file_id):
    # File ids contain "/" (e.g. "FILE-SIGNED_CONTENT_FILE:…/DTBS") and must be percent-encoded
    # as one path segment (NOTES §3, [OK]).
    return urllib.parse.quote(file_id, safe="")


def _party_email(party):
    for contact in (party or {}).get("contacts") or ():
        if isinstance(contact, dict) and contact.get("type") == CONTACT_EMAIL:
            email = (contact.get("attributes") or {}).get("email")
            if email:
                return email.strip()
    return ""


def _parse_timestamp(value):
    """Autenti's timestamps as naive UTC (what Odoo stores); ``None`` when not understood."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)):
            seconds = value / 1000.0 if value > 1e11 else float(value)
            return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed


def _tax_id(organisation):
    """``(identificationSpace, identifier)`` from a VAT number such as ``PL1234567890``."""
    raw = "".join(ch for ch in (organisation.tax_id or "") if ch.isalnum()).upper()
    country = (organisation.country_code or "").upper()
    if len(raw) > 2 and raw[:2].isalpha():
        country, raw = raw[:2], raw[2:]
    if not raw or len(country) != 2 or not country.isalpha():
        return None
    return TAX_ID_SPACE.format(country=country), raw


def tagged_title(title, reference):
    """``title`` with our reference appended, cut so that the tag always fits ``TITLE_MAX_LENGTH``."""
    title = " ".join((title or "").split())
    if not reference:
        return title[:TITLE_MAX_LENGTH]
    tag = TITLE_REFERENCE_TAG.format(reference=reference)
    room = max(0, TITLE_MAX_LENGTH - len(tag) - 1)
    return f"{title[:room].rstrip()} {tag}".strip()


def _reference_pattern():
    prefix, _sep, suffix = TITLE_REFERENCE_TAG.partition("{reference}")
    return re.compile(re.escape(prefix) + r"(\S+?)" + re.escape(suffix) + r"\s*$")


def reference_from_title(title):
    """Our reference from a process title made by :func:`tagged_title`; "" when it has none."""
    match = _reference_pattern().search(title) if isinstance(title, str) else None
    return match.group(1) if match else ""


def _status_of(data):
    return str((data or {}).get("status") or "").strip().upper()


def _process_stage(data):
    """``"draft"``, ``"started"`` (left the draft: sent or beyond) or ``"unknown"`` (a status we
    do not know: it may be either, so the caller must not conclude)."""
    mapped = STATUS_MAP["process"].get(_status_of(data))
    if mapped is None:
        return "unknown"
    return "draft" if mapped == "draft" else "started"


def _last_event(entry):
    events = [e for e in (entry.get("events") or ()) if isinstance(e, dict)]
    return events[-1] if events else None


def _event_time(event):
    return _parse_timestamp(event.get("timestamp") or event.get("createdAt")) if event else None


def _event_comment(event):
    attributes = (event or {}).get("attributes") or {}
    if not isinstance(attributes, dict):
        return ""
    return str(attributes.get("comment") or attributes.get("description") or "").strip()


class AutentiClient(ProviderClient):
    """Autenti client acting for one Autenti user (``acting_email``) of one client application.

    ``organisation_id`` is the JWT ``iss``: "unique identifier of the calling organization" (NOTES
    §2a); ``acting_subject`` the ``sub``: a permanent id of the acting person on our side.
    """

    calls_per_send = 3  # create (with the parties), upload, the DOCUMENT_SENT action

    code = "autenti"
    # Autenti offers no way to find a process by our reference: see the module docstring, "Outbox".
    can_find_by_reference = False

    def __init__(self, base_url=SANDBOX_URL, client_id="", client_secret="", organisation_id="",
                 private_key_pem="", kid="", acting_email="", acting_subject="", jwks_url=None,
                 signature_type=SIGNATURE_BASIC, timeout=(5.0, 30.0), max_retries=2, sleep=time.sleep,
                 session=None):
        self.base_url = (base_url or "").rstrip("/")
        self.client_id = client_id or ""
        self.client_secret = client_secret or ""
        self.organisation_id = organisation_id or ""
        self.private_key_pem = private_key_pem or ""
        self.kid = kid or ""
        self.acting_email = (acting_email or "").strip()
        self.acting_subject = acting_subject or ""
        self.jwks_url = jwks_url or jwks_url_for(self.base_url)
        self.signature_type = signature_type
        self.transport = HttpTransport(self.base_url, PROVIDER_LABEL, timeout=timeout,
                                       max_retries=max_retries, sleep=sleep, session=session)

    def _error(self, kind, detail, **kwargs):
        return ProviderError(kind, detail, provider=PROVIDER_LABEL, **kwargs)

    # ------------------------------------------------------------------ authentication

    def _check_credentials(self):
        missing = [label for label, value in (
            ("client id", self.client_id), ("client secret", self.client_secret),
            ("private key", self.private_key_pem), ("acting user's e-mail", self.acting_email),
        ) if not value]
        if missing:
            raise self._error("config", "Autenti settings incomplete, missing: " + ", ".join(missing))
        try:
            self._signing_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise self._error("config", f"the Autenti private key cannot be used: {exc}") from exc

    def build_assertion(self, now=None):
        """The RS256 JWT-bearer assertion (NOTES §2a claims table)."""
        now = int(now if now is not None else time.time())
        claims = {
            "aud": ASSERTION_AUDIENCE,
            # [GUESS] iss/sub are "should be present"; without an explicit organisation id we send
            # the client id, which identifies our installation at Autenti just as uniquely.
            "iss": self.organisation_id or self.client_id,
            "sub": self.acting_subject or self.acting_email,
            "email": self.acting_email,
            "email_verified": True,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        headers = {"typ": "JWT"}
        if self.kid:  # leave it out only when the registered key has none (NOTES §2a)
            headers["kid"] = self.kid
        return jwt.encode(claims, self._signing_key(), algorithm="RS256", headers=headers)

    def _signing_key(self):
        """The loaded private key; loading a PEM validates the RSA key, which is slow, so once."""
        return rsa_keys.load_private_key_cached(self.private_key_pem)

    def _cache_key(self):
        return (self.base_url, self.client_id, self.acting_email.lower())

    def _token(self, force=False):
        self._check_credentials()
        key = self._cache_key()
        now = time.time()
        cached = None if force else _TOKENS.get(key, now)
        if cached:
            return cached
        fields = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": JWT_BEARER_GRANT,
            "assertion": self.build_assertion(now),
        }
        body = {"json": fields} if TOKEN_BODY_ENCODING == "json" else {"data": fields}
        try:
            data = self.transport.json("POST", TOKEN_PATH, **body)
        except ProviderError as error:
            if error.status_code in (400, 401, 403):
                raise self._error(
                    "auth",
                    f"Autenti refused to log in as {self.acting_email} ({error.detail or 'no detail'}). "
                    "Check the client id and secret, that the public key (JWK, kid "
                    f"{self.kid or 'none'}) is registered with API permissions, and that this e-mail "
                    "is an Autenti user of the organisation.",
                    status_code=error.status_code, body=error.body) from error
            # A token creates nothing the outbox cares about: whatever the transport thinks of a
            # POST that got no answer, no envelope can be left behind by this call.
            raise self._error(error.kind, f"logging in to Autenti failed: {error.detail or error.kind}",
                              status_code=error.status_code, retry_after=error.retry_after,
                              body=error.body) from error
        token = (data or {}).get("access_token") if isinstance(data, dict) else None
        if not token:
            raise self._error("protocol", "Autenti's token answer has no access_token")
        try:
            expires_in = float(data.get("expires_in") or 0)
        except (TypeError, ValueError):
            expires_in = 0.0
        _TOKENS.put(key, token, now + expires_in)
        return token

    def _forget_token(self):
        _TOKENS.forget(self._cache_key())

    def _api(self, method, path, headers=None, **kwargs):
        """An authenticated call; a 401 gets one fresh token and one retry (NOTES §8)."""
        for attempt in (1, 2):
            token = self._token(force=attempt == 2)
            hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
            try:
                return self.transport.request(method, path, headers=hdrs, **kwargs)
            except ProviderError as error:
                if error.status_code != 401:
                    raise
                self._forget_token()
                if attempt == 2:
                    raise self._error(
                        "auth",
                        f"Autenti refused a fresh access token for {self.acting_email} on {method} "
                        f"{path} ({error.detail or 'HTTP 401'}); the user may lack API access or "
                        "access to the organisation's documents.",
                        status_code=401, body=error.body) from error
        raise AssertionError("unreachable")

    def _api_json(self, method, path, **kwargs):
        response = self._api(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            # A 2xx whose answer we cannot read: a call that changes something did act.
            raise self._error("protocol", f"{method} {path} did not answer JSON",
                              status_code=response.status_code,
                              outcome_unknown=method.upper() not in IDEMPOTENT_METHODS) from exc

    # ------------------------------------------------------------------ actions and challenges

    @staticmethod
    def decode_challenge(value):
        try:
            data = json.loads(_b64url_decode(value))
        except (ValueError, binascii.Error):
            return None
        return data if isinstance(data, dict) else None

    def _action(self, process_id, event, extra_assertions=()):
        """``POST …/actions``; returns ``(events, None)`` or ``(None, challenge)`` on 403+X-Challenge."""
        values = [encode_assertion(CHALLENGE_ACTION_SELECTION, [event]), *extra_assertions]
        response = self._api(
            "POST", f"/document-processes/{_quote_process(process_id)}/actions",
            headers={"X-ASSERTION": ASSERTION_JOIN.join(values)}, json={},
            expected=(200, 201, 202, 204, 403))
        if response.status_code == 403:
            raw = response.headers.get("X-Challenge")
            if not raw:
                raise self.transport.to_error(response)
            challenge = self.decode_challenge(raw)
            if challenge is None:
                raise self._error("protocol", "Autenti sent an X-Challenge we cannot decode",
                                  status_code=403)
            return None, challenge
        try:
            events = response.json() if response.content else []
        except ValueError:
            events = []
        return events, None

    def _challenge_error(self, challenge, what):
        classifiers = challenge.get("classifiers") or []
        attributes = challenge.get("attributes") or {}
        errors = attributes.get("errors") or []
        reasons = "; ".join(str(e.get("description") or e.get("id") or e) if isinstance(e, dict) else str(e)
                            for e in errors)
        if CHALLENGE_ACCESS_UNLOCK in classifiers:
            reasons = reasons or "the document is locked"
        return self._error("conflict", f"Autenti did not allow to {what}: "
                           f"{reasons or ', '.join(classifiers) or 'unanswered challenge'}",
                           status_code=403, body=challenge)

    # ------------------------------------------------------------------ send

    def _party_entry(self, signer, priority):
        first, last = signer.split_name()
        party = {
            "firstName": first,
            "lastName": last,
            "contacts": [{"type": CONTACT_EMAIL, "attributes": {"email": signer.email.strip()}}],
        }
        if signer.organisation is not None:
            space, identifier = _tax_id(signer.organisation)
            relationship = {
                "type": RELATIONSHIP_MEMBER,
                "party": {"name": signer.organisation.name,
                          "extIds": [{"identificationSpace": space, "identifier": identifier}]},
            }
            if signer.representation_basis:
                relationship["attributes"] = {"relationshipDescription": signer.representation_basis}
            party["relationships"] = [relationship]
        role = ROLE_BY_ACTION[signer.action]
        constraints = []
        if role == "SIGNER":
            constraints.append({"constrainedActions": [ACTION_SIGN],
                                "classifiers": [CONSTRAINT_SIGNATURE_TYPE],
                                "attributes": {"requiredClassifiers": [self.signature_type]}})
        if role in ORDERED_ROLES:
            constraints.append({"classifiers": [CONSTRAINT_PRIORITY], "attributes": {"priority": priority}})
        entry = {"party": party, "role": role}
        if constraints:
            entry["constraints"] = constraints
        return entry

    def _validate_envelope(self, envelope):
        """Everything checkable before the first call; returns the create-process body."""
        def rejected(detail):
            return self._error("rejected", detail)

        if not (envelope.title or "").strip():
            raise rejected("the document needs a title")
        document = envelope.document
        if document is None or not document.content:
            raise rejected("there is no document to sign")
        if not document.content.startswith(b"%PDF"):
            raise rejected(f"{document.filename or 'the document'} is not a PDF; Autenti gets PDFs only here")
        signers = list(envelope.ordered_signers())
        if not any(s.role == "client" for s in signers):
            raise rejected("add the client as a signer")
        seen = set()
        for signer in signers:
            label = signer.name or signer.email or signer.key
            email = (signer.email or "").strip().lower()
            if "@" not in email or " " in email:
                raise rejected(f"signer {label} has no valid e-mail address")
            if email in seen:
                raise rejected(f"{email} appears twice; Autenti identifies parties by e-mail")
            seen.add(email)
            if signer.action not in ROLE_BY_ACTION:
                raise rejected(f"signer {label}: unknown action {signer.action!r}")
            first, last = signer.split_name()
            if not (first or last):
                raise rejected(f"signer {email} has no name")
            if signer.organisation is not None:
                if not (signer.organisation.name or "").strip():
                    raise self._error("config", f"{label} signs for a company that has no name")
                if _tax_id(signer.organisation) is None:
                    raise self._error(
                        "config",
                        f"{label} signs for {signer.organisation.name}, whose tax id (VAT, with country "
                        "prefix or company country) is missing; Autenti needs it to show whom "
                        f"{label} represents")
        # Priorities: dense rank of our sequence among ordered roles; client first on equal rank
        # is already the ordering, equal sequences may sign in parallel.
        ranks = {}
        for signer in signers:
            if ROLE_BY_ACTION[signer.action] in ORDERED_ROLES and signer.sequence not in ranks:
                ranks[signer.sequence] = FIRST_PRIORITY + len(ranks)
        language = (envelope.language or "").lower()[:2]
        body = {
            "title": tagged_title(envelope.title, envelope.reference),
            "processLanguage": language if language in PROCESS_LANGUAGES else DEFAULT_LANGUAGE,
            "parties": [self._party_entry(s, ranks.get(s.sequence, FIRST_PRIORITY)) for s in signers],
        }
        if envelope.message:
            body["description"] = envelope.message
        return body

    def send(self, envelope):
        """Create the process with its parties, upload the PDF, start it (NOTES §4).

        A failure after the create withdraws what was made; ``outcome_unknown`` on the error says
        whether anything may remain (module docstring, "Outbox").
        """
        self._check_credentials()
        body = self._validate_envelope(envelope)
        created = self._create_process(body)
        process_id = created["id"]
        try:
            self._upload_source(process_id, envelope.document)
        except ProviderError as error:
            raise self._abandon(process_id, "uploading the PDF", error) from error
        return self._start(process_id, created, envelope)

    def _create_process(self, body):
        """``POST /document-processes``; the answer, which always has the new process id."""
        try:
            created = self._api_json("POST", "/document-processes", json=body)
        except ProviderError as error:
            if not error.outcome_unknown:
                raise  # refused (4xx, 429 after retries, never connected): nothing was created
            raise self._error(
                error.kind, f"creating the Autenti document process failed ({error.detail}); it is "
                "unknown whether a draft was created at Autenti. Nothing was sent to the signers.",
                status_code=error.status_code, retry_after=error.retry_after, body=error.body,
                outcome_unknown=True) from error
        process_id = created.get("id") if isinstance(created, dict) else None
        if not process_id:
            raise self._error("protocol", "Autenti created a document process but returned no id; a "
                              "draft nobody was asked to sign may be left at Autenti", outcome_unknown=True)
        return created

    def _upload_source(self, process_id, document):
        filename = document.filename or "document.pdf"
        if not filename.lower().endswith(".pdf"):
            filename += ".pdf"
        self._api_json("POST", f"/document-processes/{_quote_process(process_id)}/files",
                       files={"file": (filename, document.content, "application/pdf")},
                       data={"filePurpose": PURPOSE_SOURCE, "mimeType": "application/pdf"})

    def _start(self, process_id, created, envelope):
        """The ``DOCUMENT_SENT`` action; an answer that does not prove the send is settled by a read."""
        step = "starting the signing (DOCUMENT_SENT action)"
        try:
            events, challenge = self._action(process_id, EVENT_SENT)
        except ProviderError as error:
            if not error.outcome_unknown:
                raise self._abandon(process_id, step, error) from error  # refused: not sent
            return self._settle_unclear_send(process_id, envelope, step, error)
        if challenge is not None:
            raise self._abandon(process_id, step, self._challenge_error(challenge, "send the document"))
        # [S6] confirms a send by a DOCUMENT_SENT event in the answer; otherwise we read the status.
        if isinstance(events, list) and any(isinstance(e, dict) and e.get("eventType") == EVENT_SENT
                                            for e in events):
            return self._send_result(process_id, created, envelope)
        unconfirmed = self._error("protocol", "Autenti accepted the DOCUMENT_SENT action without "
                                  f"confirming it ({json.dumps(events)[:300]})", outcome_unknown=True)
        return self._settle_unclear_send(process_id, envelope, step, unconfirmed)

    def _settle_unclear_send(self, process_id, envelope, step, error):
        """The send may have run: read the process (a safe GET) before cleaning anything up.

        Started -> the send worked, return it. A draft -> it did not (yet) run: withdraw it; with
        ``WITHDRAWAL_IS_FINAL`` nothing can be signed afterwards. Unreadable or unknown status ->
        withdraw anyway (nothing of ours must stay open unnoticed) and say that it may have been sent.
        """
        try:
            data = self._get_process(process_id)
        except ProviderError as read_error:
            _logger.warning("Autenti: after an unclear DOCUMENT_SENT, %s could not be read (%s)",
                            process_id, read_error.kind)
            raise self._abandon(process_id, step, error, may_be_sent=True) from error
        stage = _process_stage(data)
        if stage == "started":
            _logger.info("Autenti: the DOCUMENT_SENT answer for %s was unclear (%s) but the process is "
                         "%s: it was sent", process_id, error.kind, _status_of(data))
            return self._send_result(process_id, data, envelope)
        may_be_sent = stage == "unknown" or not WITHDRAWAL_IS_FINAL
        raise self._abandon(process_id, step, error, may_be_sent=may_be_sent,
                            seen=_status_of(data) or "without status") from error

    def _send_result(self, process_id, data, envelope):
        signers = self._signer_statuses(data.get("parties") or [], envelope=envelope)
        return SendResult(provider_ref=process_id, signers=signers, raw=data)

    def _abandon(self, process_id, step, error, may_be_sent=False, seen=""):
        """Withdraw a half-made process; the error says what is left and whether it may be live."""
        withdrawn, problem = self._withdraw_half_made(process_id)
        before = f"Autenti showed it as {seen} afterwards. " if seen else ""
        if withdrawn:
            left = (f"{before}The document process {process_id} that had been created at Autenti was "
                    "withdrawn, so nobody can sign it."
                    + (" It may have reached the signers before." if may_be_sent else ""))
        else:
            left = (f"{before}The document process {process_id} was created at Autenti and could NOT be "
                    f"withdrawn ({problem}); "
                    + ("it may have been sent to the signers. " if may_be_sent
                       else "it remains there as a draft that was never sent. ")
                    + "Withdraw or delete it in Autenti's web application.")
        return self._error(error.kind, f"{step} failed: {error.detail or error.kind}. {left}",
                           status_code=error.status_code, retry_after=error.retry_after, body=error.body,
                           outcome_unknown=may_be_sent or not withdrawn)

    def _withdraw_half_made(self, process_id):
        """``(withdrawn, problem)``. A withdrawal whose answer was lost counts when a read shows it."""
        try:
            _events, challenge = self._action(process_id, EVENT_WITHDRAWAL)
        except ProviderError as error:
            if error.outcome_unknown and self._reads_withdrawn(process_id):
                return True, ""
            return False, error.detail or error.kind
        if challenge is not None:
            return False, self._challenge_error(challenge, "withdraw it").detail
        return True, ""

    def _reads_withdrawn(self, process_id):
        try:
            return STATUS_MAP["process"].get(_status_of(self._get_process(process_id))) == "cancelled"
        except ProviderError:
            return False

    # ------------------------------------------------------------------ status

    def _get_process(self, process_id):
        if not process_id:
            raise self._error("config", "no Autenti document process id")
        data = self._api_json("GET", f"/document-processes/{_quote_process(process_id)}")
        if not isinstance(data, dict):
            raise self._error("protocol", f"Autenti's answer for {process_id} is not an object")
        return data

    def _signer_statuses(self, parties, envelope=None):
        keys = {}
        if envelope is not None:
            keys = {(s.email or "").strip().lower(): s.key for s in envelope.signers}
        result = []
        for entry in parties:
            if not isinstance(entry, dict) or entry.get("role") == "SENDER":
                continue
            party = entry.get("party") or {}
            email = _party_email(party)
            if not email:
                continue
            status = str(entry.get("participationStatus") or "NONE").strip().upper()
            state = STATUS_MAP["party"].get(status, UNKNOWN_PARTY_STATE)
            reason, changed_at = self._party_outcome(entry, status)
            result.append(SignerStatus(state=state, key=keys.get(email.lower(), ""),
                                       provider_ref=party.get("id") or "", email=email,
                                       changed_at=changed_at, reason=reason))
        return tuple(result)

    @staticmethod
    def _party_outcome(entry, status):
        """``(reason, changed_at)`` of a party that acted: the refusal's comment and time (WEBCON
        reads it from the SIGNATURE_REJECTION event, NOTES §4.5), the last event's time for a
        signature, the last event's comment for a failure."""
        events = [e for e in (entry.get("events") or ()) if isinstance(e, dict)]
        rejection = next((e for e in reversed(events) if e.get("eventType") == EVENT_REJECTION), None)
        if rejection is not None:  # even when participationStatus lags behind the event
            return _event_comment(rejection), _event_time(rejection)
        if status == "COMPLETED":
            return "", _event_time(_last_event(entry))
        if status == "FAILED":
            last = _last_event(entry)
            return _event_comment(last), _event_time(last)
        return "", None

    def get_status(self, provider_ref):
        data = self._get_process(provider_ref)
        provider_state = _status_of(data)
        state = STATUS_MAP["process"].get(provider_state, UNKNOWN_PROCESS_STATE)
        signers = self._signer_statuses(data.get("parties") or [])
        if state == "sent" and any(s.state == "refused" for s in signers):
            state = "refused"  # a party refusal ends the process even if the status lags (NOTES §7)
        return EnvelopeStatus(provider_ref=provider_ref, state=state, signers=signers,
                              provider_state=provider_state, reason=self._reason(state, data, signers),
                              raw=data, completed_at=self._completed_at(state, data, signers),
                              reference=reference_from_title(data.get("title")))

    @staticmethod
    def _reason(state, data, signers):
        if state == "refused":
            return next((s.reason for s in signers if s.state == "refused" and s.reason), "")
        if state != "error":
            return ""
        for key in FAILURE_REASON_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        failed = [e for e in data.get("parties") or () if isinstance(e, dict)
                  and str(e.get("participationStatus") or "").strip().upper() == "FAILED"]
        comment = next((_event_comment(_last_event(e)) for e in failed if _event_comment(_last_event(e))), "")
        return comment or f"Autenti reports the document process as {_status_of(data)}"

    @staticmethod
    def _completed_at(state, data, signers):
        """When the process ended, as Autenti tells it (``COMPLETED_AT_FALLBACK_KEY``); None while open."""
        if state not in REQUEST_FINAL_STATES:
            return None
        if state in ("signed", "refused"):
            times = [s.changed_at for s in signers if s.state == state and s.changed_at]
            if times:
                return max(times)
        return _parse_timestamp(data.get(COMPLETED_AT_FALLBACK_KEY)) if COMPLETED_AT_FALLBACK_KEY else None

    # ------------------------------------------------------------------ files

    def list_files(self, provider_ref):
        """File records of a process (``GET …/files`` answers NDJSON, NOTES §4.6)."""
        response = self._api("GET", f"/document-processes/{_quote_process(provider_ref)}/files",
                             headers={"Accept": FILES_ACCEPT})
        try:
            values = _json_values(response.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise self._error("protocol", f"Autenti's file list for {provider_ref} cannot be read") from exc
        return [v for v in values if isinstance(v, dict)]

    def _download(self, provider_ref, record, default_name, default_mimetype):
        file_id = record.get("id")
        if not file_id:
            raise self._error("protocol", "an Autenti file record has no id")
        content = self._api("GET", f"/document-processes/{_quote_process(provider_ref)}/files/"
                                   f"{_quote_file(file_id)}/content").content
        if not content:
            raise self._error("protocol", f"Autenti returned an empty file for {file_id}")
        return Document(filename=record.get("filename") or default_name, content=content,
                        mimetype=record.get("mimeType") or default_mimetype)

    @staticmethod
    def _pick(files, purpose):
        matches = [f for f in files if f.get("filePurpose") == purpose]
        return matches[-1] if matches else None

    def download_signed(self, provider_ref, hints=None):
        files = self.list_files(provider_ref)
        record = self._pick(files, PURPOSE_SIGNED)
        if record is None:
            # It may appear a little after COMPLETED (NOTES §4.6): transient for the caller's cron.
            raise self._error("not_found", f"Autenti has no signed file ({PURPOSE_SIGNED}) for "
                              f"{provider_ref} yet")
        return self._download(provider_ref, record, "signed.pdf", "application/pdf")

    def download_evidence(self, provider_ref, hints=None):
        """[GUESS] NOTES §4.6: the signature card, else the content archive, else nothing."""
        files = self.list_files(provider_ref)
        for purpose in EVIDENCE_PURPOSES:
            record = self._pick(files, purpose)
            if record is not None:
                extension = ".zip" if EVIDENCE_MIMETYPES[purpose] == "application/zip" else ".pdf"
                return self._download(provider_ref, record, purpose.lower() + extension,
                                      EVIDENCE_MIMETYPES[purpose])
        return None

    # ------------------------------------------------------------------ cancel / remind

    def cancel(self, provider_ref, reason=""):
        """``DOCUMENT_WITHDRAWAL`` action (NOTES §4.7). Autenti takes no reason in it; ours stays local."""
        _events, challenge = self._action(provider_ref, EVENT_WITHDRAWAL)
        if challenge is not None:
            raise self._challenge_error(challenge, "withdraw the document")

    def remind(self, provider_ref):
        """Two round trips (NOTES §4.8): the action answers 403 + X-Challenge listing the parties,
        then we repeat it with a second assertion selecting every party Autenti offers."""
        _events, challenge = self._action(provider_ref, EVENT_REMINDER)
        if challenge is None:
            return  # Autenti reminded without asking whom
        classifiers = challenge.get("classifiers") or []
        attributes = challenge.get("attributes") or {}
        if CHALLENGE_REMINDER_PARTY not in classifiers or attributes.get("errors"):
            raise self._challenge_error(challenge, "send a reminder")
        ids = [o.get("id") for o in attributes.get("options") or ()
               if isinstance(o, dict) and o.get("availability") == "AVAILABLE" and o.get("id")]
        if not ids:
            raise self._error("conflict", "Autenti offers nobody to remind (no signer is waiting)",
                              status_code=403, body=challenge)
        _events, challenge = self._action(provider_ref, EVENT_REMINDER,
                                          [encode_assertion(CHALLENGE_REMINDER_PARTY, ids)])
        if challenge is not None:
            raise self._challenge_error(challenge, "send a reminder")

    # ------------------------------------------------------------------ callbacks

    def list_callbacks(self):
        """The organisation's callback registrations (``GET /applications/callbacks``)."""
        response = self._api("GET", "/applications/callbacks", headers={"Accept": "application/json"})
        try:
            values = _json_values(response.content.decode("utf-8")) if response.content else []
        except (UnicodeDecodeError, ValueError) as exc:
            raise self._error("protocol", "Autenti's callback list cannot be read") from exc
        if len(values) == 1 and isinstance(values[0], dict) and isinstance(values[0].get("content"), list):
            values = values[0]["content"]
        return [v for v in values if isinstance(v, dict)]

    def register_callback(self, url):
        """Register ``url`` once (callbacks are per organisation, at most 5; NOTES §7).

        Idempotent: returns the existing registration when the URL is already there.
        """
        if not (url or "").startswith(("https://", "http://")):
            raise self._error("config", f"the callback URL {redact_url(url)!r} is not an absolute http(s) URL")
        existing = self.list_callbacks()
        for item in existing:
            if (item.get("callbackParameters") or {}).get("callbackUrl") == url:
                return item
        if len(existing) >= MAX_CALLBACKS:
            urls = ", ".join(redact_url((i.get("callbackParameters") or {}).get("callbackUrl") or "?")
                             for i in existing)
            raise self._error("conflict", f"Autenti allows at most {MAX_CALLBACKS} callbacks per "
                              f"organisation and {len(existing)} are registered ({urls}); delete one in "
                              "Autenti first")
        body = {"callbackAdapterId": CALLBACK_ADAPTER, "callbackParameters": {"callbackUrl": url}}
        return self._api_json("POST", "/applications/callbacks", json=body) or body

    def delete_callback(self, callback_id):
        self._api("DELETE", f"/applications/callbacks/{_quote_file(callback_id)}")

    # ------------------------------------------------------------------ webhooks

    def _fetch_jwks(self):
        data = self.transport.json("GET", self.jwks_url, headers={"Accept": "application/json"})
        keys = {}
        listed = data.get("keys") if isinstance(data, dict) else None
        for jwk in listed if isinstance(listed, list) else ():
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
                continue
            if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") not in WEBHOOK_ALGORITHMS:
                continue
            try:
                numbers = rsa.RSAPublicNumbers(
                    int.from_bytes(_b64url_decode(jwk["e"]), "big"),
                    int.from_bytes(_b64url_decode(jwk["n"]), "big"))
                keys[jwk.get("kid")] = numbers.public_key()
            except (KeyError, ValueError, binascii.Error):
                continue
        if not keys:
            raise self._error("protocol", f"Autenti's webhook key set {redact_url(self.jwks_url)} has no "
                              "usable RSA key")
        return keys

    def _webhook_key(self, kid):
        now = time.time()
        with _LOCK:
            entry = _JWKS.get(self.jwks_url)
        if entry is None or entry["fetched_at"] + JWKS_TTL < now:
            try:
                keys = self._fetch_jwks()
            except ProviderError:
                if entry is None:
                    raise  # cannot verify at all: the caller answers 5xx so Autenti retries
                _logger.warning("Autenti JWKS refresh failed; using the cached keys")
            else:
                entry = {"keys": keys, "fetched_at": now, "forced_at": entry["forced_at"] if entry else 0}
                with _LOCK:
                    _JWKS[self.jwks_url] = entry
        key = self._select_key(entry["keys"], kid)
        if key is None and entry["forced_at"] + JWKS_REFETCH_COOLDOWN < now:
            keys = self._fetch_jwks()  # key rotation: refetch once
            entry = {"keys": keys, "fetched_at": now, "forced_at": now}
            with _LOCK:
                _JWKS[self.jwks_url] = entry
            key = self._select_key(keys, kid)
        if key is None:
            raise WebhookAuthError(f"Autenti webhook signed with unknown key id {kid!r}")
        return key

    @staticmethod
    def _select_key(keys, kid):
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        if not isinstance(kid, str):
            raise WebhookAuthError("Autenti webhook: the key id is not a string")
        return keys.get(kid)

    def verify_webhook(self, headers, body, query):
        """Detached compact JWS, RS256, over the raw body; key by ``kid`` from Autenti's JWKS.

        Raises :class:`WebhookAuthError`; a JWKS that cannot be fetched raises :class:`ProviderError`
        (answer 5xx so Autenti tries again).
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        value = (headers.get(WEBHOOK_SIGNATURE_HEADER) or "").strip()
        if not value:
            raise WebhookAuthError(f"missing {WEBHOOK_SIGNATURE_HEADER} header")
        parts = value.split(".")
        if len(parts) != 3 or not parts[0] or parts[1] or not parts[2]:
            raise WebhookAuthError(f"{WEBHOOK_SIGNATURE_HEADER} is not a detached compact JWS")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            signature = _b64url_decode(parts[2])
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise WebhookAuthError(f"{WEBHOOK_SIGNATURE_HEADER} cannot be decoded") from exc
        if not isinstance(header, dict):
            raise WebhookAuthError("the JWS header is not an object")
        if header.get("alg") not in WEBHOOK_ALGORITHMS:
            raise WebhookAuthError(f"JWS algorithm {header.get('alg')!r} is not accepted")
        if header.get("crit") or header.get("b64") is False:
            raise WebhookAuthError("JWS uses extensions we do not implement")
        key = self._webhook_key(header.get("kid"))
        signing_input = parts[0].encode("ascii") + b"." + _b64url(body).encode("ascii")
        try:
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise WebhookAuthError("the Autenti webhook signature does not match the body") from exc

    def parse_webhook(self, headers, body, query):
        """One :class:`Notification` per event of the JSON array (NOTES §7).

        ``status`` stays ``None``: an event names only the process; which signer acted and the signed
        file (which may lag, NOTES §4.6) come from reading the process, which the core does.
        ``reference`` stays empty: the event schema has no field for it (module docstring, "Outbox").
        """
        try:
            data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookMalformed("Autenti webhook body is not JSON") from exc
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise WebhookMalformed("Autenti webhook body is not an array of events")
        notifications = []
        for event in data:
            if not isinstance(event, dict):
                raise WebhookMalformed("an Autenti event is not an object")
            event_id, event_type = event.get("id"), event.get("eventType")
            obj = event.get("object")
            object_id = obj.get("id") if isinstance(obj, dict) else None
            if not (isinstance(event_id, str) and event_id and isinstance(event_type, str) and event_type
                    and isinstance(object_id, str) and object_id):
                raise WebhookMalformed("an Autenti event lacks id, eventType or object.id")
            notifications.append(Notification(
                dedup_key=f"autenti:{event_id}", event_type=event_type, provider_ref=object_id,
                occurred_at=_parse_timestamp(event.get("timestamp")), status=None, payload=event))
        return notifications
