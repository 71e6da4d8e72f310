"""Signi (signi.com, formerly iSmlouva) client.

Source of every wire detail: ``shared/providers/signi/NOTES.md`` (cited as "NOTES §x"). Signi's own
endpoint reference was not available; field names and enumerations come from Signi's help pages
and from NETWORG's Power Automate connector (a *proxy* in front of Signi, NOTES §0/S6). Every point
the notes mark [GUESS] is a module constant below, so it can be changed in one place once Signi
confirms it.

Flow (NOTES §3.1/3.2): one ``multipart/form-data`` call ``POST /contract/?type=doc`` with a JSON
part ``data`` and the document part ``uploaded_file_key``. Signing order "client first, company
second" is Signi's option A: the workspace's *proposer* (a member of the workspace, typically its
founder) only approves, automatically; the client is counterparty ``party_order`` 1, the company's
signer counterparty ``party_order`` 2, ``signing_order: one_at_a_time``.

Accounts (NOTES §1/§2): one API key per **workspace**, not per user. In both of our modes the same
key acts; what differs is only who the company's counterparty is (the salesperson in individual
mode, the representative in central mode) - that person needs no Signi account.

Webhooks (NOTES §4): registered per contract (one URL per outcome) and **not signed**. We therefore
hand Signi URLs carrying an unguessable per-request token (``envelope.callback_url`` already holds
``?token=...``; we add ``&event=completed|rejected|expired&ref=<our reference>``). See
:meth:`SigniClient.verify_webhook`. Because nothing proves who wrote the *body*, its claims (state,
rejection message) are never applied: :meth:`SigniClient.parse_webhook` returns notifications without
a ``status``, and the core reads the contract from Signi's API with our key before acting.

Our reference (outbox, NOTES §3.1/§4):

* **Sent** as the contract's ``number`` ("Contract number", a free string: [2nd], the proxy's schema;
  the only field of the create call that holds a value of ours - no external id, metadata or tags
  exist there) and as the ``ref`` query parameter of every callback URL (Signi keeps the query
  string we register [OK]; its callback body carries only ``contract_id``, ``state``, ``file``,
  ``attachments``, ``message`` [OK]/[2nd]). Notifications therefore name it; the contract detail
  does only if Signi echoes ``number`` there ([GUESS]: the proxy's detail shows no ``number``).
* **No look-up by reference**: none of our sources shows a call that lists or searches contracts
  (Signi's help examples and the Make modules quoted in NOTES [OK]: create, get one by id, download,
  history, delete; the proxy's swagger [2nd]: detail by id only; third-party clients [GUESS]: the
  same). The only read is ``GET /contract/{contract_id}``, and the id is what a lost answer loses.
  So :attr:`SigniClient.can_find_by_reference` stays False (confidence: medium - Signi's own endpoint
  reference was not available). After a send whose outcome is unknown, someone must look in the
  Signi workspace for a contract numbered with our reference before it is sent again.
"""
import datetime
import json
import logging
import re
import time
import urllib.parse
import zoneinfo

from .base import (REQUEST_FINAL_STATES, Document, EnvelopeStatus, Notification, ProviderClient,
                   ProviderError, SendResult, SignerStatus, WebhookAuthError, WebhookMalformed, body_digest)
from .callbacks import REFERENCE_QUERY_PARAM, callback_query, query_value, reference_from_query
from .http import HttpTransport, default_error_detail, redact_url

_logger = logging.getLogger(__name__)

PROVIDER_LABEL = "Signi"

# --- hosts (NOTES §1, [OK]) ---------------------------------------------------------------------
PRODUCTION_URL = "https://api.signi.com/api/v1"
# There is no separate sandbox host: tests run in a DEMO workspace on production, with its own key.
SANDBOX_URL = PRODUCTION_URL

# --- authentication (NOTES §2, [OK]) ------------------------------------------------------------
API_KEY_HEADER = "x-api-key"

