"""Yousign Public API v3 client.

Source of every wire detail: ``shared/providers/yousign/NOTES.md`` (cited as "NOTES §x") and
Yousign's OpenAPI 3.0 export next to it (``openapi.json``, "Public Api v3"). Nothing of that file is
copied here; the tests validate every request we send against it at test time.

Authentication (NOTES §2): ``Authorization: Bearer <API key>``. One API key belongs to one Yousign
organisation (optionally restricted to a workspace), so individual and central mode look the same to
the API: the acting person is a *signer* we add, not a login. Sandbox and production keys differ.

Flow (NOTES §3): ``POST /signature_requests`` (draft, ``ordered_signers: true``, ``external_id`` = our
reference, unchanged) → upload the PDF (multipart, ``nature=signable_document``) → add the signers one by
one, client first, each with a signature field on the last page → ``POST …/activate``. Status:
``GET /signature_requests/{id}`` + ``GET …/signers`` (for e-mails). Signed PDF:
``GET …/documents/download?version=completed``; evidence: ``GET …/audit_trails/download``
(``merge=true``: one PDF). Cancel: ``POST …/cancel`` with a reason from Yousign's enum; remind:
``POST …/signers/{id}/send_reminder`` for the signer whose turn it is.

Outbox (``outcome_unknown``): a draft is never e-mailed to anyone, only activation sends. So when a
step after the creation fails, the draft is deleted (``DELETE`` is allowed for drafts, NOTES §3.7)
and the error promises "nothing left" only when that deletion is confirmed and activation certainly
did not happen; a lost activation answer is settled by reading the request. ``find_by_reference``
lists ``GET /signature_requests?external_id[eq]=<reference>`` (the spec's filter, operator ``eq``
[OK]): an activated request is returned, drafts left behind are deleted.

Webhooks (NOTES §4): one subscription per organisation (``POST /webhooks``), not per request. Each
delivery carries ``X-Yousign-Signature-256: sha256=<hex HMAC-SHA256(secret_key, raw body)>``; the
``event_id`` is constant across retries, so it is our de-duplication key.
"""
import datetime
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import unicodedata
import urllib.parse

from .base import (REQUEST_FINAL_STATES, Document, EnvelopeStatus, Notification, ProviderClient, ProviderError,
                   SendResult, SignerStatus, WebhookAuthError, WebhookMalformed)
from .http import HttpTransport

_logger = logging.getLogger(__name__)

PROVIDER_LABEL = "Yousign"
ACTIVATE_STEP = "activate the signature request"

# --- hosts (NOTES §1) [OK] -----------------------------------------------------------------------
SANDBOX_URL = "https://api-sandbox.yousign.app/v3"
PRODUCTION_URL = "https://api.yousign.app/v3"

# --- request building (NOTES §3.1, §3.3) ---------------------------------------------------------
DELIVERY_MODE = "email"  # Yousign e-mails the signers; "none" would make us deliver the links
DEFAULT_SIGNATURE_LEVEL = "electronic_signature"  # simple electronic signature [OK enum]
# [GUESS] (NOTES §3.3 lists the enum, not the rule): with the simple level Yousign wants an
# authentication mode; an e-mailed one-time code works for every signer without a phone number.
DEFAULT_AUTHENTICATION_MODE = "otp_email"
DEFAULT_TIMEZONE = "Europe/Paris"  # the spec's default for SignatureRequestTimeZone
SIGNER_LOCALES = ("en", "fr", "de", "it", "nl", "es", "pl")  # spec enum ``Locale`` [OK]
AUDIT_TRAIL_LOCALES = ("de", "en", "es", "fr", "it", "pt")  # spec enum ``AuditTrailLocale`` [OK]
FALLBACK_LOCALE = "en"
NAME_MAX = 128  # signature request ``name`` maxLength [OK]
CUSTOM_NOTE_MAX = 2000  # ``email_notification.custom_note`` maxLength [OK]
EXTERNAL_ID_MAX = 255  # and pattern: word characters and - @ . % + only [OK]
# Signature fields: Yousign places fields by page and coordinates (points, A4 = 595 x 842, origin at
# the top left [GUESS: origin not stated in the spec]). We do not know the template's layout, so each
# signer gets one box on the last page (``total_pages`` from the upload answer), client left, company
# right. Width >= 85 and height >= 37 are the spec's minimums [OK]. Change here if contracts get a
# dedicated signature page or smart anchors (``parse_anchors``) later.
SIGNATURE_BOXES = {
    "client": {"x": 60, "y": 660, "width": 200, "height": 80},
    "company": {"x": 330, "y": 660, "width": 200, "height": 80},
}
# [GUESS] Yousign names must match a Latin-script pattern (NOTES §3.3): letters A-Z, digits, the
# Latin-1 and Latin Extended-A letters except Ð Þ ð þ, and ` ' ( ) - and spaces. Anything else is
# transliterated (NFKD), dropped (dots, commas) or replaced by a space; a missing half becomes this
# placeholder.
MISSING_NAME_PART = "-"
_NAME_EXTRA_CHARS = set("`'()- ")
_NAME_EXCLUDED = set("\u00d0\u00d7\u00de\u00f0\u00f7\u00fe")
_NAME_DROPPED = set(".,")  # "Jr." -> "Jr", "J.R. Smith" -> "JR Smith"; others become spaces

