"""FakeAutenti: a strict stand-in for Autenti's Public API v2, built from NOTES.md.

Everything lives under ``/api/v2`` (so ``fake.api_url`` is the client's ``base_url``) except the
webhook key set, served at ``/jwks`` (``fake.jwks_url``). Rules (NOTES section in brackets):

* token endpoint (§2a): JWT-bearer grant only; the assertion must be RS256-signed by the JWK
  registered for the client id, carry the registered ``kid``, ``aud=autenti.com``, ``email`` (+
  ``email_verified``), ``iss``, ``sub``, a fresh ``jti`` and a sane ``iat``/``exp``; the secret
  must match. Issued tokens expire after ``token_lifetime`` seconds.
* API calls (§2): ``Authorization: Bearer`` with a live token, else 401.
* bodies (§4.1-4.4): ``title`` required, ``processLanguage`` enum, parties with an e-mail contact,
  role enum, constraint classifiers known, priorities integers; multipart upload with a ``file``
  part that is a PDF; actions need base64 JSON ``X-ASSERTION`` values with the right classifiers.
* signing order (§4.2): :meth:`sign` / :meth:`reject` (test-driven) raise :class:`FakeAutentiError`
  when it is not that party's turn (lower priority number first).
* callbacks (§7): on every change, a JSON array with one event goes to each registered URL, signed
  as a detached compact JWS (RS256) with the fake's webhook key, in header ``x-jws-signature``.
* ``GET …/files`` answers NDJSON (§4.6); completion produces ``SIGNED_CONTENT_FILE`` (the original
  bytes plus a marker), ``SIGNATURE_CARD`` (a PDF) and ``CONTENT_ARCHIVE`` (a ZIP).
* reminders (§4.8): first 403 + ``X-Challenge``, then two assertions.
* state rules: files and parties only on a draft (``initial_status``); DOCUMENT_SENT only from the
  draft (and, with ``allow_send_after_withdrawal``, from WITHDRAWN); withdrawal from PROCESSING
  (and the draft with ``allow_withdraw_draft``). :meth:`fail` makes Autenti fail a process.
* the process keeps what we send, the title included (where our reference travels; no create field
  is an external id), so :meth:`processes_with_reference` finds what a person would search for.

[GUESS] points of the notes are attributes set in ``__init__`` (see "configurable" there).
"""
import base64
import copy
import datetime
import io
import json
import re
import time
import uuid
import zipfile

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ...api import keys as rsa_keys

from .base import FakeProviderServer, json_response

API = "/api/v2"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LANGUAGES = ("pl", "en", "de")
ROLES = ("SIGNER", "APPROVER", "SENDER", "REVIEWER", "VIEWER")
ORDERED_ROLES = ("SIGNER", "APPROVER")
CONTACT_EMAIL = "CONTACT-TYPE:EMAIL"
MEMBER = "PARTY_RELATIONSHIP-TYPE:MEMBER"
SIGNATURE_TYPES = ("SIGNATURE_PROVIDER-SIGNATURE_TYPE:BASIC", "SIGNATURE_PROVIDER-SIGNATURE_TYPE:ADVANCED",
                   "SIGNATURE_PROVIDER-SIGNATURE_TYPE:QUALIFIED")
C_SIGNATURE_TYPE = "CONSTRAINT-UNIQUE_TYPE:SIGNATURE_TYPE"
C_PRIORITY = "CONSTRAINT-UNIQUE_TYPE:PARTICIPATION_PRIORITY"
KNOWN_CONSTRAINTS = (C_SIGNATURE_TYPE, C_PRIORITY, "CONSTRAINT-UNIQUE_TYPE:PHONE_NUMBER_VERIFICATION_REQUIRED",
                     "CONSTRAINT-UNIQUE_TYPE:VISUALISATION", "CONSTRAINT-UNIQUE_TYPE:IDENTITY_VERIFICATION")