# --- create (NOTES §3.1, [OK] unless marked) ----------------------------------------------------
CREATE_PATH = "/contract/"
CREATE_QUERY = {"type": "doc"}
DATA_PART = "data"  # a JSON *file* part
FILE_PART = "uploaded_file_key"
ACCEPTED_EXTENSIONS = (".pdf", ".doc", ".docx", ".odt")  # NOTES §3.1 [OK]
# [GUESS] NOTES §3.1: help examples use both "name" and "contract_name"; the proxy's schema and most
# examples say "name".
CONTRACT_NAME_FIELD = "name"
LOCALES = ("cs", "en", "sk", "pl", "hu", "ru", "vi")  # [2nd] enum of the proxy
DEFAULT_LOCALE = "en"
INITIAL_STATE = "pending"  # Signi e-mails the signers at once [OK]
SIGNING_ORDER = "one_at_a_time"
# [GUESS] NOTES §3.2: that one_at_a_time follows party_order ascending is consistent with the
# examples, not confirmed. The client gets FIRST_PARTY_ORDER, the next sequence +1, ...
FIRST_PARTY_ORDER = 1
# We do not know where the signature belongs in an arbitrary PDF, so we let Signi append the
# signature fields at the end ("missing_positions", [2nd] enum error|append_to_the_end).
MISSING_POSITIONS = "append_to_the_end"
CONTRACT_ROLE_BY_ACTION = {"sign": "sign", "approve": "approve"}  # Signi has no "view" role
PROPOSER_ROLE = "approve"  # option A: the proposer only approves (NOTES §3.2 [OK])
PERSON_NATURAL = "nature"
PERSON_LEGAL = "legal"
# [GUESS] Czech legal entities' VAT id (DIČ) is "CZ" + their company id (IČ); derive ``ic`` from it.
DERIVE_CZ_COMPANY_ID = True

# --- webhooks (NOTES §4) --------------------------------------------------------------------------
WEBHOOK_EVENTS = ("completed", "rejected", "expired")
EVENT_QUERY_PARAM = "event"  # what we add to the callback URL for each outcome (our design)
# Our Envelope.reference in every callback URL (our design): Signi keeps the query string [OK S8]
# and its callback body has no field of ours. Only as trustworthy as the token next to it.
TOKEN_QUERY_PARAM = "token"
# Plausible form of our per-request token (Odoo: secrets.token_urlsafe(32) -> 43 url-safe chars).
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
# [GUESS] NOTES §4: the help text names outcomes "signed, rejected, expired" while its JSON says
# "completed"; accept both (and the URL's own event name).
EVENT_ALIASES = {"completed": "completed", "signed": "completed", "rejected": "rejected",
                 "refused": "rejected", "expired": "expired"}

# --- downloads (NOTES §3.5) -----------------------------------------------------------------------
# The webhook's ``file`` URL is valid for 10 minutes only [OK]. A hint older than this is not tried.
SIGNED_LINK_TTL = 600
# [GUESS] NOTES §3.5: Signi's REST paths for "Download a PDF" and "PDF with the contract history"
# were not captured; these mirror the proxy's /v1 paths (which mirror Signi's /api/v1 for the
# contract detail). If Signi answers 404 on the evidence path we report "no evidence" rather than
# failing the whole download.
DOWNLOAD_PATH = "/contract/{contract_id}/download"
EVIDENCE_PATH = "/contract/{contract_id}/history"
EVIDENCE_FILENAME = "signi-history-{contract_id}.pdf"

# --- status / cancel (NOTES §3.4/3.6) -----------------------------------------------------------------
STATUS_PATH = "/contract/{contract_id}"
# [GUESS] NOTES §3.6: "Delete a Contract" exists [OK]; its path as DELETE /contract/{id} is from one
# low-trust client. Deleting is the only way known to stop a sent contract.
CANCEL_METHOD = "DELETE"
CANCEL_PATH = "/contract/{contract_id}"
# [GUESS] NOTES §3.4: the detail's signer-level shape is unknown; if Signi includes a list of people
# under one of these keys with ``email`` and a state under one of SIGNER_STATE_KEYS, we use it.
PEOPLE_KEYS = ("people", "signatories", "signers")
SIGNER_STATE_KEYS = ("state", "status", "signature_state")