# --- cancel (NOTES §3.7) [OK enum] ---------------------------------------------------------------
CANCEL_REASONS = ("contractualization_aborted", "errors_in_document", "other")
DEFAULT_CANCEL_REASON = "contractualization_aborted"  # used when we have no words of our own
CANCEL_NOTE_MAX = 500

# --- webhooks (NOTES §4) -------------------------------------------------------------------------
SIGNATURE_HEADER = "x-yousign-signature-256"  # headers reach us lower-cased
SIGNATURE_PREFIX = "sha256="
WEBHOOK_SECRET_LENGTH = 32  # ``secret_key`` minLength = maxLength = 32 when we choose it [OK]
# The events that move our states; "*" would also work but floods us with link_opened etc.
WEBHOOK_EVENTS = (
    "signature_request.activated", "signature_request.done", "signature_request.declined",
    "signature_request.canceled", "signature_request.expired", "signature_request.deleted",
    "signature_request.reactivated", "signer.notified", "signer.done", "signer.declined",
    "signer.error",  # [OK] Yousign failed the signature and cancelled the request itself
)

# ONE table: Yousign's states -> ours (NOTES §3.5, values [OK] from the spec's enums).
STATUS_MAP = {
    "signature_request": {
        "draft": "draft",
        "approval": "sent",  # waiting for an approver before the signers
        "ongoing": "sent",
        "done": "signed",
        "declined": "refused",  # a signer declined
        "rejected": "refused",  # an approver rejected
        "canceled": "cancelled",
        "deleted": "cancelled",
        "expired": "expired",  # [OK] can be reactivated; a reactivated request comes back "ongoing"
    },
    "signer": {
        "initiated": "waiting",  # added, not yet their turn (or request still draft)
        "notified": "pending",  # their turn, invitation sent
        "verified": "pending",  # identity checked, not signed yet
        "processing": "pending",
        "consent_given": "pending",
        # [OK] (docs, event signer.error): Yousign failed to apply the signature (internal error,
        # e.g. a corrupted document) and cancelled the request. The signer neither signed nor
        # refused, so they stay "pending"; the *request* becomes our "error" (FAILED_SIGNER_STATUSES).
        "error": "pending",
        "signed": "signed",
        "declined": "refused",
        "aborted": "waiting",  # request cancelled/expired before their turn: they never acted
    },
}
UNKNOWN_REQUEST_STATE = "sent"  # an unlisted status must not look final
UNKNOWN_SIGNER_STATE = "waiting"
REMINDABLE_SIGNER_STATUSES = ("notified",)  # the spec: reminders only for a ``notified`` signer [OK]

# --- provider failures -> our "error" (NOTES §4.1 signer.error; Yousign docs) ---------------------
# [OK] A signer in ``error`` means Yousign could not apply the signature and cancelled the request
# automatically; no request status says so (the spec's enum has none), and no field carries a message,
# so the reason is Yousign's documented explanation. It overrides only a non-final reading or the
# ``canceled`` that follows, never signed / refused / expired.
FAILED_SIGNER_STATUSES = ("error",)
FAILURE_OVERRIDES_STATES = ("sent", "cancelled")
SIGNER_ERROR_REASON = ("Yousign could not complete the signature of {who} because of an internal error "
                       "during signing (the document may be corrupted) and cancelled the signature request")

# --- completion date (EnvelopeStatus.completed_at) -----------------------------------------------
# A signature request has no completion date [OK: none in the SignatureRequest schema]. Declined:
# ``decline_information.declined_at`` [OK]; expired: ``expiration_date`` [OK]; webhooks: the event's
# ``event_time`` [OK]. Done, read by get_status: the last signer's audit trail (JSON), field
# ``signer.signature_process_completed_at`` [GUESS: only in the spec's example; the schema says
# "object"]. One extra GET per completed read; switch off here if Yousign drops the field.
COMPLETION_FROM_AUDIT_TRAIL = True

# --- outbox: finding a request by our reference (NOTES §3.5; spec GET /signature_requests) ---------
# [OK] the listing filters ``external_id[eq]=…`` (deepObject, operator ``eq`` only) and pages with a
# cursor (``after``, ``meta.next_cursor``, ``limit`` 1..100).
LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_PAGES = 5  # ours: one reference has one or two requests; more means we cannot tell
# Statuses only an activation can lead to [OK docs: cancel needs approval/ongoing; rejection, decline
# and completion need invited people; the validity period runs from activation].
STARTED_STATUSES = ("approval", "ongoing", "done", "declined", "rejected", "expired", "canceled")
# ``deleted`` is ambiguous (drafts and finished requests can be deleted, ongoing ones cannot [OK]).
# [GUESS] signers of a request never activated are all still ``initiated`` (notification happens on
# activation), so a deleted request with any other signer status was started.
NEVER_ACTIVATED_SIGNER_STATUSES = ("initiated",)
# Our drafts are deleted for good (``permanent_delete=true`` [OK]): a soft-deleted draft stays listed
# under our reference and could be reactivated from Yousign's app.
DELETE_DRAFTS_PERMANENTLY = True


