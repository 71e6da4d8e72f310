"""SELL&SIGN (Calinda Software) client.

Source of every wire detail: ``shared/providers/sellandsign/NOTES.md`` (cited as "NOTES §x"). No
machine-readable API description exists; SELL&SIGN documents a "REST-like" API in prose, and sends
each customer an "API descriptor document" with licence-specific values (contract definition id,
signature modes, callbacks). Much is therefore [GUESS]; every such decision is a module constant
below (or a constructor argument where it differs per licence), so it can be changed in one place.

Flow (NOTES §4.1): one ``multipart/form-data`` call ``POST /calinda/hub/selling/do?m=sendCommandPacket``
with a JSON "sellsign" file part and the PDF part; then (our choice, NOTES §4.2 step 8) switch the
contract to auto-close, because the signed PDF can only be fetched once the contract is closed
(NOTES §4.6). Status is read with ``getContract`` + ``getContractorsAbout`` (NOTES §4.5), the signed PDF
with ``getSignedContract``.

Accounts (NOTES §2/§3): one ``j_token`` per SELL&SIGN licence seat (user), and ``vendor`` is that
user's e-mail. A client instance acts for the one seat it is given; which seat sends in each of our
modes is the Odoo layer's choice (``models/esign_provider_sellandsign.py``).

Outcome of a send (base :class:`~.base.ProviderError` ``outcome_unknown``): the one packet call
creates *and* starts the contract, so there is no draft to clean up. Its failure carries the
transport's verdict (timeout, 5xx, lost answer: a contract may exist; refused connection, 4xx, 429:
nothing was created), and a 2xx answer without a readable contract id counts as "may exist". The
auto-close call that follows cannot fail the send any more: the contract is out, so its failure
becomes a :attr:`~.base.SendResult.warnings` sentence telling the user to close it at SELL&SIGN.

Our reference (outbox):

* **Sent** as the customer ``number`` (NOTES §3, [OK]: the customer "is identified by our own
  number") and as the contract property ``internal_contract_id`` ([2nd] S10), and as the ``ref``
  parameter of our callback URL, so every callback names our request even when the send's answer
  (the contract id) was lost. A contract read echoes the number back as ``customerNumber`` /
  ``customer.number`` ([2nd] S8: QH\\Sellandsign's sample contract and customer factory), which
  :meth:`SellAndSignClient.get_status` returns as :attr:`~.base.EnvelopeStatus.reference`.
* **No look-up by reference** (:attr:`SellAndSignClient.can_find_by_reference` stays False). The
  only search we know is ``POST do?m=getContracts`` with a JSON filter ([2nd] S8), whose
  ``customer`` field has no documented meaning (customer number? name? free text? [GUESS]) and
  whose answer pages (150 by default, [2nd]). A look-up built on it could not promise "SELL&SIGN
  certainly has no contract": a filter that silently matches nothing would make the outbox send
  the client a second contract. Confidence that no reliable look-up exists: medium (the licence's
  API descriptor may document the filter). Until SELL&SIGN confirms it, after a send whose outcome
  is unknown someone must look in SELL&SIGN for customer number <our reference> before sending again.

Callbacks (NOTES §5): set up per licence by SELL&SIGN staff; the URL travels as the contract property
``callback:url``; nothing is signed, and method and payload are not documented. We expect a
form-encoded body ([GUESS], what our fake posts) and read JSON objects too. Only the contract id
is taken from it (checked against our URL's ``contract_id``), never a state: NOTES cannot confirm
that a callback carries a trustworthy state (unsigned body, unknown value sets, §4.5), so
``Notification.status`` is always ``None`` and the core reads the contract through the API with
our token. Authentication is the per-request token in the URL, checked by the core.

Secrets: the ``j_token`` travels in a header (never in a URL, see :data:`TOKEN_IN_HEADER`); every
:class:`~.base.ProviderError` raised here has the token, and any URL in the provider's message, taken
out of its detail and body (URLs through :func:`~.http.redact_url`).
"""
import datetime
import json
import logging
import re
import time
import urllib.parse

from .base import (REQUEST_FINAL_STATES, Document, EnvelopeStatus, Notification, ProviderClient,
                   ProviderError, SendResult, SignerStatus, WebhookAuthError, WebhookMalformed, body_digest)
from .callbacks import REFERENCE_QUERY_PARAM, callback_query, query_value, reference_from_query
from .http import HttpTransport, redact_url

_logger = logging.getLogger(__name__)

PROVIDER_LABEL = "SELL&SIGN"

