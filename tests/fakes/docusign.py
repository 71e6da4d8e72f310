"""A strict fake of DocuSign: OAuth JWT grant, userinfo, envelopes, Connect callbacks.

Serves the auth host (``/oauth/…``) and the REST API (``/restapi/v2.1/accounts/{accountId}/…``) on
one local port, so a client is configured with ``auth_host=fake.base_url`` and either lets userinfo
point it at ``fake.base_url + "/restapi"`` or gets ``base_url=fake.rest_url``.

Strictness (each point cites shared/providers/docusign/NOTES.md):

* token: the assertion must verify with the public key registered for its ``iss`` (RS256), carry
  ``aud`` = this server's host (no scheme), ``scope`` with ``signature`` and ``impersonation``, a ``sub``
  that is a known user who consented, and a live ``iat``/``exp`` at most one hour apart (§2);
* REST: bearer token required and live, the user must be a member of the account;
* every envelope / recipient request body is validated against the swagger ``definitions`` with
  jsonschema when a spec path is given (all ``$ref`` resolved), plus the semantic checks DocuSign
  makes (documents, signer name/e-mail, routing order, subject);
* envelope text custom fields: named, one value per name, values of at most 100 characters (swagger
  ``textCustomField``); GET envelope returns them only with ``include=custom_fields`` (configurable);
* the listing ``GET …/envelopes`` (swagger Envelopes_GetEnvelopes): ``from_date``, ``envelope_ids`` or
  ``transaction_ids`` required; dates parsed; ``from_to_status`` picks the date compared with
  ``from_date``/``to_date`` (default ``changed``); ``status``, ``user_filter``, ``include`` values
  checked; ``custom_field=<name>=<value>`` filters (exact, or "contains" to serve extraneous results);
  ``count``/``start_position`` paginate;
* signing follows routing order: ``sign``/``decline`` refuse a signer whose turn has not come;
* Connect messages (JSON SIM, §5.2) are queued only for subscribed events and carry
  ``X-DocuSign-Signature-N`` = base64 HMAC-SHA256 of the exact body, one per account secret (§5.3);
* rate-limit headers on every REST answer, and a configurable limit that answers 429 (§6).

Behaviour written from memory in the notes ([MEM]) or guessed is an attribute, so tests can flip it.
"""
import base64
import copy
import datetime
import hashlib
import hmac
import itertools
import json
import os
import re
import threading
import time
import urllib.parse
import uuid

import jwt

from .base import FakeProviderServer, json_response

_SPEC_CACHE = {}
_SPEC_LOCK = threading.Lock()

ENVELOPE_EVENT_NAMES = {  # legacy envelopeEventStatusCode -> JSON SIM event (NOTES §5.1/5.2)
    "sent": "envelope-sent", "delivered": "envelope-delivered", "completed": "envelope-completed",
    "declined": "envelope-declined", "voided": "envelope-voided",
}
RECIPIENT_EVENT_NAMES = {
    "sent": "recipient-sent", "delivered": "recipient-delivered", "completed": "recipient-completed",
    "declined": "recipient-declined",
}
IN_PROCESS = ("sent", "delivered")
# Envelopes_GetEnvelopes query values [OK, swagger parameter descriptions].
LIST_STATUSES = frozenset({"any", "completed", "created", "declined", "deleted", "delivered", "processing",
                           "sent", "signed", "timedout", "voided"})
# ``from_to_status`` -> the date that must fall in [from_date, to_date]; the fake serves these.
LIST_DATE_FIELDS = {"changed": "statusChangedDateTime", "created": "createdDateTime", "sent": "sentDateTime",
                    "delivered": "deliveredDateTime", "completed": "completedDateTime",
                    "declined": "declinedDateTime", "voided": "voidedDateTime", "deleted": "deletedDateTime"}
LIST_USER_FILTERS = frozenset({"sender", "recipient", "recipient_only"})
LIST_INCLUDES = frozenset({"custom_fields", "documents", "attachments", "extensions", "folders", "recipients",
                           "powerform", "payment_tabs"})
GET_INCLUDES = LIST_INCLUDES | {"tabs"}
DATE_FIELDS = ("createdDateTime", "sentDateTime", "initialSentDateTime", "deliveredDateTime",
               "statusChangedDateTime", "completedDateTime", "declinedDateTime", "voidedDateTime",
               "deletedDateTime")
TEXT_CUSTOM_FIELD_MAX = 100  # [OK] textCustomField.value "Maximum length: 100 characters"


class FakeActionError(Exception):
    """A simulated signer action the real DocuSign would not allow (e.g. out of routing order)."""


def load_definitions(spec_path, closed=False):
    """The swagger ``definitions`` (cached per path); ``closed``: see :func:`_closed`."""
    with _SPEC_LOCK:
        if (spec_path, False) not in _SPEC_CACHE:
            with open(spec_path, encoding="utf-8") as handle:
                _SPEC_CACHE[(spec_path, False)] = json.load(handle)["definitions"]
        if closed and (spec_path, True) not in _SPEC_CACHE:
            _SPEC_CACHE[(spec_path, True)] = _closed(_SPEC_CACHE[(spec_path, False)])
        return _SPEC_CACHE[(spec_path, closed)]