# --- error bodies --------------------------------------------------------------------------------


def error_detail(response):
    """A readable message from Yousign's ``{type, detail}`` or 429 ``{message}`` (NOTES §6)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        detail = data.get("detail")
        kind = data.get("type")
        if isinstance(detail, str) and detail:
            text = f"{detail} [{kind}]" if isinstance(kind, str) and kind and kind != detail else detail
            # [GUESS] some validation answers are said to list offending properties; show them if so.
            violations = data.get("violations") or data.get("errors")
            if isinstance(violations, list) and violations:
                parts = []
                for item in violations[:5]:
                    if isinstance(item, dict):
                        where = item.get("property_path") or item.get("propertyPath") or item.get("field")
                        what = item.get("message") or item.get("title") or json.dumps(item)
                        parts.append(f"{where}: {what}" if where else str(what))
                    else:
                        parts.append(str(item))
                text = f"{text} ({'; '.join(parts)})"
            return text
        message = data.get("message")
        if isinstance(message, str) and message:
            return message
        if isinstance(kind, str) and kind:
            return kind
        return json.dumps(data)[:500]
    text = (getattr(response, "text", "") or "").strip()
    return text[:500] or (response.reason or "")


# --- small helpers -------------------------------------------------------------------------------


def parse_datetime(value):
    """ISO timestamps or unix seconds (webhook ``event_time``) as naive UTC."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            return datetime.datetime.fromtimestamp(int(value), datetime.timezone.utc).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed


def map_request_state(status):
    return STATUS_MAP["signature_request"].get((status or "").lower(), UNKNOWN_REQUEST_STATE)


def map_signer_state(status):
    return STATUS_MAP["signer"].get((status or "").lower(), UNKNOWN_SIGNER_STATE)


def _name_char_allowed(char):
    if char.isascii():
        return char.isalnum() or char in _NAME_EXTRA_CHARS
    return "\u00c0" <= char <= "\u017f" and char not in _NAME_EXCLUDED


def clean_name_part(value):
    """One name half made acceptable to Yousign's name pattern (see ``_name_char_allowed``)."""
    out = []
    for char in value or "":
        if _name_char_allowed(char):
            out.append(char)
            continue
        decomposed = "".join(c for c in unicodedata.normalize("NFKD", char) if _name_char_allowed(c))
        out.append(decomposed or ("" if char in _NAME_DROPPED else " "))
    return re.sub(r"\s+", " ", "".join(out)).strip()[:255]


def signer_names(signer):
    first, last = signer.split_name()
    first, last = clean_name_part(first), clean_name_part(last)
    return first or MISSING_NAME_PART, last or MISSING_NAME_PART


def locale_for(language, allowed=SIGNER_LOCALES):
    code = (language or "").replace("-", "_").split("_")[0].lower()
    return code if code in allowed else FALLBACK_LOCALE


def clean_external_id(reference):
    """Our reference within ``external_id``'s pattern (word chars and ``-@.%+``)."""
    return re.sub(r"[^\w\-@.%+]", "-", reference or "", flags=re.ASCII)[:EXTERNAL_ID_MAX]


def is_valid_external_id(reference):
    """True when Yousign can keep ``reference`` as ``external_id`` unchanged.

    It must come back unchanged in webhooks and the lookup: an altered value would match nothing.
    """
    return bool(reference) and clean_external_id(reference) == reference


def was_activated(request_data):
    """True when the signature request was activated (sent to its signers) at some point."""
    status = (request_data or {}).get("status")
    if status in STARTED_STATUSES:
        return True
    if status != "deleted":
        return False
    return any(isinstance(s, dict) and s.get("status") not in NEVER_ACTIVATED_SIGNER_STATUSES
               for s in request_data.get("signers") or ())


def completion_date(request_data):
    """When the request reached its outcome, where the request itself says so (see the constants)."""
    status = (request_data.get("status") or "").lower()
    decline = request_data.get("decline_information")
    if status == "declined" and isinstance(decline, dict):
        return parse_datetime(decline.get("declined_at"))
    if status == "expired":
        return parse_datetime(request_data.get("expiration_date"))
    return None


def _filename_from_disposition(value):
    if not value:
        return ""
    match = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", value, re.I)
    if match:
        return urllib.parse.unquote(match.group(1).strip().strip('"'))
    match = re.search(r'filename="?([^";]+)"?', value, re.I)
    return match.group(1).strip() if match else ""


def signer_statuses(request_data, signers_data=None, decline=None):
    """Our :class:`SignerStatus` list from a signature request's ``signers`` (``{id, status}``),
    completed with the full signer objects (``GET …/signers``: e-mail, link) when we have them."""
    details = {s.get("id"): s for s in (signers_data or ()) if isinstance(s, dict) and s.get("id")}
    listed = [s for s in (request_data or {}).get("signers") or () if isinstance(s, dict) and s.get("id")]
    if not listed:
        listed = list(details.values())
    decline = decline if isinstance(decline, dict) else {}
    result = []
    for item in listed:
        full = details.get(item["id"], {})
        status = item.get("status") or full.get("status")
        state = map_signer_state(status)
        info = full.get("info") or item.get("info") or {}
        declined_here = decline.get("signer_id") == item["id"]
        email = (info.get("email") or "").strip()
        reason = (decline.get("reason") or "") if declined_here else ""
        if status in FAILED_SIGNER_STATUSES:
            reason = SIGNER_ERROR_REASON.format(who=email or "a signer")
        result.append(SignerStatus(
            state=state,
            provider_ref=item["id"],
            email=email,
            changed_at=parse_datetime(decline.get("declined_at")) if declined_here else None,
            reason=reason,
            signing_url=full.get("signature_link") or item.get("signature_link") or "",
        ))
    return tuple(result)