# --- hosts (NOTES §1) -----------------------------------------------------------------------------
PRODUCTION_URL = "https://cloud.sellandsign.com"  # [OK]
# [2nd]/[GUESS] a beta cloud seen in a sample project; trial licences may live on production instead.
SANDBOX_URL = "https://betacloud.sellandsign.com"
DO_PATH = "/calinda/hub/selling/do"
MODEL_PATH = "/calinda/hub/selling/model/{cls}/{kind}"
PREFERENCE_PATH = "/calinda/hub/getPreferenceForLicense.action"

# --- authentication (NOTES §2, [OK]) --------------------------------------------------------------
TOKEN_HEADER = "j_token"
# Both are accepted [OK]; the header keeps the token out of every URL, hence out of server and
# proxy logs, urllib3's debug log and the requests exceptions the transport chains to its errors.
TOKEN_IN_HEADER = True  # the alternative is ?j_token=<url-encoded> on every call
HIDDEN = "[hidden]"  # what a secret becomes in error details
MIN_SECRET_LENGTH = 6  # shorter strings are not scrubbed: replacing them would garble messages

# --- sendCommandPacket (NOTES §4.1) --------------------------------------------------------------------
SEND_METHOD = "sendCommandPacket"
# [GUESS] part names are not documented; samples name the JSON *file* "*.sellsign" / "*.json".
PACKET_PART = "sellsign"
PACKET_FILENAME = "contract.sellsign"
PDF_PART = "pdf"  # the PDF part's *file name* must equal contract.pdf_file_path [OK]
NEW_ID = -1  # "-1 = create" [OK]
# Signature mode 3 = e-mail, then a one-time code by SMS (MAIL_OTP) [OK]; licence-dependent, so
# it is a constructor argument too. Modes that send a code by SMS need a mobile number.
DEFAULT_SIGNATURE_MODE = 3
MODES_NEEDING_PHONE = (1, 3, 9)
# [GUESS] our own id as the customer "number": one SELL&SIGN customer record per request, so
# re-using a number never overwrites another request's signer data. The number is our reference
# as SELL&SIGN keeps it (customer "identified by our own number" [OK]); reads echo it ([2nd] S8).
CUSTOMER_NUMBER_FORMAT = "{reference}"
# [GUESS] NOTES §4.1/§4.4: the shape of ``contractors`` (further signatories) is undocumented; we use
# the customer's own shape plus ``rank`` (the field of contractorsforcontract that orders signing).
# The client is the customer (rank FIRST_RANK); the company's signer comes next.
FIRST_RANK = 1
INTERNAL_ID_PROPERTY = "internal_contract_id"  # [2nd] S10
CALLBACK_PROPERTY = "callback:url"  # [2nd] S10
# [GUESS] S10's callback URL contains a literal "<id>", presumably replaced by the contract id; we
# add ``contract_id=<id>`` to ours so that, if SELL&SIGN substitutes it, the id comes back too.
CALLBACK_ID_PLACEHOLDER = "<id>"
CALLBACK_ID_PARAM = "contract_id"
# Our reference travels in our own callback URL (api/callbacks.py): SELL&SIGN calls the URL it was given.
# [GUESS] NOTES §4.2 step 8 / §4.6: getSignedContract works only once the contract is closed, so we
# ask SELL&SIGN to close it automatically after the last signature.
AUTO_CLOSE_AFTER_SEND = True
AUTO_CLOSE_PATH = MODEL_PATH.format(cls="contract", kind="update")
AUTO_CLOSE_ACTION = "updateContractAutoCloseMode"
# Told to the user (SendResult.warnings) when the contract is out but auto-close could not be set.
AUTO_CLOSE_WARNING = (
    "SELL&SIGN could not be set to close contract {contract_id} automatically after the last "
    "signature ({cause}). Once everyone has signed, close (validate) the contract in SELL&SIGN: "
    "until then the signed PDF cannot be downloaded and the request stays sent.")
ADHOC_PREFERENCE_KEY = "sellsign_adhoc_contract_definition_id"  # [OK] the generic "PDF ADHOC" definition