# [GUESS] NOTES §3.4: the detail's shape is unknown. The proxy's detail has ``modified``; once the
# contract is final nothing changes it any more, so it is taken as the completion date. Its format is
# unknown too: ISO 8601 with an offset is converted to UTC; a naive "YYYY-MM-DD HH:MM:SS" is read in
# MODIFIED_NAIVE_TIMEZONE (Signi is a Czech service).
COMPLETED_AT_FIELD = "modified"
MODIFIED_NAIVE_TIMEZONE = "Europe/Prague"
# [GUESS] Whether the detail echoes our ``number`` is unknown; read it where present.
REFERENCE_FIELD = "number"

# ONE table: Signi's states -> ours (NOTES §3.4 [OK] for the contract states; signer states [GUESS]).
STATUS_MAP = {
    "contract": {
        "draft": "draft",  # [GUESS] probably exists
        "pending": "sent",
        "completed": "signed",
        "signed": "signed",  # alias used by the help text
        "rejected": "refused",
        "expired": "expired",
        "deleted": "cancelled",  # [GUESS]
    },
    "signer": {
        "waiting": "waiting",
        "pending": "pending",
        "sent": "pending",
        "opened": "pending",
        "approved": "signed",
        "signed": "signed",
        "completed": "signed",
        "rejected": "refused",
    },
}
# Signi documents no failure state (NOTES §3.4: pending, completed, rejected, expired), so nothing
# maps to our "error". An unlisted state must not look final: the request stays open and is polled.
UNKNOWN_CONTRACT_STATE = "sent"
UNKNOWN_SIGNER_STATE = "waiting"


def signi_error_detail(response):
    """Signi's error body is not documented; one client reads ``message``/``error``/``detail``
    (NOTES §5 [GUESS]), which the shared reader already covers; add Laravel-style ``errors`` maps."""
    detail = default_error_detail(response)
    try:
        data = response.json()
    except ValueError:
        return detail
    if isinstance(data, dict) and isinstance(data.get("errors"), dict):
        fields = "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                           for k, v in list(data["errors"].items())[:5])
        return f"{data.get('message') or 'invalid data'} ({fields})"
    return detail


def event_url(callback_url, event, reference=""):
    """Our callback URL for one outcome: the same URL (token kept) plus ``event=<outcome>`` and,
    since Signi's callback body names nothing of ours, ``ref=<our reference>``."""
    parts, query = callback_query(callback_url, [(EVENT_QUERY_PARAM, event), (REFERENCE_QUERY_PARAM, reference)])
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _cz_company_id(vat):
    raw = "".join(ch for ch in (vat or "") if ch.isalnum()).upper()
    if raw.startswith("CZ") and raw[2:].isdigit() and len(raw) == 10:
        return raw[2:]
    return ""