def _failed_signer(request_data, signers):
    """The signer Yousign failed (status ``error``), as our :class:`SignerStatus`, or ``None``."""
    failed_ids = {s.get("id") for s in (request_data or {}).get("signers") or ()
                  if isinstance(s, dict) and s.get("status") in FAILED_SIGNER_STATUSES}
    return next((s for s in signers if s.provider_ref in failed_ids), None)


def build_status(request_id, request_data, signers_data=None, completed_at=None):
    """Our :class:`EnvelopeStatus` from ``GET /signature_requests/{id}`` (+ ``…/signers``)."""
    request_data = request_data if isinstance(request_data, dict) else {}
    provider_state = (request_data.get("status") or "").lower()
    decline = request_data.get("decline_information")
    signers = signer_statuses(request_data, signers_data, decline)
    state = map_request_state(provider_state)
    reason = (decline.get("reason") or "") if isinstance(decline, dict) else ""
    failed = _failed_signer(request_data, signers)
    if failed is not None and state in FAILURE_OVERRIDES_STATES:
        state, reason = "error", failed.reason
    return EnvelopeStatus(provider_ref=request_data.get("id") or request_id, state=state,
                          signers=signers, provider_state=provider_state, reason=reason,
                          raw={"signature_request": request_data, "signers": signers_data or []},
                          completed_at=completed_at or completion_date(request_data),
                          reference=request_data.get("external_id") or "")


# --- the client ----------------------------------------------------------------------------------