# --- status and downloads (NOTES §4.5/§4.6) ---------------------------------------------------------------
CONTRACT_READ = (MODEL_PATH.format(cls="contract", kind="read"), "getContract")
CONTRACTORS_LIST = (MODEL_PATH.format(cls="contractorsforcontract", kind="list"), "getContractorsAbout")
SIGNED_METHOD = "getSignedContract"
# [2nd] S8 (QH\Sellandsign FileLoader::getEvidences, a ZIP), although NOTES §4.6 found no evidence
# method. If SELL&SIGN answers 404/400 (unknown method) we report "no evidence" instead of failing.
# Set to None to skip.
EVIDENCE_METHOD = "getEvidences"
# [GUESS] a contract counts as signed for us only once closed, since only then the PDF can be fetched.
REQUIRE_CLOSED_FOR_SIGNED = True
SIGNER_REF_FORMAT = "rank:{rank}"  # our provider_ref of a signer: stable without contractor ids
# [2nd] S8: when the contract was closed (epoch ms; 0 or -1 while open). Our completion date.
CLOSED_DATE_FIELD = "closedDate"
# [2nd] S8: where a contract read echoes the customer number (top level, then the customer object).
CUSTOMER_NUMBER_FIELD = "customerNumber"
# [2nd] S8: the contract's only free-text reason; the provider's message for cancelled/failed ones.
REASON_FIELD = "canceledReason"

# ONE table: SELL&SIGN's states -> ours. [GUESS] all of it: the value sets of ``status`` and
# ``signatureStatus`` are unknown (NOTES §4.5; "OPEN" seen in [2nd] S8); unknown values are treated
# as "still open". The failure names are guesses too: should SELL&SIGN fail a contract, it is final.
STATUS_MAP = {
    "contract": {
        "DRAFT": "draft",
        "OPEN": "sent",
        "PENDING": "sent",
        "SENT": "sent",
        "SIGNED": "signed",
        "CLOSED": "signed",
        "VALIDATED": "signed",
        "REFUSED": "refused",
        "CANCELED": "cancelled",
        "CANCELLED": "cancelled",
        "ABANDONED": "cancelled",
        "EXPIRED": "expired",
        "ERROR": "error",
        "FAILED": "error",
        "IN_ERROR": "error",
    },
    "signer": {
        "NONE": "waiting",
        "WAITING": "waiting",
        "PENDING": "pending",
        "SENT": "pending",
        "SIGNED": "signed",
        "REFUSED": "refused",
    },
}
UNKNOWN_CONTRACT_STATE = "sent"
UNKNOWN_SIGNER_STATE = "waiting"

# --- webhooks: the per-request token in the URL (our design; nothing is signed) ------------------------
TOKEN_QUERY_PARAM = "token"
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
BODY_ID_KEYS = ("contract_id", "contractId", "c_id", "id")  # [GUESS], first one present wins
BODY_EVENT_KEYS = ("event", "status", "state", "action")  # [GUESS], a label for the event journal only
EVENT_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
URL_PATTERN = re.compile(r"https?://[^\s\"'<>]+")


def _ms_to_datetime(value):
    """SELL&SIGN dates are epoch milliseconds (NOTES §3); -1 or nothing means "not yet"."""
    if isinstance(value, bool):
        return None
    try:
        ms = float(value)
    except (TypeError, ValueError):
        return None
    if ms <= 0:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc).replace(tzinfo=None)


def callback_url_for(callback_url, reference=""):
    """Our URL (token kept) plus ``ref=<our reference>`` and ``contract_id=<id>`` for SELL&SIGN to
    fill in. ``<id>`` stays literal: SELL&SIGN looks for that text ([GUESS] S10)."""
    parts, encoded = callback_query(callback_url, [(REFERENCE_QUERY_PARAM, reference)], replaced=(CALLBACK_ID_PARAM,))
    encoded = f"{encoded}&" if encoded else ""
    return urllib.parse.urlunsplit(parts._replace(query=f"{encoded}{CALLBACK_ID_PARAM}={CALLBACK_ID_PLACEHOLDER}"))


def reference_from_customer_number(number):
    """Our reference inside a customer number made with :data:`CUSTOMER_NUMBER_FORMAT`, or ``""``."""
    if not isinstance(number, str) or not number.strip():
        return ""
    head, _sep, tail = CUSTOMER_NUMBER_FORMAT.partition("{reference}")
    number = number.strip()
    if len(number) <= len(head) + len(tail) or not number.startswith(head) or not number.endswith(tail):
        return ""
    return number[len(head):len(number) - len(tail)]


def scrub(value, secrets):
    """``value`` (text, or JSON-like data) without ``secrets`` and with every URL redacted.

    Provider messages may quote what we sent (the callback URL with its token) or a signed link;
    the j_token must never reach a message even if SELL&SIGN echoes it.
    """
    if isinstance(value, str):
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
                    value = value.replace(form, HIDDEN)
        return URL_PATTERN.sub(lambda match: redact_url(match.group(0)), value)
    if isinstance(value, dict):
        return {key: scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item, secrets) for item in value]
    return value