def _closed(definitions):
    """Copy of the definitions where objects refuse properties they do not declare."""
    closed = copy.deepcopy(definitions)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(closed)
    return closed


class SwaggerBodyValidator:
    """Validates a JSON body against one named swagger definition (Draft 4, ``$ref`` resolved)."""

    def __init__(self, spec_path, reject_unknown_properties=True):
        import jsonschema  # imported here: only needed when a spec is present

        # [GUESS] real DocuSign ignores unknown properties; refusing them catches misspelt field
        # names in our client, which DocuSign would silently drop.
        definitions = load_definitions(spec_path, closed=reject_unknown_properties)
        self._jsonschema = jsonschema
        self._definitions = definitions
        self._validators = {}

    def errors(self, definition, body):
        validator = self._validators.get(definition)
        if validator is None:
            if definition not in self._definitions:
                raise KeyError(f"no swagger definition {definition!r}")
            schema = {"$ref": f"#/definitions/{definition}", "definitions": self._definitions}
            validator = self._jsonschema.Draft4Validator(schema)
            self._validators[definition] = validator
        return sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _ds_time(moment=None):
    """DocuSign style timestamp: 7 fraction digits and Z (NOTES §5.2 sample)."""
    moment = moment or _now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def _parse_query_date(value):
    """A listing date (ISO 8601; no offset = the server's zone, UTC here) as aware UTC, or None."""
    if not value or not isinstance(value, str):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _error(status, code, message, headers=None):
    return json_response(status, {"errorCode": code, "message": message}, headers)