def _now_utc():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _naive_zone():
    try:
        return zoneinfo.ZoneInfo(MODIFIED_NAIVE_TIMEZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # no tz database: better UTC than nothing
        return datetime.timezone.utc


def parse_signi_datetime(value):
    """A date of Signi's (format unknown, see COMPLETED_AT_FIELD) as naive UTC, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_naive_zone())
    return parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)


class SigniClient(ProviderClient):
    """Signi client for one workspace.

    ``api_key``: the workspace's key (header ``x-api-key``). ``proposer_email``: the workspace member
    who authors every contract and approves it automatically (NOTES §3.1 "exactly one author").
    ``signed_link_hosts``: hosts we accept a webhook's download link from (default: the API host),
    so a forged hint can never make us fetch an arbitrary URL.
    """

    calls_per_send = 1  # one multipart create

    code = "signi"

    def __init__(self, base_url=PRODUCTION_URL, api_key="", proposer_email="", timeout=(5.0, 30.0),
                 max_retries=2, sleep=time.sleep, session=None, signed_link_hosts=None):
        self.base_url = (base_url or "").rstrip("/")
        self.api_key = (api_key or "").strip()
        self.proposer_email = (proposer_email or "").strip()
        self.transport = HttpTransport(self.base_url, PROVIDER_LABEL, timeout=timeout,
                                       max_retries=max_retries, sleep=sleep, session=session,
                                       error_detail=signi_error_detail)
        api_host = urllib.parse.urlsplit(self.base_url).netloc.lower()
        self.signed_link_hosts = {h.lower() for h in (signed_link_hosts or (api_host,))}

    def _error(self, kind, detail, **kwargs):
        return ProviderError(kind, detail, provider=PROVIDER_LABEL, **kwargs)

    # ------------------------------------------------------------------ plumbing

    def _check_key(self):
        if not self.api_key:
            raise self._error("config", "the Signi workspace API key is missing")

    def _headers(self):
        self._check_key()
        return {API_KEY_HEADER: self.api_key, "Accept": "application/json"}

    def _json(self, method, path, **kwargs):
        return self.transport.json(method, path, headers=self._headers(), **kwargs)

    @staticmethod
    def _contract_id(provider_ref):
        ref = str(provider_ref or "").strip()
        if not ref.isdigit():
            raise ProviderError("config", f"{provider_ref!r} is not a Signi contract id", provider=PROVIDER_LABEL)
        return ref

    def check_connection(self):
        """``GET /me``: the key's user, workspace and expiry date (NOTES §2)."""
        return self._json("GET", "/me")

    # ------------------------------------------------------------------ send

    def _person(self, signer, party_order):
        first, last = signer.split_name()
        person = {
            "is_proposer": False,
            "email": signer.email.strip(),
            "contract_role": CONTRACT_ROLE_BY_ACTION[signer.action],
            "party_order": party_order,
            "person_type": PERSON_NATURAL,
            "first_name": first,
            "last_name": last,
        }
        if signer.phone:
            person["phone"] = "".join(signer.phone.split())
        organisation = signer.organisation
        if organisation is not None:
            person["person_type"] = PERSON_LEGAL
            person["company_name"] = organisation.name
            if organisation.tax_id:
                person["dic"] = "".join(organisation.tax_id.split())
                company_id = _cz_company_id(organisation.tax_id) if DERIVE_CZ_COMPANY_ID else ""
                if company_id:
                    person["ic"] = company_id
        return person

    def build_data(self, envelope):
        """The JSON of the ``data`` part; raises ``rejected``/``config`` before any call is made."""
        if not self.proposer_email or "@" not in self.proposer_email:
            raise self._error("config", "the Signi proposer e-mail (a member of the workspace) is missing")
        if not (envelope.title or "").strip():
            raise self._error("rejected", "the contract needs a name")
        document = envelope.document
        if document is None or not document.content:
            raise self._error("rejected", "there is no document to sign")
        filename = document.filename or "document.pdf"
        if not filename.lower().endswith(ACCEPTED_EXTENSIONS):
            if document.content.startswith(b"%PDF"):
                filename += ".pdf"
            else:
                raise self._error("rejected", f"Signi accepts only {', '.join(ACCEPTED_EXTENSIONS)} files")
        signers = list(envelope.ordered_signers())
        if not any(s.role == "client" for s in signers):
            raise self._error("rejected", "add the client as a signer")
        seen = {self.proposer_email.lower()}
        for signer in signers:
            label = signer.name or signer.email or signer.key
            email = (signer.email or "").strip().lower()
            if "@" not in email or " " in email:
                raise self._error("rejected", f"signer {label} has no valid e-mail address")
            if email in seen:
                if email == self.proposer_email.lower():
                    # [GUESS] Signi identifies people by e-mail; the proposer cannot also be a counterparty.
                    raise self._error(
                        "config", f"{email} is the Signi workspace proposer and cannot also sign as a "
                        "counterparty; set another proposer e-mail on the provider")
                raise self._error("rejected", f"{email} appears twice; Signi identifies people by e-mail")
            seen.add(email)
            if signer.action not in CONTRACT_ROLE_BY_ACTION:
                raise self._error("rejected", f"Signi cannot ask {label} to {signer.action!r} a document")
        if envelope.callback_url:
            token = query_value(urllib.parse.parse_qs(urllib.parse.urlsplit(envelope.callback_url).query),
                                 TOKEN_QUERY_PARAM)
            if not token or not TOKEN_PATTERN.match(token):
                raise self._error("config", "Signi callbacks are not signed: the callback URL must carry "
                                  f"the request's {TOKEN_QUERY_PARAM!r} parameter")
        # party_order: dense rank of our sequence (equal sequences share an order).
        orders = {}
        for signer in signers:
            orders.setdefault(signer.sequence, FIRST_PARTY_ORDER + len(orders))
        locale = (envelope.language or "").lower()[:2]
        data = {
            CONTRACT_NAME_FIELD: envelope.title.strip()[:250],
            "number": envelope.reference,
            "locale": locale if locale in LOCALES else DEFAULT_LOCALE,
            "state": INITIAL_STATE,
            "settings": {"signing_order": SIGNING_ORDER, "missing_positions": MISSING_POSITIONS},
            "people": [{"is_proposer": True, "email": self.proposer_email, "contract_role": PROPOSER_ROLE}]
                      + [self._person(s, orders[s.sequence]) for s in signers],
        }
        if envelope.callback_url:
            data["webhooks"] = [{"state": e, "url": event_url(envelope.callback_url, e, envelope.reference)}
                                for e in WEBHOOK_EVENTS]
        return data, filename

    def send(self, envelope):
        """One multipart call creates, uploads and starts the contract (NOTES §3.1).

        There is no draft step, so nothing is ever left half-made to clean up: ``outcome_unknown`` is
        exactly the transport's verdict on that one POST (timeout, 5xx, lost answer: True; refused
        connection, 4xx, 429: False), and True when Signi answered 2xx without a usable
        ``contract_id`` (it did create something we cannot name).
        """
        self._check_key()
        data, filename = self.build_data(envelope)
        files = {
            DATA_PART: ("data.json", json.dumps(data).encode("utf-8"), "application/json"),
            FILE_PART: (filename, envelope.document.content, envelope.document.mimetype or "application/pdf"),
        }
        try:
            created = self._json("POST", CREATE_PATH, params=CREATE_QUERY, files=files)
        except ProviderError as error:
            if error.outcome_unknown:
                raise self._unknown_outcome(error, envelope.reference) from error
            raise
        contract_id = created.get("contract_id") if isinstance(created, dict) else None
        if contract_id in (None, "") or isinstance(contract_id, bool) or not str(contract_id).isdigit():
            raise self._error("protocol", "Signi created the contract but returned no contract_id; look "
                              f"for contract number {envelope.reference} in the Signi workspace",
                              outcome_unknown=True)
        links = {}
        for item in created.get("notifications") or ():
            if isinstance(item, dict) and item.get("email"):
                links[str(item["email"]).strip().lower()] = ((item.get("links") or {}).get("contract") or "")
        first = min(s.sequence for s in envelope.signers)
        signers = tuple(
            SignerStatus(state="pending" if s.sequence == first else "waiting", key=s.key, email=s.email,
                         signing_url=links.get(s.email.strip().lower(), ""))
            for s in envelope.ordered_signers())
        return SendResult(provider_ref=str(contract_id), signers=signers, raw=created)

    @staticmethod
    def _unknown_outcome(error, reference):
        """The transport's error, worded for a contract that Signi may have created and e-mailed."""
        return ProviderError(
            error.kind, f"sending the contract to Signi failed ({error.detail}); it is unknown whether "
            f"Signi created it and e-mailed the signers. Look for contract number {reference} in the "
            "Signi workspace before sending again.", status_code=error.status_code,
            provider=PROVIDER_LABEL, retry_after=error.retry_after, body=error.body, outcome_unknown=True)

    # find_by_reference(): Signi has no list or search call (module docstring), so the base class's
    # "config" error stands and can_find_by_reference stays False.

    # ------------------------------------------------------------------ status

    def _map_signers(self, data, contract_state):
        signers = []
        for key in PEOPLE_KEYS:
            people = data.get(key)
            if isinstance(people, list):
                break
        else:
            people = []
        for person in people:
            if not isinstance(person, dict) or person.get("is_proposer") or not person.get("email"):
                continue
            raw = next((person[k] for k in SIGNER_STATE_KEYS if isinstance(person.get(k), str)), "")
            state = STATUS_MAP["signer"].get(raw.lower(), UNKNOWN_SIGNER_STATE)
            signers.append(SignerStatus(state=state, email=str(person["email"]),
                                        reason=str(person.get("message") or "")))
        if not signers and contract_state == "signed":
            return ()  # nothing per person; the core marks everyone signed with the request
        return tuple(signers)

    def get_status(self, provider_ref):
        contract_id = self._contract_id(provider_ref)
        data = self._json("GET", STATUS_PATH.format(contract_id=contract_id))
        if isinstance(data, dict) and isinstance(data.get("contract"), dict):
            data = data["contract"]  # [GUESS] tolerate a wrapped answer
        if not isinstance(data, dict) or not isinstance(data.get("state"), str):
            raise self._error("protocol", f"Signi's contract {contract_id} answer has no state")
        provider_state = data["state"]
        state = STATUS_MAP["contract"].get(provider_state.lower())
        if state is None:
            _logger.warning("Signi: contract %s is in the undocumented state %r; treated as %r",
                            contract_id, provider_state[:40], UNKNOWN_CONTRACT_STATE)
            state = UNKNOWN_CONTRACT_STATE
        final = state in REQUEST_FINAL_STATES
        reference = data.get(REFERENCE_FIELD)
        return EnvelopeStatus(
            provider_ref=contract_id, state=state, provider_state=provider_state,
            signers=self._map_signers(data, state), raw=data,
            # Signi's reason for a rejection comes in ``message`` (NOTES §4 [2nd]).
            reason=str(data.get("message") or "") if final else "",
            completed_at=parse_signi_datetime(data.get(COMPLETED_AT_FIELD)) if final else None,
            reference=reference.strip() if isinstance(reference, str) else "")

    # ------------------------------------------------------------------ downloads

    def _on_signi_host(self, url):
        """True for an http(s) link on Signi's own host: our API key goes along, so never elsewhere."""
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return False
        try:
            host = urllib.parse.urlsplit(url).netloc.lower()
        except ValueError:
            return False
        if host not in self.signed_link_hosts:
            # The link's query is its credential (Signi's hash): never logged.
            _logger.warning("Signi: ignoring a signed-document link on an unexpected host: %s", redact_url(url))
            return False
        return True

    def _hint_usable(self, hints):
        url = (hints or {}).get("signed_url")
        if not self._on_signi_host(url):
            return None
        received = hints.get("received_at")
        if received:
            try:
                age = (_now_utc() - datetime.datetime.fromisoformat(received)).total_seconds()
            except (TypeError, ValueError):
                age = 0
            if age > SIGNED_LINK_TTL:
                return None  # expired for sure: go straight to the API
        return url

    def download_signed(self, provider_ref, hints=None):
        """The signed PDF: first from the webhook's 10-minute link (``hints["signed_url"]``), which
        must therefore be used at once; otherwise (no hint, expired, refused) from the API."""
        contract_id = self._contract_id(provider_ref)
        filename = f"signi-{contract_id}-signed.pdf"
        url = self._hint_usable(hints)
        if url:
            try:
                # The hash in the link is its credential; the key goes along only to Signi's own host.
                response = self.transport.request("GET", url, headers=self._headers())
                if response.content:
                    return Document(filename, response.content, "application/pdf")
            except ProviderError as error:
                if error.kind == "config":
                    raise
                _logger.info("Signi: the signed-document link failed (%s); using the API", error)
        content = self.transport.content("GET", DOWNLOAD_PATH.format(contract_id=contract_id),
                                         headers=self._headers())
        if not content:
            raise self._error("protocol", f"Signi returned an empty document for contract {contract_id}")
        return Document(filename, content, "application/pdf")

    def download_evidence(self, provider_ref, hints=None):
        """The "PDF with the contract history" (NOTES §3.5), or ``None`` where Signi has none."""
        contract_id = self._contract_id(provider_ref)
        try:
            content = self.transport.content("GET", EVIDENCE_PATH.format(contract_id=contract_id),
                                             headers=self._headers())
        except ProviderError as error:
            if error.kind == "not_found":
                _logger.warning("Signi: no contract history at %s (path is a guess)", EVIDENCE_PATH)
                return None
            raise
        return Document(EVIDENCE_FILENAME.format(contract_id=contract_id), content, "application/pdf") \
            if content else None

    # ------------------------------------------------------------------ cancel (remind: not in the API)

    def cancel(self, provider_ref, reason=""):
        """Deletes the contract at Signi (the only documented way to stop it, NOTES §3.6).

        Signi keeps no "cancelled" state: afterwards :meth:`get_status` answers ``not_found``, so the
        caller records the cancellation itself. ``reason`` is not sent (no field for it).
        """
        contract_id = self._contract_id(provider_ref)
        self.transport.request(CANCEL_METHOD, CANCEL_PATH.format(contract_id=contract_id),
                               headers=self._headers())

    # remind(): Signi's API has no reminder call (NOTES §3.7) -> base class ProviderError "conflict".

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, headers, body, query):
        """Signi does not sign its webhooks (NOTES §4), so there is nothing cryptographic to check.

        Authentication is the unguessable per-request token we put into every callback URL: this
        method only checks that a ``token`` query parameter of plausible form is present and raises
        :class:`WebhookAuthError` otherwise. **Matching the token to the request it was issued for
        (in constant time, e.g. ``hmac.compare_digest``) is the Odoo layer's job**, since only it
        knows the requests; a notification must never be applied before that match succeeded.
        """
        token = query_value(query, TOKEN_QUERY_PARAM)
        if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
            raise WebhookAuthError("Signi notification without a valid per-request token")

    def parse_webhook(self, headers, body, query):
        """One :class:`Notification` per call: ``{"contract_id", "state", "file", "attachments",
        "message"}`` (NOTES §4).

        Signi does not sign the body, so nothing in it is applied: ``status`` is ``None`` and the core
        reads the contract's state from Signi's API with our key. Kept: the event kind (body and URL
        must agree), the contract id (the core checks it against the token's request), our reference
        from the URL, and the signed document's 10-minute link as ``hints["signed_url"]`` - only when
        it is on Signi's own host, and downloaded only if Signi's API then says the contract is done.
        """
        data = self._webhook_body(body)
        contract_id = self._webhook_contract_id(data)
        event = self._webhook_event(data, query)
        hints = None
        file_url = data.get("file")
        if event == "completed" and file_url and self._on_signi_host(file_url):
            hints = {"signed_url": file_url, "received_at": _now_utc().isoformat()}
        raw = body if isinstance(body, bytes) else body.encode("utf-8")
        return [Notification(dedup_key=f"signi:{contract_id}:{event}:{body_digest(raw)}", event_type=event,
                             provider_ref=contract_id, occurred_at=_now_utc(), status=None, payload=data,
                             hints=hints, reference=reference_from_query(query))]

    @staticmethod
    def _webhook_body(body):
        try:
            data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookMalformed("Signi notification body is not JSON") from exc
        if not isinstance(data, dict):
            raise WebhookMalformed("Signi notification body is not an object")
        return data

    @staticmethod
    def _webhook_contract_id(data):
        contract_id = data.get("contract_id")
        if isinstance(contract_id, bool) or not isinstance(contract_id, (int, str)) \
                or not str(contract_id).strip().isdigit():
            raise WebhookMalformed("Signi notification without a contract_id")
        return str(contract_id).strip()

    @staticmethod
    def _webhook_event(data, query):
        """The outcome named by the body and/or the URL we registered for it; they must agree."""
        body_state = data.get("state")
        url_event = query_value(query, EVENT_QUERY_PARAM)
        body_event = EVENT_ALIASES.get(body_state.lower()) if isinstance(body_state, str) else None
        url_event = EVENT_ALIASES.get(url_event.lower()) if isinstance(url_event, str) else None
        if body_state is not None and body_event is None:
            raise WebhookMalformed(f"Signi notification with unknown state {str(body_state)[:40]!r}")
        if body_event and url_event and body_event != url_event:
            raise WebhookMalformed(f"Signi notification says {body_state[:40]!r} on the {url_event!r} URL")
        event = body_event or url_event
        if not event:
            raise WebhookMalformed("Signi notification without a state")
        return event