class SellAndSignClient(ProviderClient):
    """SELL&SIGN client acting for one licence seat.

    ``j_token``: the seat's API token; ``vendor_email``: that seat's e-mail (the sender).
    ``contract_definition_id``: the licence's contract definition for ad-hoc PDFs; when empty it is
    looked up once per instance from the licence preference (NOTES §3). ``signature_mode``: the
    licence's mode for remote signing (NOTES §4.3).
    """

    calls_per_send = 2  # sendCommandPacket, then the auto-close setting

    code = "sellandsign"
    # No search by customer number is documented (module docstring): the base class's "config"
    # error stands for find_by_reference().
    can_find_by_reference = False

    def __init__(self, base_url=PRODUCTION_URL, j_token="", vendor_email="", contract_definition_id=None,
                 signature_mode=DEFAULT_SIGNATURE_MODE, timeout=(5.0, 30.0), max_retries=2, sleep=time.sleep,
                 session=None):
        self.base_url = (base_url or "").rstrip("/")
        self.j_token = (j_token or "").strip()
        self.vendor_email = (vendor_email or "").strip()
        self.contract_definition_id = int(contract_definition_id) if contract_definition_id not in (None, "") else None
        self.signature_mode = int(signature_mode)
        self.transport = HttpTransport(self.base_url, PROVIDER_LABEL, timeout=timeout, max_retries=max_retries,
                                       sleep=sleep, session=session)

    def _error(self, kind, detail, **kwargs):
        return ProviderError(kind, detail, provider=PROVIDER_LABEL, **kwargs)

    # ------------------------------------------------------------------ plumbing

    def _auth(self, params=None):
        if not self.j_token:
            raise self._error("config", "the SELL&SIGN API token (j_token) is missing")
        params = dict(params or {})
        headers = {"Accept": "application/json"}
        if TOKEN_IN_HEADER:
            headers[TOKEN_HEADER] = self.j_token
        else:
            params[TOKEN_HEADER] = self.j_token
        return headers, params

    def _scrubbed(self, error, secrets=()):
        """A copy of the transport's ``error`` that is safe to show and log."""
        secrets = (self.j_token, *secrets)
        return ProviderError(error.kind, scrub(error.detail, secrets), status_code=error.status_code,
                             provider=error.provider or PROVIDER_LABEL, retry_after=error.retry_after,
                             body=scrub(error.body, secrets), outcome_unknown=error.outcome_unknown)

    def _call(self, method, path, params=None, secrets=(), **kwargs):
        """One API call; its errors come scrubbed of the token and of ``secrets``."""
        headers, params = self._auth(params)
        headers.update(kwargs.pop("headers", {}))
        try:
            return self.transport.request(method, path, params=params, headers=headers, **kwargs)
        except ProviderError as error:
            # The transport chains the requests exception, whose text holds the full URL: with the
            # token in the query string, a logged traceback would carry it.
            raise self._scrubbed(error, secrets) from (error.__cause__ if TOKEN_IN_HEADER else None)

    def _call_json(self, method, path, params=None, **kwargs):
        response = self._call(method, path, params=params, **kwargs)
        try:
            return response.json() if response.content else None
        except ValueError as exc:
            raise self._error("protocol", f"{path} did not answer JSON", status_code=response.status_code) from exc

    @staticmethod
    def _contract_id(provider_ref):
        ref = str(provider_ref or "").strip()
        if not ref.isdigit():
            raise ProviderError("config", f"{provider_ref!r} is not a SELL&SIGN contract id", provider=PROVIDER_LABEL)
        return ref

    def definition_id(self):
        """The licence's ad-hoc contract definition (configured, or read from the licence)."""
        if self.contract_definition_id is None:
            response = self._call("GET", PREFERENCE_PATH, params={"key": ADHOC_PREFERENCE_KEY})
            # [GUESS] the answer's shape is not documented: a bare number, or JSON with "value".
            text = (response.text or "").strip()
            try:
                data = json.loads(text)
            except ValueError:
                data = text
            value = data.get("value") if isinstance(data, dict) else data
            if not str(value).strip().isdigit():
                raise self._error("config", "the SELL&SIGN licence has no ad-hoc contract definition; "
                                  "set the contract definition id from SELL&SIGN's API descriptor")
            self.contract_definition_id = int(str(value).strip())
        return self.contract_definition_id

    # ------------------------------------------------------------------ send

    @staticmethod
    def _fields(signer):
        first, last = signer.split_name()
        fields = [{"key": "firstname", "value": first}, {"key": "lastname", "value": last},
                  {"key": "email", "value": signer.email.strip()}]
        if signer.phone:
            fields.append({"key": "cellPhone", "value": "".join(signer.phone.split())})
        if signer.organisation is not None:
            fields.append({"key": "company_name", "value": signer.organisation.name})
            if signer.organisation.tax_id:
                fields.append({"key": "registrationNumber", "value": "".join(signer.organisation.tax_id.split())})
            if signer.representation_basis:
                fields.append({"key": "job_title", "value": signer.representation_basis})
        return fields

    @staticmethod
    def _callback_token(callback_url):
        return query_value(urllib.parse.parse_qs(urllib.parse.urlsplit(callback_url or "").query),
                            TOKEN_QUERY_PARAM)

    def build_packet(self, envelope):
        """The sellsign JSON; raises ``rejected``/``config`` before any call is made."""
        if not self.vendor_email or "@" not in self.vendor_email:
            raise self._error("config", "the SELL&SIGN sender e-mail (vendor, the licence user) is missing")
        document = envelope.document
        if document is None or not document.content:
            raise self._error("rejected", "there is no document to sign")
        if not document.content.startswith(b"%PDF"):
            raise self._error("rejected", "SELL&SIGN gets PDFs only")
        if not (envelope.reference or "").strip():
            raise self._error("rejected", "the request has no reference to give SELL&SIGN as customer number")
        signers = list(envelope.ordered_signers())
        clients = [s for s in signers if s.role == "client"]
        if not clients:
            raise self._error("rejected", "add the client as a signer")
        customer, others = signers[0], signers[1:]
        if customer.role != "client":
            raise self._error("rejected", "SELL&SIGN's customer (first signatory) must be the client")
        seen = set()
        for signer in signers:
            label = signer.name or signer.email or signer.key
            email = (signer.email or "").strip().lower()
            if "@" not in email or " " in email:
                raise self._error("rejected", f"signer {label} has no valid e-mail address")
            if email in seen:
                raise self._error("rejected", f"{email} appears twice")
            seen.add(email)
            if signer.action != "sign":
                raise self._error("rejected", f"SELL&SIGN can only ask {label} to sign (not {signer.action!r})")
            if self.signature_mode in MODES_NEEDING_PHONE and not signer.phone:
                raise self._error("rejected", f"{label} needs a mobile phone number: SELL&SIGN sends the "
                                  "signing code by SMS")
        callback = envelope.callback_url
        if callback:
            token = self._callback_token(callback)
            if not token or not TOKEN_PATTERN.match(token):
                raise self._error("config", "SELL&SIGN callbacks are not signed: the callback URL must carry "
                                  f"the request's {TOKEN_QUERY_PARAM!r} parameter")
        # Rank: strictly one after the other (no parallel signing is documented), the customer
        # first; distinct ranks also keep our signer references (rank:N) unique.
        ranks = {signer.key: FIRST_RANK + index for index, signer in enumerate(signers)}
        filename = re.sub(r"[^A-Za-z0-9._-]+", "_", document.filename or "contract.pdf").strip("_") or "contract.pdf"
        if not filename.lower().endswith(".pdf"):
            filename += ".pdf"
        properties = [{"key": INTERNAL_ID_PROPERTY, "value": envelope.reference, "to_fill_by_user": 0}]
        if callback:
            properties.append({"key": CALLBACK_PROPERTY, "value": callback_url_for(callback, envelope.reference),
                               "to_fill_by_user": 0})
        packet = {
            "customer": {
                "number": CUSTOMER_NUMBER_FORMAT.format(reference=envelope.reference),
                "mode": self.signature_mode,
                "contractor_id": NEW_ID,
                "vendor": self.vendor_email,
                "fields": self._fields(customer),
            },
            "contractors": [
                {"contractor_id": NEW_ID, "mode": self.signature_mode, "rank": ranks[s.key],
                 "fields": self._fields(s)} for s in others
            ],
            "contract": {
                "contract_definition_id": self.definition_id(),
                "pdf_file_path": filename,
                "contract_id": NEW_ID,
                "message_title": (envelope.title or envelope.reference).strip()[:250],
                "message_body": envelope.message or "",
            },
            "contract_properties": properties,
            "files": [],
            "options": [],
            "to_sign": 1,
        }
        refs = [(s, ranks[s.key]) for s in signers]
        return packet, filename, refs

    @staticmethod
    def _created_id(response):
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            for holder in (data, data.get("contract") if isinstance(data.get("contract"), dict) else {}):
                for key in ("contract_id", "id"):
                    if str(holder.get(key, "")).strip().isdigit():
                        return str(holder[key]).strip()
        # [GUESS] NOTES §4.1: one integration cuts the id out of a non-JSON answer.
        match = re.search(r"contract_id[\"'\s:=]{0,5}(\d+)", response.text or "") or \
            re.fullmatch(r"\s*(\d+)\s*", response.text or "")
        return match.group(1) if match else None

    def send(self, envelope):
        """Create and start the contract in one call, then ask for auto-close (module docstring).

        ``outcome_unknown`` on a failure is the packet call's own (there is no draft to clean up);
        a failed auto-close comes back as a warning, since the contract is out by then.
        """
        self._auth()
        packet, filename, refs = self.build_packet(envelope)
        contract_id = self._create_contract(envelope, packet, filename)
        warnings = self._set_auto_close(contract_id) if AUTO_CLOSE_AFTER_SEND else ()
        first_rank = min(rank for _s, rank in refs)
        signers = tuple(SignerStatus(state="pending" if rank == first_rank else "waiting", key=s.key, email=s.email,
                                     provider_ref=SIGNER_REF_FORMAT.format(rank=rank)) for s, rank in refs)
        return SendResult(provider_ref=contract_id, signers=signers, raw={"contract_id": contract_id},
                          warnings=warnings)

    def _create_contract(self, envelope, packet, filename):
        """POST the packet and return the new contract's id.

        Errors keep the transport's ``outcome_unknown``; where it is True the message tells the user
        how to find the contract (customer number = our reference), since we cannot look it up.
        """
        files = [
            (PACKET_PART, (PACKET_FILENAME, json.dumps(packet).encode("utf-8"), "application/json")),
            (PDF_PART, (filename, envelope.document.content, "application/pdf")),
        ]
        secrets = (self._callback_token(envelope.callback_url) or "",)
        try:
            response = self._call("POST", DO_PATH, params={"m": SEND_METHOD}, files=files, secrets=secrets)
        except ProviderError as error:
            if not error.outcome_unknown:
                raise
            raise self._error(
                error.kind, f"sending the contract to SELL&SIGN failed ({error.detail}); it is unknown whether "
                f"SELL&SIGN created it. Look for customer number {packet['customer']['number']} in SELL&SIGN "
                "before sending again.", status_code=error.status_code, retry_after=error.retry_after,
                body=error.body, outcome_unknown=True) from error
        contract_id = self._created_id(response)
        if not contract_id:
            raise self._error(
                "protocol", "SELL&SIGN accepted the contract but its answer has no contract id; look for "
                f"customer number {packet['customer']['number']} in SELL&SIGN before sending again",
                status_code=response.status_code, body=scrub((response.text or "")[:2000], (self.j_token, *secrets)),
                outcome_unknown=True)
        return contract_id

    def _set_auto_close(self, contract_id):
        """Ask SELL&SIGN to close the contract after the last signature; warnings for the user."""
        try:
            self._call("POST", AUTO_CLOSE_PATH, params={"action": AUTO_CLOSE_ACTION},
                       json={"auto_close": 1, "id": int(contract_id)}, retry=True)  # idempotent setting
        except ProviderError as error:
            _logger.warning("SELL&SIGN contract %s: auto-close could not be set (%s)", contract_id, error)
            cause = f"HTTP {error.status_code}" if error.status_code else error.kind
            return (AUTO_CLOSE_WARNING.format(contract_id=contract_id, cause=cause),)
        return ()

    # ------------------------------------------------------------------ status

    def get_status(self, provider_ref):
        contract_id = self._contract_id(provider_ref)
        path, action = CONTRACT_READ
        contract = self._call_json("GET", path, params={"action": action, "contract_id": contract_id})
        if not isinstance(contract, dict) or not contract:
            raise self._error("protocol", f"SELL&SIGN's contract {contract_id} answer is empty")
        elements = self._read_contractors(contract_id)
        signers = self._signer_statuses(elements)
        raw_state = str(contract.get("status") or "")
        closed = bool(contract.get("closed"))
        state, reason = self._contract_state(contract, signers, closed)
        return EnvelopeStatus(provider_ref=contract_id, state=state, signers=tuple(signers),
                              provider_state=raw_state + (" (closed)" if closed else ""), reason=reason,
                              raw={"contract": contract, "contractors": elements},
                              completed_at=self._completed_at(contract, state, signers),
                              reference=self._echoed_reference(contract))

    def _read_contractors(self, contract_id):
        path, action = CONTRACTORS_LIST
        listing = self._call_json("GET", path, params={"action": action, "contract_id": contract_id,
                                                       "offset": 0, "size": 9999})
        elements = listing.get("elements") if isinstance(listing, dict) else None
        if not isinstance(elements, list):
            raise self._error("protocol", f"SELL&SIGN's signatories of contract {contract_id} cannot be read")
        return elements

    @staticmethod
    def _signer_statuses(elements):
        signers = []
        for element in sorted((e for e in elements if isinstance(e, dict)), key=lambda e: e.get("rank") or 0):
            raw = str(element.get("signatureStatus") or "").upper()
            signers.append(SignerStatus(
                state=STATUS_MAP["signer"].get(raw, UNKNOWN_SIGNER_STATE),
                provider_ref=SIGNER_REF_FORMAT.format(rank=element.get("rank")),
                changed_at=_ms_to_datetime(element.get("signatureDate"))))
        # Nobody marked pending (status values unknown): the first open signer is the one whose turn it is.
        if signers and not any(s.state in ("pending", "refused") for s in signers):
            for index, status in enumerate(signers):
                if status.state == "waiting":
                    signers[index] = SignerStatus(state="pending", provider_ref=status.provider_ref,
                                                  changed_at=status.changed_at)
                    break
        return signers

    @staticmethod
    def _contract_state(contract, signers, closed):
        """Our state and its reason; the signatories overrule a status name we may have misread."""
        raw_state = str(contract.get("status") or "")
        reason = str(contract.get(REASON_FIELD) or "").strip()
        state = STATUS_MAP["contract"].get(raw_state.upper(), UNKNOWN_CONTRACT_STATE)
        all_signed = bool(signers) and all(s.state == "signed" for s in signers)
        if state == "error":  # SELL&SIGN itself failed the contract: final, whatever the signatories say
            return state, reason or f"SELL&SIGN reports the contract as {raw_state}"
        if any(s.state == "refused" for s in signers):
            return "refused", reason
        if reason and state not in ("refused", "expired"):
            return "cancelled", reason
        if all_signed and state in ("sent", "signed"):
            return ("signed" if (closed or not REQUIRE_CLOSED_FOR_SIGNED) else "sent"), reason
        if state == "signed" and signers:
            return "sent", reason  # a status we read as final, contradicted by the signatories
        return state, reason

    @staticmethod
    def _completed_at(contract, state, signers):
        """SELL&SIGN's closing date of a finished contract; for signed/refused ones not closed, the
        date of the signature (or refusal) that finished it."""
        if state not in REQUEST_FINAL_STATES:
            return None
        closed_at = _ms_to_datetime(contract.get(CLOSED_DATE_FIELD))
        if closed_at or state not in ("signed", "refused"):
            return closed_at
        dates = [s.changed_at for s in signers if s.changed_at and s.state == state]
        return max(dates) if dates else None

    @staticmethod
    def _echoed_reference(contract):
        number = contract.get(CUSTOMER_NUMBER_FIELD)
        customer = contract.get("customer")
        if not number and isinstance(customer, dict):
            number = customer.get("number")
        return reference_from_customer_number(number)

    # ------------------------------------------------------------------ downloads

    def download_signed(self, provider_ref, hints=None):
        contract_id = self._contract_id(provider_ref)
        response = self._call("GET", DO_PATH, params={"m": SIGNED_METHOD, "contract_id": contract_id})
        if not response.content.startswith(b"%PDF"):
            raise self._error("conflict", f"SELL&SIGN returned no signed PDF for contract {contract_id} "
                              "(it must be signed and closed first)", status_code=response.status_code)
        return Document(f"sellandsign-{contract_id}-signed.pdf", response.content, "application/pdf")

    def download_evidence(self, provider_ref, hints=None):
        """The evidence file ("dossier de preuve"), or ``None`` where SELL&SIGN does not know the
        method (:data:`EVIDENCE_METHOD`)."""
        if not EVIDENCE_METHOD:
            return None
        contract_id = self._contract_id(provider_ref)
        try:
            response = self._call("GET", DO_PATH, params={"m": EVIDENCE_METHOD, "contract_id": contract_id})
        except ProviderError as error:
            if error.kind in ("not_found", "rejected"):
                _logger.warning("SELL&SIGN: no evidence file via %s (%s)", EVIDENCE_METHOD, error)
                return None
            raise
        if not response.content:
            return None
        mimetype = (response.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
        extension = {"application/pdf": "pdf", "application/zip": "zip"}.get(mimetype, "bin")
        return Document(f"sellandsign-{contract_id}-evidence.{extension}", response.content, mimetype)

    # cancel(), remind(): no API call found (NOTES §4.7/§4.8; closeTransaction closes, it does not
    # cancel) -> base class ProviderError "conflict".

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, headers, body, query):
        """SELL&SIGN's callbacks carry no signature (NOTES §5), so authentication is our unguessable
        per-request token in the callback URL. This only checks that a ``token`` query parameter of
        plausible form is present (else :class:`WebhookAuthError`); **the Odoo layer must match it
        to the request, in constant time, before applying anything**.
        """
        token = query_value(query, TOKEN_QUERY_PARAM)
        if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
            raise WebhookAuthError("SELL&SIGN notification without a valid per-request token")

    def parse_webhook(self, headers, body, query):
        """A "contract X changed" ping (module docstring): only the contract id is taken from it.

        The id comes from our ``contract_id`` URL parameter (if SELL&SIGN filled in ``<id>``) and/or
        the body (form fields or a JSON object); when both name one, they must agree. ``status``
        stays ``None``: the body is unsigned and its state names unknown, so the core reads the
        contract through the API. ``reference`` is our ``ref`` URL parameter. ``dedup_key`` digests
        the body, so a repeated delivery is recognised; two different pings with byte-identical bodies
        collapse too, which is harmless because each triggers a full read and the scheduled status
        refresh catches anything missed.
        """
        raw = body if isinstance(body, bytes) else (body or "").encode("utf-8")
        data = self._webhook_fields(raw)
        contract_id = self._webhook_contract_id(query, data)
        event = next((str(data[k]) for k in BODY_EVENT_KEYS
                      if isinstance(data.get(k), (str, int)) and not isinstance(data.get(k), bool)), "")
        if not EVENT_PATTERN.match(event):
            event = "changed"
        return [Notification(dedup_key=f"sellandsign:{contract_id}:{body_digest(raw)}", event_type=event,
                             provider_ref=contract_id, status=None, payload=data or None,
                             reference=reference_from_query(query))]

    @staticmethod
    def _webhook_fields(raw):
        """The body as a dict: form fields (what we expect) or a JSON object; ``{}`` when empty."""
        if not raw.strip():
            return {}
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebhookMalformed("SELL&SIGN notification body is not text") from exc
        # The payload is undocumented, so its Content-Type is not relied on: JSON is recognised by
        # its opening bracket, which no form field name starts with.
        if text.lstrip()[:1] in ("{", "["):
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise WebhookMalformed("SELL&SIGN notification body is not JSON") from exc
            if not isinstance(data, dict):
                raise WebhookMalformed("SELL&SIGN notification body is not an object")
            return data
        if "=" not in text:
            raise WebhookMalformed("SELL&SIGN notification body is neither a form nor JSON")
        fields = urllib.parse.parse_qs(text.strip(), keep_blank_values=True, errors="replace")
        ambiguous = sorted(key for key, values in fields.items() if len(set(values)) > 1)
        if ambiguous:
            raise WebhookMalformed(f"SELL&SIGN notification repeats {', '.join(ambiguous)[:80]} "
                                   "with different values")
        return {key: values[0] for key, values in fields.items()}

    @staticmethod
    def _webhook_contract_id(query, data):
        from_query = query_value(query, CALLBACK_ID_PARAM)
        if from_query in (None, "", CALLBACK_ID_PLACEHOLDER):
            from_query = None
        from_body = next((data[k] for k in BODY_ID_KEYS if data.get(k) not in (None, "")), None)
        candidates = [c for c in (from_query, from_body) if c is not None]
        if not candidates:
            raise WebhookMalformed("SELL&SIGN notification names no contract")
        for candidate in candidates:
            if isinstance(candidate, bool) or not isinstance(candidate, (str, int)) \
                    or not str(candidate).strip().isdigit():
                raise WebhookMalformed(f"SELL&SIGN notification names an invalid contract id {str(candidate)[:40]!r}")
        ids = {str(c).strip() for c in candidates}
        if len(ids) > 1:
            raise WebhookMalformed("SELL&SIGN notification names two different contracts")
        return ids.pop()