class FakeDocuSign(FakeProviderServer):
    name = "docusign"

    def __init__(self, spec_path=None, reject_unknown_properties=True):
        self.validator = SwaggerBodyValidator(spec_path, reject_unknown_properties) if spec_path else None
        self._init_state()
        super().__init__()

    def reset(self):
        """Forget everything (state, log, faults, settings) but keep the server running.

        Lets a test module share one server: stopping one costs the base class's half-second
        ``serve_forever`` poll interval.
        """
        with self.lock:
            self._init_state()
            self.requests = []
            self.faults.clear()
            self.callbacks_sent = []
            self.drop_callbacks = 0
            self.outbox = []
            self.callback_sink = None

    def _init_state(self):
        self.validated = []  # (definition, path) of every body that passed schema validation
        self.integrations = {}  # integration key -> public key PEM
        self.users = {}  # user id -> {"email", "name", "accounts": [account ids], "consented": bool}
        self.accounts = {}  # account id -> {"name", "base_uri"}
        self.tokens = {}  # access token -> {"user_id", "expires_at"}
        self.token_requests = 0
        self.envelopes = {}  # envelope id -> state dict
        self.connect_secrets = []  # the account's Connect HMAC keys, in header order
        self.connect_log = []  # every Connect message queued: (url, payload dict)
        self._config_ids = itertools.count(1001)
        # --- configurable behaviour ([MEM]/[GUESS] in NOTES) ---
        self.token_lifetime = 3600
        self.max_assertion_lifetime = 3600  # [2nd] NOTES §2.2
        self.expected_audience = None  # None: this server's host:port
        self.require_https_callback = True  # "url (https only)" NOTES §5.1 [OK]
        self.require_email_subject = True  # [MEM]
        self.not_found_status = 400  # [MEM] DocuSign answers 400 ENVELOPE_DOES_NOT_EXIST
        self.connect_summary_always = True  # [GUESS] envelopeSummary basics even without includeData
        self.connect_pretty_json = True  # bodies are signed as sent, whitespace included
        self.rate_limit = 3000  # per "hour" (per fake lifetime unless reset_rate_limit())
        self.rate_limit_used = 0
        self.burst_limit = 200  # developer environment, NOTES §6
        self.rate_limit_status = 429  # [GUESS] the status of an over-limit answer
        self.rate_limit_reset_in = 60  # seconds until X-RateLimit-Reset
        self.rate_limit_retry_after = False  # [GUESS] DocuSign documents no Retry-After header
        # [MEM] GET envelope returns customFields only with include=custom_fields (the spec's
        # envelope has a customFieldsUri); the listing likewise.
        self.custom_fields_by_default = False
        # [GUESS] the listing's custom_field filter matches the whole value; "contains" makes it
        # return near misses too (the spec warns of "extraneous results"), which the client must drop.
        self.custom_field_match = "exact"
        # [GUESS] without user_filter the listing shows what the user sent and what they must sign.
        self.list_default_user_filter = None
        # [MEM] an empty listing has resultSetSize "0" and no "envelopes" key at all.
        self.list_empty_omits_envelopes = True
        # [GUESS] unknown ``include`` values are refused (DocuSign may ignore them).
        self.reject_unknown_include = True

    # ------------------------------------------------------------------ setup helpers

    @property
    def host(self):
        return urllib.parse.urlsplit(self.base_url).netloc

    @property
    def rest_url(self):
        return self.base_url + "/restapi"

    def register_integration(self, integration_key, public_key_pem):
        self.integrations[integration_key] = public_key_pem

    def add_account(self, account_id=None, name="Fake account"):
        account_id = account_id or str(uuid.uuid4())
        self.accounts[account_id] = {"name": name, "base_uri": None}  # base_uri: this server
        return account_id

    def add_user(self, user_id=None, email="user@example.com", name="Fake User", accounts=(), consented=True):
        user_id = user_id or str(uuid.uuid4())
        self.users[user_id] = {"email": email, "name": name, "accounts": list(accounts),
                               "consented": consented}
        return user_id

    def grant_consent(self, user_id):
        self.users[user_id]["consented"] = True

    def expire_tokens(self):
        """Make every issued access token invalid (as after expiry or revocation)."""
        self.tokens.clear()

    def reset_rate_limit(self):
        self.rate_limit_used = 0

    # ------------------------------------------------------------------ routes

    def register_routes(self):
        self.route("POST", "/oauth/token", self._token)
        self.route("GET", "/oauth/userinfo", self._userinfo)
        base = "/restapi/v2.1/accounts/{accountId}"
        self.route("POST", base + "/envelopes", self._rest(self._create_envelope))
        self.route("GET", base + "/envelopes", self._rest(self._list_envelopes))
        self.route("GET", base + "/envelopes/{envelopeId}", self._rest(self._get_envelope))
        self.route("PUT", base + "/envelopes/{envelopeId}", self._rest(self._put_envelope))
        self.route("GET", base + "/envelopes/{envelopeId}/recipients", self._rest(self._get_recipients))
        self.route("PUT", base + "/envelopes/{envelopeId}/recipients", self._rest(self._put_recipients))
        self.route("GET", base + "/envelopes/{envelopeId}/documents/{documentId}",
                   self._rest(self._get_document))

    # ------------------------------------------------------------------ OAuth

    @staticmethod
    def _oauth_error(error, description=None, status=400):
        body = {"error": error}
        if description:
            body["error_description"] = description
        return json_response(status, body)

    def _token(self, request):
        self.token_requests += 1
        form = request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._oauth_error("unsupported_grant_type")
        assertion = form.get("assertion") or ""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self._oauth_error("invalid_request", "assertion is not a JWT")
        if header.get("alg") != "RS256":
            return self._oauth_error("invalid_grant", "alg must be RS256")
        public_key = self.integrations.get(unverified.get("iss"))
        if not public_key:
            return self._oauth_error("invalid_grant", "issuer_not_found")
        try:
            claims = jwt.decode(assertion, public_key, algorithms=["RS256"],
                                audience=self.expected_audience or self.host,
                                options={"require": ["iss", "sub", "aud", "iat", "exp"]}, leeway=0)
        except jwt.InvalidSignatureError:
            return self._oauth_error("invalid_grant", "no_valid_keys_or_signatures")
        except jwt.ExpiredSignatureError:
            return self._oauth_error("invalid_grant", "expired")
        except jwt.InvalidAudienceError:
            return self._oauth_error("invalid_grant", "invalid audience")
        except jwt.PyJWTError as exc:
            return self._oauth_error("invalid_grant", str(exc))
        if claims["exp"] - claims["iat"] > self.max_assertion_lifetime:
            return self._oauth_error("invalid_grant", "assertion lifetime over one hour")
        if claims["iat"] > time.time() + 60:
            return self._oauth_error("invalid_grant", "iat in the future")
        scopes = str(claims.get("scope") or "").split()
        if "signature" not in scopes or "impersonation" not in scopes:
            return self._oauth_error("invalid_scope", "scope must include signature impersonation")
        user = self.users.get(claims["sub"])
        if user is None:
            return self._oauth_error("invalid_grant", "user_not_found")
        if not user["consented"]:
            return self._oauth_error("consent_required")
        token = "fake-" + uuid.uuid4().hex
        self.tokens[token] = {"user_id": claims["sub"], "expires_at": time.time() + self.token_lifetime,
                              "integration_key": claims["iss"]}
        return json_response(200, {"access_token": token, "token_type": "Bearer",
                                   "expires_in": self.token_lifetime})

    def _bearer_user(self, request):
        auth = request.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None
        info = self.tokens.get(auth[len("Bearer "):].strip())
        if not info or info["expires_at"] <= time.time():
            return None
        return info["user_id"]

    def _userinfo(self, request):
        user_id = self._bearer_user(request)
        if user_id is None:
            return self._oauth_error("invalid_token", status=401)
        user = self.users[user_id]
        accounts = [{"account_id": a, "is_default": "true" if i == 0 else "false",
                     "account_name": self.accounts[a]["name"],
                     "base_uri": self.accounts[a]["base_uri"] or self.base_url}
                    for i, a in enumerate(user["accounts"])]
        return json_response(200, {"sub": user_id, "name": user["name"], "email": user["email"],
                                   "accounts": accounts})

    # ------------------------------------------------------------------ REST plumbing

    def _limit_headers(self):
        reset = int(time.time() + self.rate_limit_reset_in)
        return {"X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit - self.rate_limit_used)),
                "X-RateLimit-Reset": str(reset),
                "X-BurstLimit-Limit": str(self.burst_limit),
                "X-BurstLimit-Remaining": str(self.burst_limit)}

    def _rest(self, handler):
        def wrapped(request):
            user_id = self._bearer_user(request)
            if user_id is None:
                return _error(401, "AUTHORIZATION_INVALID_TOKEN",
                              "The access token provided is expired, revoked or malformed.")
            if self.rate_limit_used >= self.rate_limit:
                headers = self._limit_headers()
                if self.rate_limit_retry_after:
                    headers["Retry-After"] = str(self.rate_limit_reset_in)
                return _error(self.rate_limit_status, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED",
                              "The maximum number of hourly API invocations has been exceeded", headers)
            self.rate_limit_used += 1
            account_id = request.params["accountId"]
            if account_id not in self.accounts or account_id not in self.users[user_id]["accounts"]:
                status, body, headers = _error(400, "USER_LACKS_MEMBERSHIP",  # [GUESS] code name
                                               "The UserID does not have a valid membership in this Account.")
            else:
                status, body, headers = handler(request, user_id, account_id)
            headers = dict(headers or {})
            headers.update(self._limit_headers())
            return status, body, headers
        return wrapped

    def _validate(self, definition, body, path):
        """400 INVALID_REQUEST_BODY unless ``body`` fits the swagger definition; None when fine."""
        if not isinstance(body, dict):
            return _error(400, "INVALID_REQUEST_BODY", "The request body is missing or improperly formatted.")
        if self.validator is None:
            return None
        errors = self.validator.errors(definition, body)
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(body)"
            return _error(400, "INVALID_REQUEST_BODY",
                          f"The request body is missing or improperly formatted. {definition} at {where}: "
                          f"{errors[0].message}")
        self.validated.append((definition, path))
        return None

    def _envelope(self, request, account_id):
        envelope = self.envelopes.get(request.params["envelopeId"])
        if envelope is None or envelope["accountId"] != account_id:
            return None, _error(self.not_found_status, "ENVELOPE_DOES_NOT_EXIST",
                                "The envelope specified either does not exist or you have no access to it.")
        return envelope, None

    # ------------------------------------------------------------------ envelopes

    def _check_signers(self, signers):
        if not isinstance(signers, list) or not signers:
            return _error(400, "ENVELOPE_IS_INCOMPLETE",
                          "The Envelope is not Complete. A Complete Envelope Requires Documents, "
                          "Recipients, Tabs, and a Subject Line.")
        seen = set()
        for signer in signers:
            rid = signer.get("recipientId")
            if not rid or rid in seen:
                return _error(400, "INVALID_RECIPIENT_ID", f"recipientId {rid!r} missing or repeated.")
            seen.add(rid)
            email = (signer.get("email") or "").strip()
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email) or len(email) > 100:
                return _error(400, "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT",
                              f"The email address for the recipient {rid} is not valid.")
            if not (signer.get("name") or "").strip() or len(signer["name"]) > 100:
                return _error(400, "INVALID_USERNAME_FOR_RECIPIENT",
                              f"The user name for the recipient {rid} is not valid.")
            order = signer.get("routingOrder", "1")
            if not re.fullmatch(r"[1-9]\d{0,4}", str(order)):
                return _error(400, "INVALID_ROUTING_ORDER", f"Routing order {order!r} is not valid.")
        return None

    def _create_envelope(self, request, user_id, account_id):
        body = request.json()
        problem = self._validate("envelopeDefinition", body, request.path)
        if problem:
            return problem
        status = body.get("status") or "created"
        if status not in ("created", "sent"):
            return _error(400, "INVALID_ENVELOPE_STATUS", f"Status {status!r} is not valid on create.")
        documents = body.get("documents") or []
        if not documents:
            return _error(400, "ENVELOPE_IS_INCOMPLETE",
                          "The Envelope is not Complete. A Complete Envelope Requires Documents, "
                          "Recipients, Tabs, and a Subject Line.")
        for doc in documents:
            try:
                content = base64.b64decode(doc.get("documentBase64") or "", validate=True)
            except ValueError:
                content = b""
            if not doc.get("documentId") or not doc.get("name") or not content:
                return _error(400, "INVALID_DOCUMENT", "Each document needs documentId, name and content.")
        signers = (body.get("recipients") or {}).get("signers")
        problem = self._check_signers(signers)
        if problem:
            return problem
        subject = body.get("emailSubject") or ""
        if self.require_email_subject and status == "sent" and not subject.strip():
            return _error(400, "ENVELOPE_IS_INCOMPLETE",
                          "The Envelope is not Complete. A Complete Envelope Requires Documents, "
                          "Recipients, Tabs, and a Subject Line.")
        if len(subject) > 100:
            return _error(400, "INVALID_EMAIL_SUBJECT", "The email subject exceeds 100 characters.")
        problem = self._check_custom_fields(body.get("customFields"))
        if problem:
            return problem
        notification = body.get("eventNotification")
        if notification:
            url = notification.get("url") or ""
            if not url or (self.require_https_callback and not url.startswith("https://")):
                return _error(400, "INVALID_REQUEST_PARAMETER", "eventNotification url must be https.")
        envelope_id = str(uuid.uuid4())
        now = _ds_time()
        envelope = {
            "envelopeId": envelope_id, "accountId": account_id, "sender_user_id": user_id,
            "status": "created", "emailSubject": subject, "emailBlurb": body.get("emailBlurb", ""),
            "createdDateTime": now, "statusChangedDateTime": now,
            "documents": [(d["documentId"], d["name"], base64.b64decode(d["documentBase64"])) for d in documents],
            "signers": [{
                "recipientId": s["recipientId"], "routingOrder": int(s.get("routingOrder", "1")),
                "name": s["name"], "email": s["email"].strip(), "status": "created",
                "customFields": list(s.get("customFields") or []), "note": s.get("note", ""),
            } for s in signers],
            "customFields": copy.deepcopy(body.get("customFields") or {}),
            "transactionId": body.get("transactionId", ""),
            "eventNotification": copy.deepcopy(notification) if notification else None,
            "resends": 0, "voidedReason": "", "body": body,
        }
        self.envelopes[envelope_id] = envelope
        if status == "sent":
            self._send(envelope)
        return json_response(201, {"envelopeId": envelope_id, "status": envelope["status"],
                                   "statusDateTime": envelope["statusChangedDateTime"],
                                   "uri": f"/envelopes/{envelope_id}"})

    @staticmethod
    def _check_custom_fields(custom_fields):
        """Envelope text custom fields need a name, one value per name, values of at most 100 characters."""
        names = set()
        for field in (custom_fields or {}).get("textCustomFields") or ():
            name = (field.get("name") or "").strip()
            if not name or name in names:
                return _error(400, "INVALID_CUSTOM_FIELD",  # [GUESS] code name
                              f"Custom field name {name!r} is missing or repeated.")
            names.add(name)
            if len(field.get("value") or "") > TEXT_CUSTOM_FIELD_MAX:
                return _error(400, "INVALID_CUSTOM_FIELD",
                              f"The value of custom field {name} exceeds {TEXT_CUSTOM_FIELD_MAX} characters.")
        return None

    def _current_order(self, envelope):
        pending = [s["routingOrder"] for s in envelope["signers"] if s["status"] != "completed"]
        return min(pending) if pending else None

    def _set_status(self, envelope, status, **dates):
        envelope["status"] = status
        envelope["statusChangedDateTime"] = _ds_time()
        envelope.update(dates)

    def _send(self, envelope):
        now = _ds_time()
        self._set_status(envelope, "sent", sentDateTime=now, initialSentDateTime=now)
        self._event(envelope, "envelope", "sent")
        self._route(envelope)

    def _route(self, envelope, emit=True):
        """Send to the signers whose turn it is now; returns them."""
        order = self._current_order(envelope)
        routed = []
        for signer in envelope["signers"]:
            if signer["routingOrder"] == order and signer["status"] == "created":
                signer["status"] = "sent"
                signer["sentDateTime"] = _ds_time()
                routed.append(signer)
                if emit:
                    self._event(envelope, "recipient", "sent", signer)
        return routed

    def _envelope_json(self, envelope, include=()):
        """The ``envelope`` object; ``include`` as the query parameter (``custom_fields``, ``recipients``)."""
        keys = ("envelopeId", "status", "emailSubject", "emailBlurb", "voidedReason", "transactionId") + DATE_FIELDS
        data = {k: envelope[k] for k in keys if envelope.get(k)}
        data["envelopeUri"] = f"/envelopes/{envelope['envelopeId']}"
        data["customFieldsUri"] = f"/envelopes/{envelope['envelopeId']}/custom_fields"
        if self.custom_fields_by_default or "custom_fields" in include:
            data["customFields"] = copy.deepcopy(envelope["customFields"])
        if "recipients" in include:
            data["recipients"] = self._recipients_json(envelope)
        return data

    def _include_arg(self, request, allowed):
        """``(values, None)`` from the comma-separated ``include``, or ``(None, error answer)``."""
        values = [v.strip().lower() for v in (request.arg("include") or "").split(",") if v.strip()]
        unknown = sorted(set(values) - allowed)
        if unknown and self.reject_unknown_include:
            return None, _error(400, "INVALID_REQUEST_PARAMETER", f"Invalid include value(s): {', '.join(unknown)}.")
        return values, None

    def _recipients_json(self, envelope):
        signers = []
        for s in envelope["signers"]:
            item = {k: v for k, v in s.items() if v not in ("", None)}
            item["routingOrder"] = str(s["routingOrder"])
            item["recipientType"] = "signer"
            signers.append(item)
        order = self._current_order(envelope)
        return {"signers": signers, "agents": [], "carbonCopies": [], "certifiedDeliveries": [],
                "recipientCount": str(len(signers)),
                "currentRoutingOrder": str(order if order is not None else max(
                    s["routingOrder"] for s in envelope["signers"]))}

    def _get_envelope(self, request, user_id, account_id):
        envelope, problem = self._envelope(request, account_id)
        if problem:
            return problem
        include, problem = self._include_arg(request, GET_INCLUDES)
        return problem or json_response(200, self._envelope_json(envelope, include))

    # ------------------------------------------------------------------ listing (Envelopes_GetEnvelopes)

    def _list_envelopes(self, request, user_id, account_id):
        """``GET …/envelopes``: the filters the spec describes, checked as strictly as it states them."""
        query, problem = self._list_query(request)
        if problem:
            return problem
        include, problem = self._include_arg(request, LIST_INCLUDES)
        if problem:
            return problem
        found = [e for e in self.envelopes.values()
                 if e["accountId"] == account_id and self._list_matches(e, query, user_id)]
        found.sort(key=lambda e: e["statusChangedDateTime"])
        start, count = query["start"], query["count"]
        page = found[start:start + count] if count is not None else found[start:]
        body = {"resultSetSize": str(len(page)), "totalSetSize": str(len(found)), "startPosition": str(start),
                "endPosition": str(start + len(page) - 1 if page else start),
                "lastQueriedDateTime": _ds_time()}
        if page or not self.list_empty_omits_envelopes:
            body["envelopes"] = [self._envelope_json(e, include) for e in page]
        return json_response(200, body)

    def _list_query(self, request):
        """The parsed listing filters, or an error answer for what DocuSign refuses."""
        def bad(message):
            return None, _error(400, "INVALID_REQUEST_PARAMETER", message)  # [GUESS] code name

        ids = [v for v in (request.arg("envelope_ids") or "").split(",") if v.strip()]
        transactions = [v for v in (request.arg("transaction_ids") or "").split(",") if v.strip()]
        from_date = request.arg("from_date")
        if not (from_date or ids or transactions):
            return bad("The request must include from_date, envelope_ids or transaction_ids.")
        since = _parse_query_date(from_date) if from_date else None
        until = _parse_query_date(request.arg("to_date")) if request.arg("to_date") else _now()
        if (from_date and since is None) or until is None:
            return bad("from_date / to_date is not a valid date.")
        qualifier = (request.arg("from_to_status") or "changed").lower()
        statuses = {v.strip().lower() for v in (request.arg("status") or "any").split(",") if v.strip()}
        user_filter = request.arg("user_filter") or self.list_default_user_filter
        custom = request.arg("custom_field")
        name, sep, value = (custom or "").partition("=")
        try:
            start = int(request.arg("start_position") or 0)
            count = int(request.arg("count")) if request.arg("count") else None
        except ValueError:
            return bad("start_position and count must be numbers.")
        if qualifier not in LIST_DATE_FIELDS:
            return bad(f"from_to_status {qualifier!r} is not valid (or not served by the fake).")
        if statuses - LIST_STATUSES:
            return bad(f"Invalid status value(s): {', '.join(sorted(statuses - LIST_STATUSES))}.")
        if user_filter and user_filter not in LIST_USER_FILTERS:
            return bad(f"Invalid user_filter {user_filter!r}.")
        if custom is not None and (not sep or not name.strip()):
            return bad("custom_field must be custom_envelope_field_name=desired_value.")
        if start < 0 or (count is not None and count < 1):
            return bad("start_position must be 0 or more and count 1 or more.")
        return {"ids": ids, "transactions": transactions, "since": since, "until": until,
                "date_field": LIST_DATE_FIELDS[qualifier], "statuses": statuses, "user_filter": user_filter,
                "custom": (name, value) if custom is not None else None, "start": start, "count": count}, None

    def _list_matches(self, envelope, query, user_id):
        if not self._visible_to(envelope, user_id, query["user_filter"]):
            return False
        if query["ids"] and envelope["envelopeId"] not in query["ids"]:
            return False
        if query["transactions"] and envelope["transactionId"] not in query["transactions"]:
            return False
        if query["since"] is not None:
            moment = _parse_query_date(envelope.get(query["date_field"]))
            if moment is None or not query["since"] <= moment <= query["until"]:
                return False
        if "any" not in query["statuses"] and envelope["status"] not in query["statuses"]:
            return False
        if query["custom"] is not None:
            return self._custom_field_matches(envelope, *query["custom"])
        return True

    def _visible_to(self, envelope, user_id, user_filter):
        sender = envelope["sender_user_id"] == user_id
        email = self.users[user_id]["email"].lower()
        recipient = any(s["email"].lower() == email for s in envelope["signers"])
        if user_filter == "sender":
            return sender
        if user_filter == "recipient":
            return recipient
        if user_filter == "recipient_only":
            return recipient and not sender
        return sender or recipient

    def _custom_field_matches(self, envelope, name, value):
        for field in (envelope["customFields"] or {}).get("textCustomFields") or ():
            if field.get("name") != name:
                continue
            stored = field.get("value") or ""
            return value in stored if self.custom_field_match == "contains" else stored == value
        return False

    def _get_recipients(self, request, user_id, account_id):
        envelope, problem = self._envelope(request, account_id)
        return problem or json_response(200, self._recipients_json(envelope))

    def _put_envelope(self, request, user_id, account_id):
        envelope, problem = self._envelope(request, account_id)
        if problem:
            return problem
        body = request.json()
        problem = self._validate("envelope", body, request.path)
        if problem:
            return problem
        summary = {"envelopeId": envelope["envelopeId"]}
        if (request.arg("resend_envelope") or "").lower() == "true":
            if envelope["status"] not in IN_PROCESS:
                return _error(400, "ENVELOPE_INVALID_STATUS",
                              f"Envelope status {envelope['status']} does not allow a resend.")
            envelope["resends"] += 1
            return json_response(200, summary)
        status = body.get("status")
        if status == "voided":
            reason = (body.get("voidedReason") or "").strip()
            if not reason:
                return _error(400, "ENVELOPE_VOID_REASON_REQUIRED", "A reason is required to void an envelope.")
            if len(reason) > 200:
                return _error(400, "INVALID_REQUEST_PARAMETER", "voidedReason exceeds 200 characters.")
            if envelope["status"] not in IN_PROCESS:
                return _error(400, "ENVELOPE_CANNOT_VOID_INVALID_STATE",
                              f"Only envelopes in the Sent or Delivered states may be voided "
                              f"(this one is {envelope['status']}).")
            envelope["voidedReason"] = reason
            self._set_status(envelope, "voided", voidedDateTime=_ds_time())
            self._event(envelope, "envelope", "voided")
            return json_response(200, summary)
        if status == "sent":
            if envelope["status"] != "created":
                return _error(400, "ENVELOPE_INVALID_STATUS", "Only a draft can be sent.")
            self._send(envelope)
            return json_response(200, summary)
        return _error(400, "INVALID_REQUEST_PARAMETER", "Nothing to update.")

    def _put_recipients(self, request, user_id, account_id):
        envelope, problem = self._envelope(request, account_id)
        if problem:
            return problem
        body = request.json()
        problem = self._validate("EnvelopeRecipients", body, request.path)
        if problem:
            return problem
        problem = self._check_signers(body.get("signers"))
        if problem:
            return problem
        results = []
        for item in body["signers"]:
            signer = next((s for s in envelope["signers"] if s["recipientId"] == item["recipientId"]), None)
            if signer is None:
                return _error(400, "INVALID_RECIPIENT_ID", f"No recipient {item['recipientId']}.")
            if signer["status"] in ("completed", "declined"):
                return _error(400, "RECIPIENT_UPDATE_FAILED", "A recipient who acted cannot be changed.")
            signer.update(name=item["name"], email=item["email"].strip())
            if (request.arg("resend_envelope") or "").lower() == "true":
                envelope["resends"] += 1
            results.append({"recipientId": item["recipientId"]})
        return json_response(200, {"recipientUpdateResults": results})

    def _get_document(self, request, user_id, account_id):
        envelope, problem = self._envelope(request, account_id)
        if problem:
            return problem
        document_id = request.params["documentId"]
        if envelope["status"] == "created":
            return _error(400, "ENVELOPE_INVALID_STATUS", "The envelope has not been sent.")
        signed_by = ", ".join(s["email"] for s in envelope["signers"] if s["status"] == "completed")
        if document_id == "combined":
            content = envelope["documents"][0][2] + (
                f"\n%% combined {envelope['envelopeId']} status={envelope['status']} signed by {signed_by}\n"
            ).encode()
        elif document_id == "certificate":
            lines = [f"{s['email']} {s['status']} {s.get('signedDateTime', '')}" for s in envelope["signers"]]
            content = (b"%PDF-1.4\n% Certificate of Completion " + envelope["envelopeId"].encode() + b"\n"
                       + "\n".join(lines).encode() + b"\n%%EOF\n")
        else:
            match = next((d for d in envelope["documents"] if d[0] == document_id), None)
            if match is None:
                return _error(400, "DOCUMENT_DOES_NOT_EXIST", f"Document {document_id} does not exist.")
            content = match[2]
        return 200, content, {"Content-Type": "application/pdf"}

    # ------------------------------------------------------------------ simulated signers

    def _signer_for_action(self, envelope_id, email):
        envelope = self.envelopes.get(envelope_id)
        if envelope is None:
            raise FakeActionError(f"no envelope {envelope_id}")
        if envelope["status"] not in IN_PROCESS:
            raise FakeActionError(f"envelope {envelope_id} is {envelope['status']}")
        signer = next((s for s in envelope["signers"] if s["email"].lower() == email.lower()
                       and s["status"] in ("sent", "delivered")), None)
        if signer is None:
            known = next((s for s in envelope["signers"] if s["email"].lower() == email.lower()), None)
            if known is None:
                raise FakeActionError(f"{email} is not a signer of {envelope_id}")
            raise FakeActionError(f"{email} cannot act now (status {known['status']}, routing order "
                                  f"{known['routingOrder']}, current {self._current_order(envelope)})")
        return envelope, signer

    def open(self, envelope_id, email):
        """The signer opens the envelope: recipient and envelope become ``delivered``."""
        envelope, signer = self._signer_for_action(envelope_id, email)
        signer["status"] = "delivered"
        signer["deliveredDateTime"] = _ds_time()
        self._event(envelope, "recipient", "delivered", signer)
        if envelope["status"] == "sent":
            self._set_status(envelope, "delivered", deliveredDateTime=_ds_time())
            self._event(envelope, "envelope", "delivered")

    def sign(self, envelope_id, email):
        envelope, signer = self._signer_for_action(envelope_id, email)
        signer["status"] = "completed"
        signer["signedDateTime"] = _ds_time()
        # State first, then the messages: a message's envelopeSummary shows the state after routing.
        finished = all(s["status"] == "completed" for s in envelope["signers"])
        routed = []
        if finished:
            self._set_status(envelope, "completed", completedDateTime=_ds_time())
        else:
            routed = self._route(envelope, emit=False)
        self._event(envelope, "recipient", "completed", signer)
        for other in routed:
            self._event(envelope, "recipient", "sent", other)
        if finished:
            self._event(envelope, "envelope", "completed")

    def decline(self, envelope_id, email, reason="I do not agree"):
        envelope, signer = self._signer_for_action(envelope_id, email)
        signer["status"] = "declined"
        signer["declinedReason"] = reason
        signer["declinedDateTime"] = _ds_time()
        self._set_status(envelope, "declined", declinedDateTime=_ds_time())
        self._event(envelope, "recipient", "declined", signer)
        self._event(envelope, "envelope", "declined")

    def backdate(self, envelope_id, seconds):
        """Move every date of the envelope ``seconds`` into the past (an envelope sent long ago)."""
        envelope = self.envelopes[envelope_id]
        for field in DATE_FIELDS:
            moment = _parse_query_date(envelope.get(field))
            if moment is not None:
                envelope[field] = _ds_time(moment - datetime.timedelta(seconds=seconds))

    def delete(self, envelope_id):
        """The sender deletes the envelope in DocuSign's web app (a draft, or one that is finished)."""
        envelope = self.envelopes[envelope_id]
        self._set_status(envelope, "deleted", deletedDateTime=_ds_time())

    def expire(self, envelope_id):
        """DocuSign voids an envelope at its expiration date [MEM]."""
        envelope = self.envelopes[envelope_id]
        envelope["voidedReason"] = "Envelope has expired."
        self._set_status(envelope, "voided", voidedDateTime=_ds_time())
        self._event(envelope, "envelope", "voided")

    # ------------------------------------------------------------------ Connect

    def _subscribed(self, envelope, kind, code):
        notification = envelope["eventNotification"] or {}
        if kind == "envelope":
            items, field = notification.get("envelopeEvents") or [], "envelopeEventStatusCode"
        else:
            items, field = notification.get("recipientEvents") or [], "recipientEventStatusCode"
        return any(str(i.get(field, "")).lower() == code for i in items)

    def connect_message(self, envelope, event, recipient=None, generated=None, retry_count=0):
        notification = envelope["eventNotification"] or {}
        include = [str(x).lower() for x in (notification.get("eventData") or {}).get("includeData") or []]
        data = {"accountId": envelope["accountId"], "userId": envelope["sender_user_id"],
                "envelopeId": envelope["envelopeId"]}
        if recipient is not None:
            data["recipientId"] = recipient["recipientId"]
        if self.connect_summary_always or include:
            summary = self._envelope_json(envelope, include)
            if "custom_fields" not in include:
                summary.pop("customFields", None)
            data["envelopeSummary"] = summary
        return {"event": event, "apiVersion": "v2.1",
                "uri": f"/restapi/v2.1/accounts/{envelope['accountId']}/envelopes/{envelope['envelopeId']}",
                "retryCount": retry_count, "configurationId": next(self._config_ids),
                "generatedDateTime": generated or _ds_time(), "data": data}

    def sign_body(self, body):
        """The ``X-DocuSign-Signature-N`` headers for a raw body (NOTES §5.3)."""
        headers = {}
        for number, secret in enumerate(self.connect_secrets, start=1):
            digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
            headers[f"X-DocuSign-Signature-{number}"] = base64.b64encode(digest).decode("ascii")
        if headers:
            headers["X-Authorization-Digest"] = "HMACSHA256"
        return headers

    def _deliver(self, envelope, payload):
        notification = envelope["eventNotification"] or {}
        if self.connect_pretty_json:
            body = json.dumps(payload, indent=2).replace("\n", "\r\n").encode("utf-8")
        else:
            body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if str(notification.get("includeHMAC", "")).lower() == "true":
            headers.update(self.sign_body(body))
        self.connect_log.append((notification.get("url"), payload))
        self.queue_callback(notification.get("url"), body, headers)

    def _event(self, envelope, kind, code, recipient=None):
        if not envelope["eventNotification"] or not self._subscribed(envelope, kind, code):
            return
        names = ENVELOPE_EVENT_NAMES if kind == "envelope" else RECIPIENT_EVENT_NAMES
        self._deliver(envelope, self.connect_message(envelope, names[code], recipient))

    def republish(self, index=-1):
        """Send a logged message again as a Connect retry (same generatedDateTime, retryCount + 1)."""
        url, payload = self.connect_log[index]
        payload = copy.deepcopy(payload)
        payload["retryCount"] = int(payload.get("retryCount") or 0) + 1
        envelope = self.envelopes[payload["data"]["envelopeId"]]
        self._deliver(envelope, payload)


def spec_path_from(shared_providers):
    """The DocuSign swagger path under the shared providers folder, or None when absent."""
    path = os.path.join(shared_providers, "docusign", "esignature.rest.swagger-v2.1.json")
    return path if os.path.exists(path) else None