KNOWN_ACTIONS = ("ACTION:SIGNATURE_APPLICATION", "ACTION:READ_SENSITIVE_METADATA")
CH_ACTION = "CHALLENGE_CLASSIFIER-UNIQUE_TYPE:ACTION_SELECTION"
CH_REMINDER = "CHALLENGE_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_REMINDER_PARTY_SELECTION"
EV = "EVENT_CLASSIFIER-UNIQUE_TYPE:"
EV_SENT = EV + "DOCUMENT_SENT"
EV_WITHDRAWAL = EV + "DOCUMENT_WITHDRAWAL"
EV_REMINDER = EV + "DOCUMENT_REMINDER_SENT"
EV_REJECTION = EV + "SIGNATURE_REJECTION"
EV_COMPLETED = EV + "DOCUMENT_PROCESS_COMPLETED"
CALLBACK_ADAPTER = "CALLBACK_ADAPTER:API_V2"
TAXID_RE = re.compile(r"^TAXID-[A-Z]{2}-[A-Z]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# A tiny valid-looking PDF for the signature card.
CARD_PDF = b"%PDF-1.4\n% Autenti signature card (fake)\n%%EOF\n"


_INITIAL_WEBHOOK_PEM = []


def _initial_webhook_pem():
    """One webhook key shared by all fakes of a run (key generation costs ~0.1 s each)."""
    if not _INITIAL_WEBHOOK_PEM:
        _INITIAL_WEBHOOK_PEM.append(rsa_keys.generate_private_key_pem())
    return _INITIAL_WEBHOOK_PEM[0]


class FakeAutentiError(Exception):
    """A test drove the fake into something Autenti would not allow (e.g. signing out of order)."""


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class FakeAutenti(FakeProviderServer):
    name = "autenti"

    def __init__(self):
        # --- configurable ([GUESS] points of NOTES §9) ---
        self.accept_form_token_body = True  # token body form-encoded ([2nd] WEBCON)
        self.accept_json_token_body = True  # token body as JSON ([2nd] older plugin / S6)
        self.clock_skew = 60  # seconds of iat/exp tolerance
        self.max_assertion_lifetime = 600  # max exp - iat
        self.require_iss = True  # "should be present ... may become mandatory"
        self.require_sub = True
        self.require_email_verified = True
        self.reject_jti_replay = True
        self.token_lifetime = 3600  # expires_in of issued tokens
        self.initial_status = "DRAFT"
        self.priority_ascending = True  # [GUESS] priority 1 signs first (False: highest first)
        self.files_ndjson = True  # GET …/files: NDJSON (else one JSON array)
        self.send_response_events = True  # DOCUMENT_SENT answer carries the event array
        self.allow_withdraw_draft = True  # can a never-sent draft be withdrawn?
        # [GUESS] api.autenti.WITHDRAWAL_IS_FINAL: a withdrawn process can never be sent. True makes
        # the fake accept DOCUMENT_SENT on a WITHDRAWN process (a send still in flight revives it).
        self.allow_send_after_withdrawal = False
        self.max_title_length = None  # [GUESS] Autenti publishes no limit (api: TITLE_MAX_LENGTH)
        # [GUESS] api.autenti.FAILURE_REASON_KEYS: where fail() puts Autenti's explanation (None: nowhere)
        self.failure_reason_key = "statusDescription"
        self.failure_event = EV + "SIGNATURE_FAILURE"  # [GUESS] the event fail() adds to a party
        self.allowed_upload_purposes = ("SOURCE_FILE",)
        self.allowed_upload_mimetypes = ("application/pdf",)
        self.require_https_callbacks = False  # real Autenti probably does; tests use http://127.0.0.1
        self.max_callbacks = 5
        self.produce_signature_card = True
        self.produce_content_archive = True
        self.signed_marker = b"\n%AUTENTI-SIGNED\n"
        self.signature_event = EV + "SIGNATURE_APPLIED"  # [GUESS] name of a party's signing event
        self.webhook_header_extra = {}  # extra protected-header fields of the callback JWS
        self.time_offset = 0.0  # shift the fake's clock (token expiry tests)
        # --- state ---
        self.clients = {}  # client_id -> {"secret", "jwk", "organisation", "users"}
        self.tokens = {}  # token -> {"client_id", "email", "expires_at"}
        self.token_requests = []  # decoded claims of accepted assertions
        self.seen_jti = set()
        self.processes = {}  # id -> process dict (wire shape) + private keys
        self.contents = {}  # (process_id, file_id) -> bytes
        self.callbacks = {}  # client_id -> [registration]
        self.reminders = []  # (process_id, [party ids])
        self.route_faults = []  # [method, regex, status, body, remaining]
        self.webhook_keys = []  # [(kid, private pem)], newest last; JWKS serves all
        self._key_cache = {}
        self.webhook_keys = [("webhook-initial", _initial_webhook_pem())]
        super().__init__()

    # ------------------------------------------------------------------ test API

    @property
    def api_url(self):
        return self.base_url + API

    @property
    def jwks_url(self):
        return self.base_url + "/jwks"

    def now(self):
        return time.time() + self.time_offset

    def register_client(self, client_id, secret, jwk, organisation="", users=None):
        """Paste our public JWK into Autenti's client application (what the admin does)."""
        self.clients[client_id] = {"secret": secret, "jwk": dict(jwk), "organisation": organisation,
                                   "users": set(u.lower() for u in users) if users else None}

    def rotate_webhook_key(self, keep_old=False):
        pem = rsa_keys.generate_private_key_pem()
        kid = "webhook-" + uuid.uuid4().hex[:8]
        self.webhook_keys = (self.webhook_keys if keep_old else []) + [(kid, pem)]
        return kid

    def expire_tokens(self):
        for record in self.tokens.values():
            record["expires_at"] = 0

    def fail_on(self, method, path_regex, status=500, body=None, times=1):
        """Make the next ``times`` calls to matching paths fail (``fail_next`` hits any path)."""
        self.route_faults.append([method.upper(), re.compile(path_regex), status, body, times])

    def process_by_title(self, title):
        return next(p for p in self.processes.values() if p["title"] == title)

    def processes_with_reference(self, reference):
        return [p for p in self.processes.values() if reference in p["title"]]

    def create_requests(self):
        return [r.json() for r in self.requests_to("POST", r"/document-processes$")]

    def sign(self, process_id, email):
        """The party with ``email`` signs (test-driven). Raises when it is not their turn."""
        with self.lock:
            process, entry = self._acting_party(process_id, email)
            entry["participationStatus"] = "COMPLETED"
            entry["events"].append({"eventType": self.signature_event, "timestamp": _now_iso(),
                                    "attributes": {}})
            self._touch(process)
            self._advance(process)
            self._notify(process, self.signature_event, actor=entry["party"]["id"])
            if process["status"] == "COMPLETED":
                self._complete(process)
                self._notify(process, EV_COMPLETED)

    def reject(self, process_id, email, reason=""):
        """The party with ``email`` refuses to sign (test-driven)."""
        with self.lock:
            process, entry = self._acting_party(process_id, email)
            entry["participationStatus"] = "REJECTED"
            entry["events"].append({"eventType": EV_REJECTION, "timestamp": _now_iso(),
                                    "attributes": {"comment": reason}})
            process["status"] = "REJECTED"
            for other in process["parties"]:
                if other["participationStatus"] in ("NONE", "PENDING"):
                    other["participationStatus"] = "OBSOLETE"
            self._touch(process)
            self._notify(process, EV_REJECTION, actor=entry["party"]["id"])

    def fail(self, process_id, reason="", email=None, status="FAILED"):
        """Autenti fails the process (test-driven), e.g. a signature provider error.

        ``reason`` goes to ``failure_reason_key`` of the process and, with ``email``, into a
        ``failure_event`` of that party, which becomes FAILED. No callback is queued: which event
        Autenti sends for a failure is unknown (NOTES §7 lists none).
        """
        with self.lock:
            process = self.processes.get(process_id)
            if process is None or process["status"] != "PROCESSING":
                raise FakeAutentiError(f"only a PROCESSING process can fail, not {process_id}")
            if email is not None:
                entry = next((p for p in process["parties"] if p["_email"] == email.lower()), None)
                if entry is None:
                    raise FakeAutentiError(f"{email} is not a party of {process_id}")
                entry["participationStatus"] = "FAILED"
                entry["events"].append({"eventType": self.failure_event, "timestamp": _now_iso(),
                                        "attributes": {"comment": reason}})
            process["status"] = status
            if self.failure_reason_key and reason:
                process[self.failure_reason_key] = reason
            self._touch(process)

    # ------------------------------------------------------------------ helpers

    def _private_key(self, pem):
        key = self._key_cache.get(pem)
        if key is None:
            key = self._key_cache[pem] = rsa_keys.load_private_key(pem)
        return key

    def _error(self, status, message, code="ERROR", headers=None):
        # [GUESS] Autenti's error body is unknown (NOTES §8); this shape is ours.
        return json_response(status, {"status": status, "code": code, "message": message}, headers)

    def _guarded(self, handler, authenticated=True):
        def run(request):
            for fault in self.route_faults:
                if fault[4] > 0 and fault[0] == request.method and fault[1].search(request.path):
                    fault[4] -= 1
                    return self._error(fault[2], fault[3] or f"injected {fault[2]}")
            if authenticated:
                auth = request.headers.get("Authorization") or ""
                record = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
                if record is None or record["expires_at"] <= self.now():
                    return self._error(401, "missing, unknown or expired access token", "INVALID_TOKEN",
                                       {"WWW-Authenticate": 'Bearer error="invalid_token"'})
                request.token = record
            return handler(request)
        return run

    def _process_for(self, request):
        process = self.processes.get(request.params["pid"])
        if process is None or process["_client_id"] != request.token["client_id"]:
            return None
        return process

    def _public(self, process, email=None):
        data = {k: copy.deepcopy(v) for k, v in process.items() if not k.startswith("_")}
        for entry in data["parties"]:
            entry["currentUser"] = bool(email) and entry["_email"] == (email or "").lower()
            entry.pop("_email", None)
            entry.pop("_priority", None)
        return data

    def _touch(self, process):
        process["modifiedAt"] = _now_iso()

    def _acting_party(self, process_id, email):
        process = self.processes.get(process_id)
        if process is None:
            raise FakeAutentiError(f"unknown process {process_id}")
        if process["status"] != "PROCESSING":
            raise FakeAutentiError(f"process {process_id} is {process['status']}, nobody can act")
        entry = next((p for p in process["parties"] if p["_email"] == email.lower()), None)
        if entry is None:
            raise FakeAutentiError(f"{email} is not a party of {process_id}")
        if entry["role"] not in ORDERED_ROLES:
            raise FakeAutentiError(f"{email} is a {entry['role']}, not a signer")
        if entry["participationStatus"] != "PENDING":
            earlier = [p["_email"] for p in process["parties"] if p["role"] in ORDERED_ROLES
                       and p["_priority"] < entry["_priority"] and p["participationStatus"] != "COMPLETED"]
            raise FakeAutentiError(
                f"{email} cannot act now (status {entry['participationStatus']}); waiting for {earlier}")
        return process, entry

    def _advance(self, process):
        """Open the next priority group once the current one is complete."""
        ordered = [p for p in process["parties"] if p["role"] in ORDERED_ROLES]
        open_ones = [p for p in ordered if p["participationStatus"] in ("NONE", "PENDING")]
        if not open_ones:
            process["status"] = "COMPLETED"
            return
        if any(p["participationStatus"] == "PENDING" for p in open_ones):
            return
        first = min(p["_priority"] for p in open_ones)
        for p in open_ones:
            if p["_priority"] == first:
                p["participationStatus"] = "PENDING"

    def _add_file(self, process, purpose, filename, mimetype, content, suffix=""):
        file_id = f"FILE-{purpose}:{uuid.uuid4().hex}{suffix}"
        record = {"id": file_id, "filename": filename, "version": "1", "size": len(content),
                  "filePurpose": purpose, "mimeType": mimetype}
        process["files"].append(record)
        self.contents[(process["id"], file_id)] = content
        return record

    def _complete(self, process):
        source = next(f for f in process["files"] if f["filePurpose"] == "SOURCE_FILE")
        original = self.contents[(process["id"], source["id"])]
        signed = original + self.signed_marker
        base = source["filename"].rsplit(".", 1)[0]
        self._add_file(process, "SIGNED_CONTENT_FILE", f"{base}_signed.pdf", "application/pdf", signed, "/DTBS")
        if self.produce_signature_card:
            self._add_file(process, "SIGNATURE_CARD", f"{base}_signature_card.pdf", "application/pdf",
                           CARD_PDF, "/DTBS")
        if self.produce_content_archive:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr(f"{base}_signed.pdf", signed)
            self._add_file(process, "CONTENT_ARCHIVE", f"{base}.zip", "application/zip", buffer.getvalue())

    def sign_jws(self, body, kid=None, pem=None, header=None):
        """A detached compact JWS over ``body`` with the fake's (newest) webhook key."""
        default_kid, default_pem = self.webhook_keys[-1]
        protected = {"alg": "RS256", "kid": kid or default_kid, **self.webhook_header_extra, **(header or {})}
        head = _b64url(json.dumps(protected, separators=(",", ":")).encode())
        key = self._private_key(pem or default_pem)
        signature = key.sign(f"{head}.{_b64url(body)}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}..{_b64url(signature)}"

    def _notify(self, process, event_type, actor=None):
        event = {"id": uuid.uuid4().hex, "actor": {"id": actor or "SYSTEM", "type": "PARTY" if actor else "SYSTEM"},
                 "eventType": event_type, "object": {"id": process["id"], "type": "DOCUMENT_PROCESS"},
                 "timestamp": _now_iso()}
        body = json.dumps([event]).encode()
        for registration in self.callbacks.get(process["_client_id"], ()):
            url = registration["callbackParameters"]["callbackUrl"]
            self.queue_callback(url, body, {"x-jws-signature": self.sign_jws(body)})

    # ------------------------------------------------------------------ routes

    def register_routes(self):
        g = self._guarded
        self.route("POST", API + "/auth/token", g(self._token, authenticated=False))
        self.route("GET", "/jwks", g(self._jwks, authenticated=False))
        self.route("POST", API + "/document-processes", g(self._create))
        self.route("GET", API + "/document-processes/{pid}", g(self._get))
        self.route("POST", API + "/document-processes/{pid}/parties", g(self._add_party))
        self.route("GET", API + "/document-processes/{pid}/files", g(self._list_files))
        self.route("POST", API + "/document-processes/{pid}/files", g(self._upload))
        self.route("GET", API + "/document-processes/{pid}/files/{fid}/content", g(self._content))
        self.route("POST", API + "/document-processes/{pid}/actions", g(self._actions))
        self.route("GET", API + "/applications/callbacks", g(self._list_callbacks))
        self.route("POST", API + "/applications/callbacks", g(self._add_callback))
        self.route("DELETE", API + "/applications/callbacks/{cid}", g(self._delete_callback))

    def _jwks(self, request):
        keys = [self._public_jwk(kid, pem) for kid, pem in self.webhook_keys]
        return json_response(200, {"keys": keys})

    def _public_jwk(self, kid, pem):
        numbers = self._private_key(pem).public_key().public_numbers()
        def b64(value):
            return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))
        return {"kty": "RSA", "e": b64(numbers.e), "n": b64(numbers.n), "use": "sig", "alg": "RS256", "kid": kid}

    # --- token ---------------------------------------------------------------------------------

    def _token(self, request):
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/x-www-form-urlencoded" and self.accept_form_token_body:
            fields = request.form()
        elif ctype == "application/json" and self.accept_json_token_body:
            fields = request.json()
            if not isinstance(fields, dict):
                return self._oauth_error(400, "invalid_request", "body is not a JSON object")
        else:
            return self._oauth_error(400, "invalid_request", f"unsupported content type {ctype!r}")
        if fields.get("grant_type") != JWT_BEARER:
            return self._oauth_error(400, "unsupported_grant_type", f"grant_type {fields.get('grant_type')!r}")
        client = self.clients.get(fields.get("client_id") or "")
        if client is None or fields.get("client_secret") != client["secret"]:
            return self._oauth_error(401, "invalid_client", "unknown client or wrong secret")
        assertion = fields.get("assertion") or ""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return self._oauth_error(400, "invalid_grant", "assertion is not a JWT")
        if header.get("alg") != "RS256":
            return self._oauth_error(400, "invalid_grant", "assertion must be RS256")
        registered_kid = client["jwk"].get("kid")
        if header.get("kid") != registered_kid:
            return self._oauth_error(400, "invalid_grant", f"unknown key id {header.get('kid')!r}")
        public = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(client["jwk"]))
        try:
            claims = jwt.decode(assertion, public, algorithms=["RS256"], audience="autenti.com",
                                options={"require": ["exp", "iat", "aud"], "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.InvalidAudienceError:
            return self._oauth_error(400, "invalid_grant", "aud must be autenti.com")
        except jwt.PyJWTError as exc:
            return self._oauth_error(400, "invalid_grant", f"assertion rejected: {exc}")
        now = self.now()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return self._oauth_error(400, "invalid_grant", "iat/exp must be integers")
        if iat > now + self.clock_skew:
            return self._oauth_error(400, "invalid_grant", "assertion issued in the future")
        if exp < now - self.clock_skew:
            return self._oauth_error(400, "invalid_grant", "assertion expired")
        if exp - iat > self.max_assertion_lifetime or exp <= iat:
            return self._oauth_error(400, "invalid_grant", "assertion lifetime out of range")
        email = claims.get("email")
        if not isinstance(email, str) or not EMAIL_RE.match(email):
            return self._oauth_error(400, "invalid_grant", "email claim missing")
        if self.require_email_verified and claims.get("email_verified") is not True:
            return self._oauth_error(400, "invalid_grant", "email_verified must be true")
        if self.require_iss and not claims.get("iss"):
            return self._oauth_error(400, "invalid_grant", "iss claim missing")
        if client["organisation"] and claims.get("iss") != client["organisation"]:
            return self._oauth_error(400, "invalid_grant", "iss is not the registered organisation")
        if self.require_sub and not claims.get("sub"):
            return self._oauth_error(400, "invalid_grant", "sub claim missing")
        jti = claims.get("jti")
        if not jti or (self.reject_jti_replay and jti in self.seen_jti):
            return self._oauth_error(400, "invalid_grant", "jti missing or replayed")
        if client["users"] is not None and email.lower() not in client["users"]:
            return self._oauth_error(400, "invalid_grant", f"{email} is not a user of this organisation")
        self.seen_jti.add(jti)
        self.token_requests.append(claims)
        token = uuid.uuid4().hex
        self.tokens[token] = {"client_id": fields["client_id"], "email": email.lower(),
                              "expires_at": now + self.token_lifetime}
        return json_response(200, {"access_token": token, "token_type": "Bearer",
                                   "expires_in": int(self.token_lifetime)})

    @staticmethod
    def _oauth_error(status, error, description):
        return json_response(status, {"error": error, "error_description": description})

    # --- validation ------------------------------------------------------------------------------

    def _party_errors(self, entry):
        """Why a party entry (NOTES §4.2 wire shape) would be refused, or ``None``."""
        if not isinstance(entry, dict) or not isinstance(entry.get("party"), dict):
            return "party entry must be an object with a party object"
        role = entry.get("role")
        if role not in ROLES:
            return f"role must be one of {ROLES}"
        party = entry["party"]
        if party.get("id") == "PARTY-TENANT:SELF":
            return None if role == "SENDER" else "PARTY-TENANT:SELF can only be SENDER"
        contacts = party.get("contacts")
        if not isinstance(contacts, list) or not contacts:
            return "party.contacts required"
        emails = []
        for contact in contacts:
            if not isinstance(contact, dict) or contact.get("type") != CONTACT_EMAIL:
                return f"contact type must be {CONTACT_EMAIL}"
            email = (contact.get("attributes") or {}).get("email")
            if not isinstance(email, str) or not EMAIL_RE.match(email):
                return "contact attributes.email must be an e-mail address"
            emails.append(email)
        for field in ("firstName", "lastName", "name"):
            if field in party and not isinstance(party[field], str):
                return f"party.{field} must be a string"
        if not any((party.get(f) or "").strip() for f in ("firstName", "lastName", "name")):
            return "party needs a name"
        for rel in party.get("relationships") or ():
            if not isinstance(rel, dict) or rel.get("type") != MEMBER:
                return f"relationship type must be {MEMBER}"
            org = rel.get("party")
            if not isinstance(org, dict) or not (org.get("name") or "").strip():
                return "relationship party.name required"
            for ext in org.get("extIds") or ():
                if not isinstance(ext, dict) or not TAXID_RE.match(str(ext.get("identificationSpace"))) \
                        or not isinstance(ext.get("identifier"), str) or not ext["identifier"]:
                    return "extIds need identificationSpace TAXID-<CC>-<TYPE> and an identifier"
            attributes = rel.get("attributes")
            if attributes is not None and (not isinstance(attributes, dict) or not isinstance(
                    attributes.get("relationshipDescription", ""), str)):
                return "relationship attributes.relationshipDescription must be a string"
        constraints = entry.get("constraints", [])
        if not isinstance(constraints, list):
            return "constraints must be an array"
        priorities = []
        for constraint in constraints:
            if not isinstance(constraint, dict):
                return "constraint must be an object"
            classifiers = constraint.get("classifiers")
            if not isinstance(classifiers, list) or len(classifiers) != 1 or classifiers[0] not in KNOWN_CONSTRAINTS:
                return f"unknown constraint classifiers {classifiers!r}"
            attributes = constraint.get("attributes") or {}
            actions = constraint.get("constrainedActions", [])
            if not isinstance(actions, list) or any(a not in KNOWN_ACTIONS for a in actions):
                return f"unknown constrainedActions {actions!r}"
            if classifiers[0] == C_SIGNATURE_TYPE:
                required = attributes.get("requiredClassifiers")
                if actions != ["ACTION:SIGNATURE_APPLICATION"] or not isinstance(required, list) \
                        or not required or any(r not in SIGNATURE_TYPES for r in required):
                    return "SIGNATURE_TYPE constraint needs ACTION:SIGNATURE_APPLICATION and known signature types"
            if classifiers[0] == C_PRIORITY:
                priority = attributes.get("priority")
                if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
                    return "PARTICIPATION_PRIORITY needs an integer attributes.priority >= 1"
                if role not in ORDERED_ROLES:
                    return "PARTICIPATION_PRIORITY only for SIGNER/APPROVER"
                priorities.append(priority)
        if len(priorities) > 1:
            return "one PARTICIPATION_PRIORITY per party"
        return None

    def _new_party(self, entry, process):
        party = copy.deepcopy(entry["party"])
        email = next((c["attributes"]["email"] for c in party.get("contacts") or ()), "")
        if party.get("id") != "PARTY-TENANT:SELF":
            party["id"] = f"PARTY-EMAIL:{email}"
        priority = next((c["attributes"]["priority"] for c in entry.get("constraints", ())
                         if c["classifiers"] == [C_PRIORITY]), 1)
        return {"party": party, "role": entry["role"], "participationStatus": "NONE",
                "constraints": copy.deepcopy(entry.get("constraints", [])), "events": [],
                "_email": email.lower(), "_priority": priority if self.priority_ascending else -priority}

    # --- document processes ------------------------------------------------------------------------

    def _create(self, request):
        body = request.json()
        if not isinstance(body, dict):
            return self._error(400, "body must be a JSON object", "INVALID_BODY")
        if not isinstance(body.get("title"), str) or not body["title"].strip():
            return self._error(400, "title is required", "INVALID_TITLE")
        if self.max_title_length is not None and len(body["title"]) > self.max_title_length:
            return self._error(400, f"title longer than {self.max_title_length}", "INVALID_TITLE")
        if "processLanguage" in body and body["processLanguage"] not in LANGUAGES:
            return self._error(400, f"processLanguage must be one of {LANGUAGES}", "INVALID_LANGUAGE")
        if "description" in body and not isinstance(body["description"], str):
            return self._error(400, "description must be a string", "INVALID_BODY")
        parties = body.get("parties", [])
        if not isinstance(parties, list):
            return self._error(400, "parties must be an array", "INVALID_BODY")
        for entry in parties:
            problem = self._party_errors(entry)
            if problem:
                return self._error(400, problem, "INVALID_PARTY")
        now = _now_iso()
        process = {
            "id": f"DOCUMENT_PROCESS:{uuid.uuid4().hex}", "title": body["title"],
            "description": body.get("description", ""), "processLanguage": body.get("processLanguage", "pl"),
            "status": self.initial_status, "parties": [], "files": [], "tags": [],
            "constraints": copy.deepcopy(body.get("constraints", [])), "flags": [],
            "createdAt": now, "modifiedAt": now, "_client_id": request.token["client_id"],
            "_creator": request.token["email"],
        }
        for entry in parties:
            problem = self._append_party(process, entry)
            if problem:
                return self._error(400, problem, "DUPLICATE_PARTY")
        with self.lock:
            self.processes[process["id"]] = process
        return json_response(201, self._public(process, request.token["email"]))

    def _append_party(self, process, entry):
        party = self._new_party(entry, process)
        if party["_email"] and any(p["_email"] == party["_email"] for p in process["parties"]):
            return f"{party['_email']} is already a party"
        process["parties"].append(party)
        return None

    def _get(self, request):
        process = self._process_for(request)
        if process is None:
            return self._error(404, "document process not found", "NOT_FOUND")
        return json_response(200, self._public(process, request.token["email"]))

    def _add_party(self, request):
        process = self._process_for(request)
        if process is None:
            return self._error(404, "document process not found", "NOT_FOUND")
        if process["status"] != self.initial_status:
            return self._error(409, "parties can only be added to a draft", "INVALID_STATE")
        entry = request.json()
        problem = self._party_errors(entry) or self._append_party(process, entry)
        if problem:
            return self._error(400, problem, "INVALID_PARTY")
        public = self._public(process, request.token["email"])["parties"][-1]
        return json_response(200, public)

    def _list_files(self, request):
        process = self._process_for(request)
        if process is None:
            return self._error(404, "document process not found", "NOT_FOUND")
        if self.files_ndjson:
            body = "".join(json.dumps(f) + "\n" for f in process["files"]).encode()
            return 200, body, {"Content-Type": "application/stream+json"}
        return json_response(200, process["files"])

    def _upload(self, request):
        process = self._process_for(request)
        if process is None:
            return self._error(404, "document process not found", "NOT_FOUND")
        if process["status"] != self.initial_status:
            return self._error(409, "files can only be added to a draft", "INVALID_STATE")
        parts = request.multipart()
        if parts is None or "file" not in parts:
            return self._error(400, "multipart/form-data with a file part required", "INVALID_BODY")
        filename, _ctype, content = parts["file"]
        purpose, mimetype = "SOURCE_FILE", "application/pdf"
        if "fileMeta" in parts:  # variant (a) of NOTES §4.3
            try:
                meta = json.loads(parts["fileMeta"][2])
            except ValueError:
                return self._error(400, "fileMeta is not JSON", "INVALID_BODY")
            purpose = meta.get("filePurpose", purpose)
            mimetype = meta.get("mimeType", mimetype)
            filename = meta.get("filename") or filename
        if "filePurpose" in parts:  # variant (b)
            purpose = parts["filePurpose"][2].decode()
        if "mimeType" in parts:
            mimetype = parts["mimeType"][2].decode()
        if purpose not in self.allowed_upload_purposes:
            return self._error(400, f"filePurpose {purpose!r} not allowed", "INVALID_PURPOSE")
        if mimetype not in self.allowed_upload_mimetypes:
            return self._error(400, f"mimeType {mimetype!r} not allowed", "INVALID_MIME_TYPE")
        if not content or not filename:
            return self._error(400, "file part needs a filename and content", "INVALID_FILE")
        if mimetype == "application/pdf" and not content.startswith(b"%PDF"):
            return self._error(400, "file is not a PDF", "INVALID_FILE")
        with self.lock:
            record = self._add_file(process, purpose, filename, mimetype, content)
            self._touch(process)
        return json_response(200, record)

    def _content(self, request):
        process = self._process_for(request)
        if process is None:
            return self._error(404, "document process not found", "NOT_FOUND")
        key = (process["id"], request.params["fid"])
        if key not in self.contents:
            return self._error(404, "file not found", "NOT_FOUND")
        record = next(f for f in process["files"] if f["id"] == request.params["fid"])
        return 200, self.contents[key], {"Content-Type": record["mimeType"]}

    # --- actions (NOTES §4.4, 4.7, 4.8) -------------------------------------------------------------

    def _assertions(self, request):
        """Decode every X-ASSERTION value (repeated header lines or comma-joined: [GUESS] both)."""
        raw_values = request.headers.get_all("X-ASSERTION") or []
        values = [v.strip() for raw in raw_values for v in raw.split(",") if v.strip()]
        result = []
        for value in values:
            try:
                data = json.loads(base64.b64decode(value, validate=True))
            except (ValueError, TypeError):
                return None, f"X-ASSERTION {value[:20]}… is not base64 JSON"
            if not isinstance(data, dict) or not isinstance(data.get("classifiers"), list) \
                    or not isinstance((data.get("attributes") or {}).get("selectedIds"), list):
                return None, "X-ASSERTION needs classifiers[] and attributes.selectedIds[]"
            result.append(data)
        return result, None

    def _actions(self, request):
        process = self._process_for(request)
        if process is None:
            return self._error(404, "document process not found", "NOT_FOUND")
        if request.body and not isinstance(request.json(), dict):
            return self._error(400, "body must be empty or a JSON object", "INVALID_BODY")
        assertions, problem = self._assertions(request)
        if problem:
            return self._error(400, problem, "INVALID_ASSERTION")
        selections = [a for a in assertions if a["classifiers"] == [CH_ACTION]]
        if len(selections) != 1 or len(selections[0]["attributes"]["selectedIds"]) != 1:
            challenge = {"classifiers": [CH_ACTION], "attributes": {"mode": "SINGLE", "options": [
                {"id": e, "availability": "AVAILABLE"} for e in (EV_SENT, EV_WITHDRAWAL, EV_REMINDER)]}}
            return self._challenge(challenge)
        unknown = [a["classifiers"] for a in assertions if a["classifiers"] not in ([CH_ACTION], [CH_REMINDER])]
        if unknown:
            return self._error(400, f"unknown assertion classifiers {unknown}", "INVALID_ASSERTION")
        event = selections[0]["attributes"]["selectedIds"][0]
        with self.lock:
            if event == EV_SENT:
                return self._send(process)
            if event == EV_WITHDRAWAL:
                return self._withdraw(process)
            if event == EV_REMINDER:
                parties = [a for a in assertions if a["classifiers"] == [CH_REMINDER]]
                return self._remind(process, parties[0]["attributes"]["selectedIds"] if parties else None)
        return self._error(400, f"unknown action {event!r}", "INVALID_ACTION")

    def _challenge(self, challenge):
        value = _b64url(json.dumps(challenge).encode())
        return self._error(403, "challenge", "CHALLENGE", {"X-Challenge": value})

    def _event(self, process, event_type):
        return {"id": uuid.uuid4().hex, "eventType": event_type, "timestamp": _now_iso(),
                "object": {"id": process["id"], "type": "DOCUMENT_PROCESS"}}

    def _send(self, process):
        revivable = ("WITHDRAWN",) if self.allow_send_after_withdrawal else ()
        if process["status"] not in (self.initial_status, *revivable):
            return self._error(409, f"process is {process['status']}, not a draft", "INVALID_STATE")
        for party in process["parties"]:  # only reached for a revived withdrawn process
            if party["participationStatus"] == "OBSOLETE":
                party["participationStatus"] = "NONE"
        if not any(p["role"] in ORDERED_ROLES for p in process["parties"]):
            return self._error(400, "a process needs at least one SIGNER", "NO_SIGNER")
        if not any(f["filePurpose"] == "SOURCE_FILE" for f in process["files"]):
            return self._error(400, "a process needs a SOURCE_FILE", "NO_FILE")
        process["status"] = "PROCESSING"
        self._advance(process)
        self._touch(process)
        self._notify(process, EV_SENT)
        return json_response(200, [self._event(process, EV_SENT)] if self.send_response_events else [])

    def _withdraw(self, process):
        allowed = ("PROCESSING", self.initial_status) if self.allow_withdraw_draft else ("PROCESSING",)
        if process["status"] not in allowed:
            return self._error(409, f"a {process['status']} process cannot be withdrawn", "INVALID_STATE")
        process["status"] = "WITHDRAWN"
        for party in process["parties"]:
            if party["participationStatus"] in ("NONE", "PENDING"):
                party["participationStatus"] = "OBSOLETE"
        self._touch(process)
        self._notify(process, EV_WITHDRAWAL)
        return json_response(200, [self._event(process, EV_WITHDRAWAL)])

    def _remind(self, process, selected):
        options = [{"id": p["party"]["id"], "description": p["_email"],
                    "availability": "AVAILABLE" if p["participationStatus"] == "PENDING" else "UNAVAILABLE",
                    "meta": None} for p in process["parties"] if p["role"] != "SENDER"]
        if process["status"] != "PROCESSING":
            challenge = {"classifiers": [CH_REMINDER], "attributes": {"mode": "MULTIPLE", "options": options,
                         "errors": [{"id": "NOT_PROCESSING", "type": "ERROR",
                                     "description": f"process is {process['status']}"}]}}
            return self._challenge(challenge)
        if selected is None:
            return self._challenge({"classifiers": [CH_REMINDER],
                                    "attributes": {"mode": "MULTIPLE", "options": options}})
        available = {o["id"] for o in options if o["availability"] == "AVAILABLE"}
        if not selected or not set(selected) <= available:
            return self._error(400, f"cannot remind {sorted(set(selected) - available)}", "INVALID_SELECTION")
        self.reminders.append((process["id"], list(selected)))
        self._notify(process, EV_REMINDER)
        return json_response(200, [self._event(process, EV_REMINDER)])

    # --- callbacks (NOTES §7) ------------------------------------------------------------------

    def _list_callbacks(self, request):
        return json_response(200, self.callbacks.get(request.token["client_id"], []))

    def _add_callback(self, request):
        body = request.json()
        if not isinstance(body, dict) or body.get("callbackAdapterId") != CALLBACK_ADAPTER:
            return self._error(400, f"callbackAdapterId must be {CALLBACK_ADAPTER}", "INVALID_BODY")
        params = body.get("callbackParameters")
        url = params.get("callbackUrl") if isinstance(params, dict) else None
        schemes = ("https://",) if self.require_https_callbacks else ("https://", "http://")
        if not isinstance(url, str) or not url.startswith(schemes):
            return self._error(400, "callbackParameters.callbackUrl must be an absolute URL", "INVALID_URL")
        registered = self.callbacks.setdefault(request.token["client_id"], [])
        if len(registered) >= self.max_callbacks:
            return self._error(409, f"at most {self.max_callbacks} callbacks", "LIMIT_REACHED")
        record = {"id": f"CALLBACK:{uuid.uuid4().hex}", "callbackAdapterId": CALLBACK_ADAPTER,
                  "callbackParameters": {"callbackUrl": url}}
        registered.append(record)
        return json_response(200, record)

    def _delete_callback(self, request):
        registered = self.callbacks.get(request.token["client_id"], [])
        for record in registered:
            if record["id"] == request.params["cid"]:
                registered.remove(record)
                return 204, b"", {}
        return self._error(404, "callback not found", "NOT_FOUND")