class YousignClient(ProviderClient):
    """Yousign client for one API key (= one organisation, optionally one workspace).

    ``webhook_secret``: the subscription's ``secret_key`` (a string, or several during a rotation);
    needed only to verify webhooks. ``signature_level`` / ``authentication_mode`` apply to every
    signer we add (spec enums). ``timezone`` is sent with each request (dates in Yousign's e-mails).
    """

    calls_per_send = 5  # create, upload, one call per signer (2), activate

    code = "yousign"
    can_find_by_reference = True  # GET /signature_requests?external_id[eq]=… [OK]

    def __init__(self, base_url=SANDBOX_URL, api_key="", webhook_secret=None, workspace_id="",
                 signature_level=DEFAULT_SIGNATURE_LEVEL, authentication_mode=DEFAULT_AUTHENTICATION_MODE,
                 timezone=DEFAULT_TIMEZONE, timeout=(5.0, 30.0), max_retries=2, sleep=time.sleep,
                 session=None):
        self.base_url = (base_url or "").rstrip("/")
        self.api_key = (api_key or "").strip()
        if isinstance(webhook_secret, str):
            webhook_secret = [webhook_secret]
        self.webhook_secrets = [s for s in (webhook_secret or ()) if s]
        self.workspace_id = (workspace_id or "").strip()
        self.signature_level = signature_level or DEFAULT_SIGNATURE_LEVEL
        self.authentication_mode = authentication_mode
        self.timezone = timezone or DEFAULT_TIMEZONE
        self._transport_options = dict(timeout=timeout, max_retries=max_retries, sleep=sleep,
                                       session=session, error_detail=error_detail)
        self._http = None

    def _error(self, kind, detail, **kwargs):
        return ProviderError(kind, detail, provider=PROVIDER_LABEL, **kwargs)

    @property
    def http(self):
        if self._http is None:
            if not self.api_key:
                raise self._error("config", "no Yousign API key is configured")
            self._http = HttpTransport(self.base_url, PROVIDER_LABEL, **self._transport_options)
        return self._http

    def _headers(self, json_body=False):
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _call(self, method, path, body=None, **kwargs):
        """One JSON call; anything unexpected becomes a :class:`ProviderError`."""
        headers = self._headers(json_body=body is not None)
        if body is not None:
            kwargs["data"] = json.dumps(body)
        try:
            return self.http.json(method, path, headers=headers, **kwargs)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - the contract is ProviderError only
            # The type only: a library's message may quote the URL or the headers.
            raise self._error("protocol", f"{method} {path}: {type(exc).__name__}") from exc

    @staticmethod
    def _path(*parts):
        return "/" + "/".join(urllib.parse.quote(str(p), safe="") for p in parts)

    # ------------------------------------------------------------------ send

    def build_request_body(self, envelope):
        """``CreateSignatureRequest`` for our envelope (NOTES §3.1)."""
        body = {
            "name": (envelope.title or envelope.reference or "Contract").strip()[:NAME_MAX] or "Contract",
            "delivery_mode": DELIVERY_MODE,
            "ordered_signers": True,
            "signers_allowed_to_decline": True,  # refusal is part of our flow
            "timezone": self.timezone,
            "external_id": self.external_id_for(envelope.reference),
            "audit_trail_locale": locale_for(envelope.language, AUDIT_TRAIL_LOCALES),
        }
        if envelope.message:
            body["email_notification"] = {"custom_note": envelope.message[:CUSTOM_NOTE_MAX]}
        if envelope.expires_at:
            body["expiration_date"] = envelope.expires_at.strftime("%Y-%m-%d")
        if self.workspace_id:
            body["workspace_id"] = self.workspace_id
        return body

    def build_signer_body(self, signer, envelope, document_id, page):
        """``CreateSigner`` "from scratch" with one signature field (NOTES §3.3)."""
        first, last = signer_names(signer)
        info = {"first_name": first, "last_name": last, "email": (signer.email or "").strip(),
                "locale": locale_for(envelope.language)}
        if signer.phone:
            info["phone_number"] = re.sub(r"[^\d+]", "", signer.phone)
        box = SIGNATURE_BOXES.get(signer.role, SIGNATURE_BOXES["client"])
        body = {
            "info": info,
            "signature_level": self.signature_level,
            "fields": [dict(type="signature", document_id=document_id, page=page, **box)],
        }
        if self.signature_level == DEFAULT_SIGNATURE_LEVEL and self.authentication_mode:
            body["signature_authentication_mode"] = self.authentication_mode
        return body

    def external_id_for(self, reference):
        """``reference`` as Yousign's ``external_id``, unchanged, or a ``config`` error."""
        if not is_valid_external_id(reference):
            raise self._error("config", f"the reference {reference!r} cannot be Yousign's external_id "
                                        f"(1 to {EXTERNAL_ID_MAX} letters, digits, _ - @ . % +)")
        return reference

    def _check_envelope(self, envelope):
        self.external_id_for(envelope.reference)
        signers = envelope.ordered_signers()
        if not signers:
            raise self._error("config", "the envelope has no signers")
        for signer in signers:
            if signer.action != "sign":
                raise self._error("config", f"Yousign signers can only sign; {signer.email} is set to "
                                            f"'{signer.action}'")
            if not (signer.email or "").strip():
                raise self._error("config", f"signer {signer.name or signer.key} has no e-mail address")
        if not envelope.document or not envelope.document.content:
            raise self._error("config", "the envelope has no document")
        return signers

    def send(self, envelope):
        signers = self._check_envelope(envelope)
        request_id = self._create_draft(self.build_request_body(envelope))
        step = "upload the document"
        added = []
        try:
            document = self._upload(request_id, envelope.document)
            document_id = document.get("id")
            if not document_id:
                raise self._error("protocol", "Yousign's answer to the upload has no document id")
            page = document.get("total_pages") or 1
            for signer in signers:
                step = f"add signer {signer.email}"
                data = self._call("POST", self._path("signature_requests", request_id, "signers"),
                                  self.build_signer_body(signer, envelope, document_id, page))
                if not isinstance(data, dict) or not data.get("id"):
                    raise self._error("protocol", f"Yousign's answer to adding {signer.email} has no signer id")
                added.append((signer, data))
            step = ACTIVATE_STEP
            activated = self._call("POST", self._path("signature_requests", request_id, "activate"))
        except ProviderError as error:
            return self._recover(request_id, step, error, added)
        return self._send_result(request_id, added, activated)

    def _create_draft(self, body):
        """``POST /signature_requests``; the new draft's id.

        A draft is harmless (nobody is invited before activation), but one we cannot name is left
        behind: the error then says so, and :meth:`find_by_reference` deletes it before a new send.
        """
        where = (f"a draft signature request with external_id {body['external_id']} may exist at "
                 "Yousign (it is found by that id and deleted before sending again)")
        try:
            created = self._call("POST", "/signature_requests", body)
        except ProviderError as error:
            if error.outcome_unknown:
                error.detail = f"{error.detail}; {where}"
            raise
        request_id = created.get("id") if isinstance(created, dict) else None
        if not request_id:
            raise self._error("protocol", f"Yousign's answer to the creation has no signature request id; {where}",
                              outcome_unknown=True)
        return request_id

    def _upload(self, request_id, document):
        filename = document.filename or "document.pdf"
        files = {"file": (filename, document.content, document.mimetype or "application/pdf")}
        try:
            # multipart: requests sets the boundary; only the bearer header is ours.
            response = self.http.request("POST", self._path("signature_requests", request_id, "documents"),
                                         headers=self._headers(), files=files,
                                         data={"nature": "signable_document"})
            data = response.json()
        except ProviderError:
            raise
        except ValueError as exc:
            raise self._error("protocol", "Yousign's answer to the upload is not JSON") from exc
        except Exception as exc:  # noqa: BLE001
            raise self._error("protocol", f"document upload: {type(exc).__name__}") from exc
        if not isinstance(data, dict):
            raise self._error("protocol", "Yousign's answer to the upload is not an object")
        return data

    def _send_result(self, request_id, added, activated):
        links = {s.get("id"): s for s in (activated or {}).get("signers") or () if isinstance(s, dict)}
        signers = []
        for signer, data in added:
            live = links.get(data["id"], {})
            signers.append(SignerStatus(
                state=map_signer_state(live.get("status") or data.get("status")),
                key=signer.key, provider_ref=data["id"], email=signer.email,
                signing_url=live.get("signature_link") or "",
            ))
        return SendResult(provider_ref=request_id, signers=tuple(signers),
                          raw={"signature_request": activated or {"id": request_id}})

    def _recover(self, request_id, step, error, added):
        """After a failed step: return the result if Yousign activated the request after all,
        otherwise delete the draft and raise ``error`` reworded, saying what is left at Yousign.

        ``outcome_unknown`` is False only when the draft is confirmed gone: a deleted request cannot
        be activated, and Yousign refuses to delete one that is ongoing, so nothing can be out.
        """
        if step == ACTIVATE_STEP and error.outcome_unknown:
            current = self._read_request_or_none(request_id)
            if current is not None and was_activated(current):
                _logger.info("Yousign %s: the activation answer was lost, but the request is %s",
                             request_id, current.get("status"))
                return self._send_result(request_id, added, current)
        gone, current, cleanup_error = self._discard_draft(request_id)
        if current is not None and was_activated(current):
            _logger.info("Yousign %s: activated although %s failed", request_id, step)
            return self._send_result(request_id, added, current)
        if gone:
            left = f"the draft signature request {request_id} was deleted at Yousign"
        else:
            left = (f"the draft signature request {request_id} is still at Yousign and could not be "
                    f"deleted ({cleanup_error.detail or cleanup_error.kind}); delete it in Yousign before "
                    "sending again")
        raise ProviderError(error.kind, f"could not {step}: {error.detail or error.kind}; {left}",
                            status_code=error.status_code, provider=PROVIDER_LABEL,
                            retry_after=error.retry_after, body=error.body,
                            outcome_unknown=not gone) from error

    def _read_request_or_none(self, request_id):
        """``GET /signature_requests/{id}``, or ``None`` when the read fails (the caller decides)."""
        try:
            data = self._call("GET", self._path("signature_requests", request_id))
        except ProviderError as error:
            _logger.info("Yousign %s: status read failed (%s)", request_id, error.kind)
            return None
        return data if isinstance(data, dict) else None

    def _discard_draft(self, request_id):
        """Delete a draft of ours; ``(gone, current, error)``.

        ``gone`` is True only when Yousign confirms it (204, or a read that finds it deleted or no
        more). When the deletion fails, ``current`` is the request as read then (``None`` if that
        read failed too): Yousign refuses to delete an ongoing request, so it may show that an
        activation went through after all. ``error`` is the deletion's failure.
        """
        path = self._path("signature_requests", request_id)
        params = {"permanent_delete": "true"} if DELETE_DRAFTS_PERMANENTLY else None
        try:
            self.http.request("DELETE", path, headers=self._headers(), params=params)
            return True, None, None
        except ProviderError as error:
            cleanup_error = error
        # The deletion may have worked although its answer was lost (then a retried DELETE of a
        # purged request answers 404): read what is there now.
        try:
            current = self._call("GET", path)
        except ProviderError as error:
            return error.kind == "not_found", None, cleanup_error
        current = current if isinstance(current, dict) else None
        gone = current is not None and current.get("status") == "deleted" and not was_activated(current)
        return gone, current, cleanup_error

    # ------------------------------------------------------------------ outbox look-up

    def find_by_reference(self, reference):
        """The activated signature request whose ``external_id`` is ``reference``, or ``None``.

        Drafts found under the reference (left by a send that failed midway) are deleted first, so a
        new send cannot meet them; if one cannot be deleted, we cannot tell and raise.
        """
        external_id = self.external_id_for(reference)
        found = [r for r in self._list_by_external_id(external_id) if r.get("external_id") == external_id]
        started = [r for r in found if was_activated(r)]
        for draft in (r for r in found if r.get("status") == "draft"):
            current = self._discard_found_draft(draft)
            if current is not None:
                started.append(current)
        if not started:
            return None
        chosen = max(started, key=lambda r: r.get("created_at") or "")
        if len(started) > 1:
            _logger.warning("Yousign: %d activated signature requests carry external_id %s; using %s",
                            len(started), external_id, chosen["id"])
        signers_data = self._call("GET", self._path("signature_requests", chosen["id"], "signers"))
        signers_data = signers_data if isinstance(signers_data, list) else []
        return SendResult(provider_ref=chosen["id"], signers=signer_statuses(chosen, signers_data),
                          raw={"signature_request": chosen, "signers": signers_data})

    def _discard_found_draft(self, draft):
        """Delete a draft met by the look-up; the request if it turned out activated, else ``None``."""
        gone, current, cleanup_error = self._discard_draft(draft["id"])
        if gone:
            _logger.info("Yousign %s: deleted a draft left behind for external_id %s", draft["id"],
                         draft.get("external_id"))
            return None
        if current is not None and was_activated(current):
            return current
        raise ProviderError(cleanup_error.kind,
                            f"a draft signature request {draft['id']} is left at Yousign for this reference "
                            f"and could not be deleted ({cleanup_error.detail or cleanup_error.kind}); "
                            "cannot tell yet whether it will be sent", status_code=cleanup_error.status_code,
                            provider=PROVIDER_LABEL, retry_after=cleanup_error.retry_after) from cleanup_error

    def _list_by_external_id(self, external_id):
        """Every signature request listed under ``external_id`` (all pages, or raise)."""
        params = {"external_id[eq]": external_id, "limit": LOOKUP_PAGE_SIZE}
        found = []
        for _page in range(LOOKUP_MAX_PAGES):
            data = self._call("GET", "/signature_requests", params=params)
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise self._error("protocol", "Yousign's list of signature requests has no data")
            found.extend(item for item in items if isinstance(item, dict) and item.get("id"))
            meta = data.get("meta")
            cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
            if not cursor:
                return found
            params = {**params, "after": cursor}
        raise self._error("protocol", f"more than {LOOKUP_MAX_PAGES * LOOKUP_PAGE_SIZE} signature requests "
                                      f"carry external_id {external_id}: cannot tell which one is ours")

    # ------------------------------------------------------------------ status

    def get_status(self, provider_ref):
        request_data = self._call("GET", self._path("signature_requests", provider_ref))
        if not isinstance(request_data, dict) or not request_data.get("status"):
            raise self._error("protocol", f"Yousign's answer for {provider_ref} has no status")
        signers_data = self._call("GET", self._path("signature_requests", provider_ref, "signers"))
        if not isinstance(signers_data, list):
            signers_data = []
        completed_at = None
        if request_data["status"].lower() == "done" and COMPLETION_FROM_AUDIT_TRAIL:
            completed_at = self._completed_at_from_audit_trail(provider_ref, request_data)
        return build_status(provider_ref, request_data, signers_data, completed_at=completed_at)

    def _completed_at_from_audit_trail(self, provider_ref, request_data):
        """When the last signer finished signing, from their audit trail (see the constant).

        Signers sign in the order they were added (``ordered_signers``), so the last one listed
        completed the request. The date is a detail: a failed read costs it, not the status.
        """
        listed = [s for s in request_data.get("signers") or () if isinstance(s, dict) and s.get("id")]
        if not listed:
            return None
        path = self._path("signature_requests", provider_ref, "signers", listed[-1]["id"], "audit_trails")
        try:
            trail = self._call("GET", path)
        except ProviderError as error:
            _logger.info("Yousign %s: no completion date, the audit trail read failed (%s)", provider_ref,
                         error.kind)
            return None
        signer = trail.get("signer") if isinstance(trail, dict) else None
        return parse_datetime(signer.get("signature_process_completed_at")) if isinstance(signer, dict) else None

    # ------------------------------------------------------------------ documents

    def _download(self, path, params, default_name, suffix=""):
        try:
            response = self.http.request("GET", path, params=params,
                                         headers={"Authorization": f"Bearer {self.api_key}",
                                                  "Accept": "application/pdf, application/zip"})
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error("protocol", f"download: {type(exc).__name__}") from exc
        if not response.content:
            raise self._error("protocol", f"Yousign sent an empty file for {path}")
        mimetype = (response.headers.get("Content-Type") or "application/pdf").split(";")[0].strip()
        filename = _filename_from_disposition(response.headers.get("Content-Disposition")) or default_name
        stem, _dot, _ext = filename.rpartition(".")
        stem = stem or filename
        if suffix and suffix not in stem.lower():
            stem = f"{stem}-{suffix}"  # Yousign may name the signed file like the original
        filename = stem + (".zip" if mimetype == "application/zip" else ".pdf")
        return Document(filename=filename, content=response.content, mimetype=mimetype)

    def download_signed(self, provider_ref, hints=None):
        """The completed (signed) document; Yousign serves it only once the request is ``done``."""
        return self._download(self._path("signature_requests", provider_ref, "documents", "download"),
                              {"version": "completed"}, f"document-{provider_ref}.pdf", suffix="signed")

    def download_evidence(self, provider_ref, hints=None):
        """All signers' audit trails merged into one PDF (only once the request is ``done``)."""
        return self._download(self._path("signature_requests", provider_ref, "audit_trails", "download"),
                              {"merge": "true"}, f"audit-trail-{provider_ref}.pdf")

    # ------------------------------------------------------------------ cancel / remind

    def cancel(self, provider_ref, reason=""):
        """``reason`` may be one of Yousign's reasons; any other text goes as ``other`` + note."""
        text = (reason or "").strip()
        if text in CANCEL_REASONS:
            body = {"reason": text}
        elif text:
            body = {"reason": "other", "custom_note": text[:CANCEL_NOTE_MAX]}
        else:
            body = {"reason": DEFAULT_CANCEL_REASON}
        self._call("POST", self._path("signature_requests", provider_ref, "cancel"), body)

    def remind(self, provider_ref):
        """Remind every signer whose turn it is (with ordered signers: exactly one)."""
        request_data = self._call("GET", self._path("signature_requests", provider_ref))
        if not isinstance(request_data, dict):
            raise self._error("protocol", f"Yousign's answer for {provider_ref} is not an object")
        if request_data.get("status") != "ongoing":
            raise self._error("conflict", f"the signature request is {request_data.get('status')}, "
                                          "reminders are only possible while it is ongoing")
        due = [s["id"] for s in request_data.get("signers") or ()
               if isinstance(s, dict) and s.get("id") and s.get("status") in REMINDABLE_SIGNER_STATUSES]
        if not due:
            raise self._error("conflict", "no signer is currently waiting for an invitation to sign")
        for signer_id in due:
            self._call("POST", self._path("signature_requests", provider_ref, "signers", signer_id,
                                          "send_reminder"))

    # ------------------------------------------------------------------ webhooks

    def register_webhook(self, url, secret=None, description="Odoo e-signature", sandbox=None,
                         events=WEBHOOK_EVENTS):
        """Subscribe ``url`` to our events (NOTES §4.1); returns ``(subscription id, secret_key)``.

        Organisation-wide: call once per API key, not per request. ``secret`` (32 characters) lets us
        choose the HMAC key; without it Yousign generates one and returns it. ``sandbox`` defaults to
        "the base URL is not production". Yousign accepts only https endpoints with a valid
        certificate.
        """
        if secret is not None and len(secret) != WEBHOOK_SECRET_LENGTH:
            raise self._error("config", f"a Yousign webhook secret must be {WEBHOOK_SECRET_LENGTH} characters")
        body = {
            "endpoint": url,
            "description": (description or "")[:128],
            "sandbox": (self.base_url != PRODUCTION_URL) if sandbox is None else bool(sandbox),
            "enabled": True,
            "auto_retry": True,
            "scopes": ["*"],
            "subscribed_events": list(events) or ["*"],
        }
        if secret:
            body["secret_key"] = secret
        data = self._call("POST", "/webhooks", body)
        if not isinstance(data, dict) or not data.get("id"):
            raise self._error("protocol", "Yousign's answer to the webhook subscription has no id")
        return data["id"], data.get("secret_key") or secret or ""

    @staticmethod
    def new_webhook_secret():
        """A random 32-character secret for :meth:`register_webhook`."""
        return secrets.token_hex(WEBHOOK_SECRET_LENGTH // 2)

    @staticmethod
    def sign_webhook_body(secret, body):
        """The ``X-Yousign-Signature-256`` value for ``body`` (NOTES §4.3)."""
        return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    def verify_webhook(self, headers, body, query):
        if not self.webhook_secrets:
            raise WebhookAuthError("no Yousign webhook secret is configured")
        given = ((headers or {}).get(SIGNATURE_HEADER) or "").strip()
        if not given:
            raise WebhookAuthError("the X-Yousign-Signature-256 header is missing")
        given = given.lower().encode()
        body = body or b""
        for secret in self.webhook_secrets:
            if hmac.compare_digest(self.sign_webhook_body(secret, body).encode(), given):
                return
        raise WebhookAuthError("the X-Yousign-Signature-256 signature does not match")

    def parse_webhook(self, headers, body, query):
        try:
            data = json.loads((body or b"").decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookMalformed(f"the Yousign notification is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise WebhookMalformed("the Yousign notification is not a JSON object")
        event_id, event_name = data.get("event_id"), data.get("event_name")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_name, str) or not event_name:
            raise WebhookMalformed("the Yousign notification has no event_id or event_name")
        payload = data.get("data")
        if payload is not None and not isinstance(payload, dict):
            raise WebhookMalformed("the Yousign notification's data is not an object")
        payload = payload or {}
        request_data = payload.get("signature_request")
        request_data = request_data if isinstance(request_data, dict) else {}
        provider_ref = request_data.get("id") or ""
        occurred_at = parse_datetime(data.get("event_time"))
        # Only an activated request names our reference: the events of a draft we deleted after a
        # failed send (``signature_request.deleted``) must not reach the request that sends again.
        reference = (request_data.get("external_id") or "") if was_activated(request_data) else ""
        status = None
        if provider_ref and request_data.get("status"):
            status = self._status_from_event(request_data, payload.get("signer"), occurred_at, reference)
        return [Notification(
            dedup_key=f"yousign:{event_id}",
            event_type=event_name,
            provider_ref=provider_ref,
            occurred_at=occurred_at,
            status=status,
            payload=data,
            reference=reference,
        )]

    @staticmethod
    def _status_from_event(request_data, signer_data, occurred_at, reference):
        """What the event alone says: the request's status, its signers' ``{id, status}`` if listed,
        and the event's signer (with e-mail) for ``signer.*`` events. An event that brings an outcome
        dates it (``event_time`` is when it happened, constant across retries)."""
        signer_data = signer_data if isinstance(signer_data, dict) and signer_data.get("id") else None
        listed = [s for s in request_data.get("signers") or () if isinstance(s, dict) and s.get("id")]
        if signer_data:
            listed = [s for s in listed if s["id"] != signer_data["id"]] + [signer_data]
        status = build_status(request_data["id"], {**request_data, "signers": listed},
                              [signer_data] if signer_data else None)
        completed_at = status.completed_at
        if completed_at is None and status.state in REQUEST_FINAL_STATES:
            completed_at = occurred_at
        return EnvelopeStatus(provider_ref=status.provider_ref, state=status.state, signers=status.signers,
                              provider_state=status.provider_state, reason=status.reason,
                              completed_at=completed_at, reference=reference)
