"""A strict fake of Yousign's Public API v3 (the part our client uses).

Two layers of strictness:

* **Spec validation** (when ``spec_path`` points at Yousign's ``openapi.json``): every request's path,
  method, parameters, security and body are checked with ``openapi-core`` against the real OpenAPI
  document, which is loaded and indexed once per process. Violations answer 400 ``{type, detail}``
  like Yousign (401 for security, 404 for unknown paths). The spec stays in ``shared/providers``;
  nothing of it lives in this repository.
* **Hand-written checks** (always on, so the fake is useful without the spec): bearer key, required
  fields and enums we rely on, and the documented state rules: documents and signers only on a draft,
  activation needs a signable document and signers, signers sign in order when ``ordered_signers``,
  cancel only ongoing/approval, delete never ongoing/approval, reminders only to a ``notified``
  signer, completed documents and audit trails only when ``done``.

The listing ``GET /signature_requests`` implements the documented filters strictly (``external_id`` and
``workspace_id`` with ``eq`` only, ``status`` and ``source`` with ``eq``/``in``, ``q``), cursor pages
(``after`` must be a cursor this fake issued) and never lists permanently deleted requests.

Test-driven signer actions: :meth:`FakeYousign.sign`, :meth:`FakeYousign.decline`,
:meth:`FakeYousign.fail_signature` (Yousign's own signing failure), :meth:`FakeYousign.expire`. They
change the state and queue webhook events to every subscription (``POST /webhooks`` or
:meth:`FakeYousign.subscribe`), signed with ``X-Yousign-Signature-256`` = ``sha256=`` + hex
HMAC-SHA256(secret_key, raw body) (NOTES §4.3). Behaviours the notes mark [GUESS]
are attributes, so a test can flip them.
"""
import datetime
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import threading
import time
import uuid
import zipfile

from .base import FakeProviderServer, json_response

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
EXTERNAL_ID_RE = re.compile(r"^[\w\-@.%+]+$")
SIGNATURE_LEVELS = ("electronic_signature", "advanced_electronic_signature",
                    "electronic_signature_with_qualified_certificate", "qualified_electronic_signature",
                    "qualified_electronic_signature_mode_1")
AUTH_MODES = (None, "otp_email", "otp_sms", "no_otp")
LOCALES = ("en", "fr", "de", "it", "nl", "es", "pl")
CANCEL_REASONS = ("contractualization_aborted", "errors_in_document", "other")
API_PREFIX = "/v3"  # the servers' path; our fake serves the same paths under it

# --- spec validation (openapi-core), loaded once per process ------------------------------------

_SPEC_LOCK = threading.Lock()
_SPEC_CACHE = {}


class SpecUnavailable(Exception):
    """The spec file or openapi-core is missing: spec validation cannot run."""


def spec_path_from(shared_providers):
    """``<shared>/yousign/openapi.json`` if it exists, else ``None``."""
    path = os.path.join(shared_providers, "yousign", "openapi.json")
    return path if os.path.isfile(path) else None


def load_openapi(spec_path):
    """The ``openapi_core.OpenAPI`` object for ``spec_path`` (cached; spec self-check skipped: the
    file is known to validate, NOTES header, and re-checking it costs seconds)."""
    with _SPEC_LOCK:
        if spec_path not in _SPEC_CACHE:
            if not spec_path or not os.path.isfile(spec_path):
                raise SpecUnavailable(f"Yousign OpenAPI file not found: {spec_path}")
            try:
                from openapi_core import Config, OpenAPI
            except ImportError as exc:
                raise SpecUnavailable("openapi-core is not installed (pip install openapi-core)") from exc
            with open(spec_path, encoding="utf-8") as handle:
                spec = json.load(handle)
            _SPEC_CACHE[spec_path] = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
        return _SPEC_CACHE[spec_path]


class _SpecRequest:
    """The request protocol openapi-core expects, built from what the fake received."""

    def __init__(self, method, path, query, headers, body, content_type):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = "https://api-sandbox.yousign.app"
        self.path = API_PREFIX + path
        self.method = method.lower()
        self.body = body or None
        self.content_type = content_type
        self.parameters = RequestParameters(
            query=ImmutableMultiDict([(k, v) for k, values in query.items() for v in values]),
            header=Headers([(k, v) for k, v in headers.items()]),
            cookie=ImmutableMultiDict(), path={})

    @property
    def full_url_pattern(self):
        return self.host_url + self.path


def spec_violation(openapi, request):
    """``None`` if the request conforms to the spec, else ``(status, message)``."""
    from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound

    content_type = request.headers.get("Content-Type") if request.body else None
    path = request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX) else request.path
    spec_request = _SpecRequest(request.method, path, request.query, request.headers,
                                request.body, content_type)
    try:
        openapi.validate_request(spec_request)
    except (PathNotFound, OperationNotFound) as exc:
        return 404, f"not in the Yousign API: {exc}"
    except Exception as exc:  # noqa: BLE001 - openapi-core raises many kinds
        name = type(exc).__name__
        if "Security" in name:
            return 401, f"spec: {exc}"
        return 400, f"spec: {_explain(exc)}"
    return None


class _SpecResponse:
    """The response protocol openapi-core expects, built from what the fake answers."""

    def __init__(self, status, payload, headers):
        from werkzeug.datastructures import Headers

        self.status_code = status
        self.data = payload or b""
        self.headers = Headers(list((headers or {}).items()))
        self.content_type = (self.headers.get("Content-Type") or "").lower()


def answer_violation(openapi, request, status, payload, headers):
    """``None`` if the fake's JSON answer conforms to the spec's response description, else a message.

    File answers are not checked: the spec lists their media type as the single odd key
    ``"application/zip, application/pdf"``, which no real Content-Type can match.
    """
    if not (headers or {}).get("Content-Type", "").startswith("application/json"):
        return None
    path = request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX) else request.path
    content_type = request.headers.get("Content-Type") if request.body else None
    spec_request = _SpecRequest(request.method, path, request.query, request.headers, request.body,
                                content_type)
    try:
        openapi.validate_response(spec_request, _SpecResponse(status, payload, headers))
    except Exception as exc:  # noqa: BLE001 - openapi-core raises many kinds
        return _explain(exc)
    return None


def _explain(exc):
    """The most useful message inside an openapi-core error (oneOf errors nest deeply)."""
    messages = [str(exc)]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        errors = getattr(cause, "schema_errors", None)
        if errors:
            try:
                from jsonschema.exceptions import best_match
                best = best_match(errors)
                leaf = best
                while leaf.context:
                    leaf = best_match(leaf.context)
                path = "/".join(str(p) for p in leaf.absolute_path)
                return f"{path or '(body)'}: {leaf.message}"
            except Exception:  # noqa: BLE001
                return "; ".join(str(e.message) for e in errors)[:1000]
        messages.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    return " / ".join(messages)[:1000]


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(value):
    return value.strftime("%Y-%m-%dT%H:%M:%S+00:00") if value else None


def count_pdf_pages(content):
    return max(1, len(re.findall(rb"/Type\s*/Page(?!s)", content or b"")))


class FakeActionError(Exception):
    """A simulated signer action the real Yousign would not allow (wrong turn, wrong state)."""


class FakeYousign(FakeProviderServer):
    name = "yousign"

    # [GUESS] knobs (see NOTES §3.3/§4): keep them switchable.
    require_signature_field = True  # activation refuses a signer without a signature field
    require_auth_mode_for_simple_level = True  # electronic_signature needs signature_authentication_mode
    require_https_webhook = True  # NOTES §4.1 [OK S5]: https endpoints only
    error_type = "invalid_request_error"  # [GUESS] the ``type`` of 400 answers
    sandbox = True
    # [GUESS] listing: soft-deleted requests are listed (with status "deleted"); parameters the spec does
    # not name are refused rather than ignored; pages hold at most ``max_page_size`` items.
    list_includes_deleted = True
    reject_unknown_list_params = True
    max_page_size = 100
    # [GUESS] Yousign does not document external_id as unique; switch on to check that a send after a
    # clean-up never meets a live request under the same reference.
    reject_duplicate_external_id = False
    # [OK docs signer.error] Yousign cancels the request when it fails a signature; whether a
    # ``signature_request.canceled`` event follows is [GUESS].
    cancel_event_after_signer_error = True

    def __init__(self, api_key="test-api-key", spec_path=None, validate_spec=True):
        self.api_key = api_key
        self.spec_path = spec_path
        self.openapi = load_openapi(spec_path) if (spec_path and validate_spec) else None
        self.spec_rejections = []  # (method, path, message) of requests refused by the spec
        # With ``check_answers``, the fake's own answers are validated against the spec's responses
        # too, so what the client parses has the documented shape: (method, path, message).
        self.check_answers = False
        self.answer_violations = []
        self.signature_requests = {}
        self.subscriptions = {}
        self.events = []  # every event built: (subscription id, payload dict)
        self.delivered = []  # (url, body, headers) of queued deliveries, for retry_event()
        self.reminders = []  # (request id, signer id)
        self.rules = []  # targeted faults: [method, path regex, action, value, times left]
        self.cursors = {}  # listing cursors issued: token -> (filters key, offset)
        # callable(request, answer) run after a handler answered (under the lock): lets a test make
        # Yousign change something between two of our calls, as a concurrent actor would.
        self.after_answer = None
        super().__init__()

    # ------------------------------------------------------------------ plumbing

    def register_routes(self):
        base = API_PREFIX + "/signature_requests"
        one = base + "/{request_id}"
        self.route("POST", base, self._wrap(self.create_request))
        self.route("GET", base, self._wrap(self.list_requests))
        self.route("GET", one, self._wrap(self.get_request))
        self.route("DELETE", one, self._wrap(self.delete_request))
        self.route("POST", one + "/documents", self._wrap(self.add_document))
        self.route("POST", one + "/signers", self._wrap(self.add_signer))
        self.route("GET", one + "/signers", self._wrap(self.list_signers))
        self.route("POST", one + "/activate", self._wrap(self.activate))
        self.route("POST", one + "/cancel", self._wrap(self.cancel))
        self.route("POST", one + "/signers/{signer_id}/send_reminder", self._wrap(self.send_reminder))
        self.route("GET", one + "/signers/{signer_id}/audit_trails", self._wrap(self.signer_audit_trail))
        self.route("GET", one + "/documents/download", self._wrap(self.download_documents))
        self.route("GET", one + "/audit_trails/download", self._wrap(self.download_audit_trails))
        self.route("POST", API_PREFIX + "/webhooks", self._wrap(self.create_webhook))

    @property
    def api_url(self):
        """What the client gets as ``base_url`` (like ``https://api-sandbox.yousign.app/v3``)."""
        return self.base_url + API_PREFIX

    def error(self, status, detail, kind=None):
        if status == 429:
            return json_response(429, {"message": detail})
        kind = kind or {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(status, self.error_type)
        return json_response(status, {"type": kind, "detail": detail})

    def _wrap(self, handler):
        def run(request):
            auth = request.headers.get("Authorization") or ""
            if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:].encode(), self.api_key.encode()):
                return self.error(401, "Authentication failed: missing or invalid API key.")
            if self.openapi is not None:
                problem = spec_violation(self.openapi, request)
                if problem:
                    self.spec_rejections.append((request.method, self.api_path(request), problem[1]))
                    return self.error(problem[0], problem[1])
            rule = self._take_rule(request)
            if rule and rule[2] == "status":
                status, body = rule[3]
                return json_response(status, body) if not isinstance(body, bytes) else (status, body, {})
            answer = handler(request)
            if self.openapi is not None and self.check_answers:
                problem = answer_violation(self.openapi, request, *answer)
                if problem:
                    self.answer_violations.append((request.method, self.api_path(request), problem))
            if self.after_answer is not None:
                with self.lock:
                    self.after_answer(request, answer)
            if rule and rule[2] == "delay_after":
                time.sleep(rule[3])  # Yousign acted, but the answer comes too late
            return answer
        return run

    @staticmethod
    def api_path(request):
        """The request's path as the spec names it (without the ``/v3`` server prefix)."""
        return request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX) else request.path

    def requests_to(self, method, path_regex):
        """Recorded requests whose API path (without ``/v3``) matches ``path_regex``."""
        return [r for r in self.requests if r.method == method and re.search(path_regex, self.api_path(r))]

    def _take_rule(self, request):
        for rule in self.rules:
            if rule[4] > 0 and rule[0] == request.method and re.search(rule[1], self.api_path(request)):
                rule[4] -= 1
                return rule
        return None

    def fail_when(self, method, path_regex, status=500, body=None, times=1):
        """Answer ``status`` to the next ``times`` matching requests (after auth/spec checks), e.g.
        to make only the upload fail in the middle of a send."""
        if body is None:
            body = {"message": "Too Many Requests"} if status == 429 else \
                {"type": "internal_server_error", "detail": f"injected {status}"}
        self.rules.append([method.upper(), path_regex, "status", (status, body), times])

    def delay_when(self, method, path_regex, seconds, times=1):
        """Process the matching request, then wait ``seconds`` before answering (a lost answer)."""
        self.rules.append([method.upper(), path_regex, "delay_after", seconds, times])

    def _request(self, request):
        request_id = request.params["request_id"]
        found = self.signature_requests.get(request_id)
        if not found or found.get("purged"):
            return None, self.error(404, f"Signature request {request_id} not found.")
        return found, None

    def _json_body(self, request):
        data = request.json()
        if not isinstance(data, dict):
            return None, self.error(400, "The body must be a JSON object.")
        return data, None

    # ------------------------------------------------------------------ views of the state

    def view_signer(self, signer, full=True):
        if not full:
            return {"id": signer["id"], "status": signer["status"]}
        return {
            "id": signer["id"], "info": {**{"phone_number": None}, **signer["info"]},
            "status": signer["status"], "fields": signer["fields"],
            "signature_level": signer["signature_level"],
            "signature_authentication_mode": signer["signature_authentication_mode"],
            "signature_link": signer.get("signature_link"),
            "signature_link_expiration_date": signer.get("signature_link_expiration_date"),
            "signature_image_preview": None, "redirect_urls": {"success": None, "error": None, "decline": None},
            "custom_text": {"request_subject": None, "request_body": None, "reminder_subject": None,
                            "reminder_body": None},
            "delivery_mode": signer["delivery_mode"], "identification_attestation_id": None,
            "sms_notification": {"otp_message": {"custom_text": None}}, "email_notification": {"disabled": []},
        }

    def view_request(self, req):
        return {
            "id": req["id"], "status": req["status"], "name": req["name"],
            "delivery_mode": req["delivery_mode"], "created_at": _iso(req["created_at"]),
            "ordered_signers": req["ordered_signers"], "reminder_settings": req["reminder_settings"],
            "timezone": req["timezone"], "email_custom_note": None,
            "expiration_date": req["expiration_date"], "source": "public_api",
            "signers": [self.view_signer(s, full=False) for s in req["signers"]],
            "approvers": [], "labels": [],
            "documents": [{"id": d["id"], "nature": d["nature"]} for d in req["documents"]],
            "sender": None, "external_id": req["external_id"], "branding_id": None,
            "custom_experience_id": None, "signers_allowed_to_decline": req["signers_allowed_to_decline"],
            "workspace_id": req["workspace_id"], "audit_trail_locale": req["audit_trail_locale"],
            "email_notification": {"sender": {"type": "organization", "custom_name": None},
                                   "custom_note": (req["email_notification"] or {}).get("custom_note")},
            "bulk_send_batch_id": None,
            "decline_information": req["decline_information"],
        }

    def view_request_in_list(self, req):
        """``SignatureRequestInList``: the request without what only the single read carries."""
        view = self.view_request(req)
        for key in ("email_notification", "decline_information"):
            view.pop(key)
        return view

    # ------------------------------------------------------------------ endpoints

    def create_request(self, request):
        data, problem = self._json_body(request)
        if problem:
            return problem
        for key in ("name", "delivery_mode"):
            if key not in data:
                return self.error(400, f"{key}: This value should not be blank.")
        if not isinstance(data["name"], str) or not 1 <= len(data["name"]) <= 128:
            return self.error(400, "name: must be a string of 1 to 128 characters.")
        if data["delivery_mode"] not in ("email", "none"):
            return self.error(400, "delivery_mode: The value you selected is not a valid choice.")
        if "ordered_signers" in data and not isinstance(data["ordered_signers"], bool):
            return self.error(400, "ordered_signers: This value should be of type bool.")
        external_id = data.get("external_id")
        if external_id is not None and (not isinstance(external_id, str) or not EXTERNAL_ID_RE.match(external_id)
                                        or len(external_id) > 255):
            return self.error(400, "external_id: This value is not valid.")
        if data.get("signers") or data.get("documents"):
            return self.error(400, "this fake supports documents and signers added after creation only")
        if external_id and self.reject_duplicate_external_id and any(
                r["external_id"] == external_id and r["status"] != "deleted"
                for r in self.signature_requests.values()):
            return self.error(400, "external_id: a signature request with this external_id already exists.")
        now = _now()
        expiration = data.get("expiration_date")
        req = {
            "id": str(uuid.uuid4()), "status": "draft", "name": data["name"],
            "delivery_mode": data["delivery_mode"], "created_at": now,
            "ordered_signers": bool(data.get("ordered_signers", False)),
            "reminder_settings": data.get("reminder_settings"),
            "timezone": data.get("timezone") or "Europe/Paris",
            "expiration_date": (expiration + "T23:59:59+00:00") if expiration
            else _iso(now + datetime.timedelta(days=182)),
            "external_id": external_id,
            "signers_allowed_to_decline": bool(data.get("signers_allowed_to_decline", False)),
            "workspace_id": data.get("workspace_id") or "00000000-0000-4000-8000-000000000000",
            "audit_trail_locale": data.get("audit_trail_locale") or "en",
            "email_notification": data.get("email_notification"),
            "decline_information": None, "documents": [], "signers": [], "cancel": None,
        }
        with self.lock:
            self.signature_requests[req["id"]] = req
        return json_response(201, self.view_request(req))

    # Filters of GET /signature_requests and their operators (the spec's parameter descriptions).
    LIST_FILTERS = {"status": ("eq", "in"), "workspace_id": ("eq",), "external_id": ("eq",),
                    "source": ("eq", "in")}
    LIST_PLAIN_PARAMS = ("after", "limit", "q")

    def _list_filters(self, request):
        """``({field: allowed values}, q, problem)`` from the query, refusing what Yousign would."""
        filters, q = {}, None
        for key, values in request.query.items():
            match = re.fullmatch(r"(\w+)\[(\w+)\]", key)
            if key in self.LIST_PLAIN_PARAMS:
                q = values[0] if key == "q" else q
                continue
            if match is None or match.group(1) not in self.LIST_FILTERS:
                if match is None and key in self.LIST_FILTERS:
                    return None, None, self.error(400, f"{key}: filters need an operator, e.g. {key}[eq]=…")
                if self.reject_unknown_list_params:
                    return None, None, self.error(400, f"{key}: unknown filter.")
                continue
            field, operator = match.groups()
            if operator not in self.LIST_FILTERS[field]:
                return None, None, self.error(400, f"{field}: operator {operator} is not allowed.")
            allowed = values[0].split(",") if operator == "in" else [values[0]]
            filters[field] = set(filters.get(field, allowed)) & set(allowed)
        return filters, q, None

    def list_requests(self, request):
        filters, q, problem = self._list_filters(request)
        if problem:
            return problem
        try:
            limit = int(request.arg("limit", "100"))
        except ValueError:
            return self.error(400, "limit: This value should be of type int.")
        if not 1 <= limit <= 100:
            return self.error(400, "limit: This value should be between 1 and 100.")
        key = json.dumps([sorted((k, sorted(v)) for k, v in filters.items()), q])
        offset = 0
        after = request.arg("after")
        if after is not None:
            issued = self.cursors.get(after)
            if issued is None or issued[0] != key:
                return self.error(400, "after: invalid cursor.")
            offset = issued[1]
        with self.lock:
            matching = [r for r in self.signature_requests.values() if self._listed(r, filters, q)]
        size = min(limit, self.max_page_size)
        page = matching[offset:offset + size]
        next_cursor = None
        if offset + size < len(matching):
            next_cursor = secrets.token_urlsafe(12)
            self.cursors[next_cursor] = (key, offset + size)
        return json_response(200, {"meta": {"next_cursor": next_cursor},
                                   "data": [self.view_request_in_list(r) for r in page]})

    def _listed(self, req, filters, q):
        if req.get("purged") or (req["status"] == "deleted" and not self.list_includes_deleted):
            return False
        values = {"status": req["status"], "workspace_id": req["workspace_id"],
                  "external_id": req["external_id"], "source": "public_api"}
        if any(values[field] not in allowed for field, allowed in filters.items()):
            return False
        return not q or q.lower() in req["name"].lower()

    def get_request(self, request):
        req, problem = self._request(request)
        return problem or json_response(200, self.view_request(req))

    def list_signers(self, request):
        req, problem = self._request(request)
        return problem or json_response(200, [self.view_signer(s) for s in req["signers"]])

    def delete_request(self, request):
        req, problem = self._request(request)
        if problem:
            return problem
        if req["status"] in ("ongoing", "approval"):
            return self.error(400, f"A signature request in status {req['status']} cannot be deleted; cancel it.")
        req["status"] = "deleted"
        if request.arg("permanent_delete") == "true":
            req["purged"] = True
        self._emit(req, "signature_request.deleted")
        return 204, b"", {}

    def add_document(self, request):
        req, problem = self._request(request)
        if problem:
            return problem
        if req["status"] != "draft":
            return self.error(400, "Documents can only be added to a draft signature request.")
        parts = request.multipart()
        if parts is None:
            return self.error(415, "Expected multipart/form-data.", kind="unsupported_media_type")
        if "file" not in parts or not parts["file"][2]:
            return self.error(400, "file: This value should not be blank.")
        nature = parts.get("nature", (None, None, b""))[2].decode()
        if nature not in ("signable_document", "attachment"):
            return self.error(400, "nature: The value you selected is not a valid choice.")
        filename, _ctype, content = parts["file"]
        if not content.startswith(b"%PDF"):
            return self.error(400, "file: only PDF documents are accepted by this fake.")
        if len(content) > 50 * 1024 * 1024:
            return self.error(400, "file: documents are limited to 50 MB.")
        name = parts.get("name", (None, None, (filename or "document.pdf").encode()))[2].decode()
        doc = {"id": str(uuid.uuid4()), "filename": name, "nature": nature, "content": content,
               "content_type": "application/pdf", "total_pages": count_pdf_pages(content),
               "created_at": _now()}
        req["documents"].append(doc)
        return json_response(201, {
            "id": doc["id"], "filename": doc["filename"], "nature": nature, "content_type": "application/pdf",
            "sha256": hashlib.sha256(content).hexdigest(), "is_protected": False, "is_signed": False,
            "created_at": _iso(doc["created_at"]), "total_pages": doc["total_pages"], "is_locked": False,
            "initials": None, "total_anchors": 0})

    def add_signer(self, request):
        req, problem = self._request(request)
        if problem:
            return problem
        if req["status"] != "draft":
            return self.error(400, "Signers can only be added to a draft signature request.")
        data, problem = self._json_body(request)
        if problem:
            return problem
        info = data.get("info")
        if not isinstance(info, dict):
            return self.error(400, "info: This value should not be blank (signers from scratch only).")
        for key in ("first_name", "last_name", "email", "locale"):
            if not info.get(key):
                return self.error(400, f"info.{key}: This value should not be blank.")
        if info["locale"] not in LOCALES:
            return self.error(400, "info.locale: The value you selected is not a valid choice.")
        if "@" not in info["email"]:
            return self.error(400, "info.email: This value is not a valid email address.")
        level = data.get("signature_level")
        if level not in SIGNATURE_LEVELS:
            return self.error(400, "signature_level: The value you selected is not a valid choice.")
        mode = data.get("signature_authentication_mode")
        if mode not in AUTH_MODES:
            return self.error(400, "signature_authentication_mode: The value you selected is not a valid choice.")
        if level == "electronic_signature" and mode is None and self.require_auth_mode_for_simple_level:
            return self.error(400, "signature_authentication_mode: required for electronic_signature.")
        if mode == "otp_sms" and not info.get("phone_number"):
            return self.error(400, "info.phone_number: required for otp_sms authentication.")
        if any(s["info"]["email"].lower() == info["email"].lower() for s in req["signers"]):
            return self.error(400, f"A signer with the e-mail {info['email']} already exists.")
        fields = data.get("fields") or []
        signer_id = str(uuid.uuid4())
        documents = {d["id"]: d for d in req["documents"]}
        stored_fields = []
        for index, field in enumerate(fields):
            if not isinstance(field, dict):
                return self.error(400, f"fields[{index}]: must be an object.")
            doc = documents.get(field.get("document_id"))
            if doc is None:
                return self.error(400, f"fields[{index}].document_id: unknown document.")
            if field.get("type") == "signature":
                for key, low, high in (("page", 1, doc["total_pages"]), ("x", 0, 32767), ("y", 0, 32767),
                                       ("width", 85, 2000), ("height", 37, 1000)):
                    value = field.get(key, low if key in ("width", "height") else None)
                    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                        return self.error(400, f"fields[{index}].{key}: must be an integer from {low} to {high}.")
                # what the Signer answer shows of it: FieldSignature's required keys
                field = {"signer_id": signer_id, "width": 85, "height": 37, "reason": None, **field}
            stored_fields.append({"id": str(uuid.uuid4()), **field})
        signer = {
            "id": signer_id, "info": dict(info), "status": "initiated", "fields": stored_fields,
            "signature_level": level, "signature_authentication_mode": mode,
            # [GUESS] a signer without its own mode shows the request's (the spec's enum has no null)
            "delivery_mode": data.get("delivery_mode") or req["delivery_mode"], "signature_link": None,
            "signature_link_expiration_date": None, "signed_at": None,
        }
        req["signers"].append(signer)
        return json_response(201, self.view_signer(signer))

    def activate(self, request):
        req, problem = self._request(request)
        if problem:
            return problem
        if req["status"] != "draft":
            return self.error(400, f"Only a draft signature request can be activated (it is {req['status']}).")
        if not any(d["nature"] == "signable_document" for d in req["documents"]):
            return self.error(400, "The signature request needs at least one signable document.")
        if not req["signers"]:
            return self.error(400, "The signature request needs at least one signer.")
        if self.require_signature_field:
            for signer in req["signers"]:
                if not any(f.get("type") == "signature" for f in signer["fields"]):
                    return self.error(400, f"Signer {signer['id']} has no signature field.")
        req["status"] = "ongoing"
        expires = _iso(_now() + datetime.timedelta(hours=48))
        for signer in req["signers"]:
            signer["signature_link"] = f"https://yousign.app/signatures/{req['id']}?s={signer['id']}"
            signer["signature_link_expiration_date"] = expires
        self._emit(req, "signature_request.activated")
        for signer in self._turn(req):
            self._notify(req, signer)
        view = self.view_request(req)
        view["signers"] = [{"id": s["id"], "status": s["status"], "signature_link": s["signature_link"],
                            "signature_link_expiration_date": s["signature_link_expiration_date"]}
                           for s in req["signers"]]
        return json_response(201, view)

    def cancel(self, request):
        req, problem = self._request(request)
        if problem:
            return problem
        data, problem = self._json_body(request)
        if problem:
            return problem
        if data.get("reason") not in CANCEL_REASONS:
            return self.error(400, "reason: The value you selected is not a valid choice.")
        note = data.get("custom_note")
        if note is not None and (not isinstance(note, str) or len(note) > 500):
            return self.error(400, "custom_note: This value is too long (500 characters at most).")
        if req["status"] not in ("ongoing", "approval"):
            return self.error(400, f"A signature request in status {req['status']} cannot be canceled.")
        req["status"] = "canceled"
        req["cancel"] = {"reason": data["reason"], "custom_note": note}
        for signer in req["signers"]:
            if signer["status"] not in ("signed", "declined"):
                signer["status"] = "aborted"  # [GUESS] what Yousign shows for signers left over
        self._emit(req, "signature_request.canceled")
        return json_response(201, self.view_request(req))

    def send_reminder(self, request):
        req, problem = self._request(request)
        if problem:
            return problem
        signer = next((s for s in req["signers"] if s["id"] == request.params["signer_id"]), None)
        if signer is None:
            return self.error(404, f"Signer {request.params['signer_id']} not found.")
        if req["status"] != "ongoing" or signer["status"] != "notified":
            return self.error(400, "Reminders are possible only for a notified signer of an ongoing request.")
        self.reminders.append((req["id"], signer["id"]))
        return 201, b"", {}

    def signer_audit_trail(self, request):
        """``SignerAuditTrail`` (JSON): only once the signer signed, says the spec."""
        req, problem = self._request(request)
        if problem:
            return problem
        signer = next((s for s in req["signers"] if s["id"] == request.params["signer_id"]), None)
        if signer is None:
            return self.error(404, f"Signer {request.params['signer_id']} not found.")
        if signer["status"] != "signed":
            return self.error(400, "The audit trail is only available once the signer has signed.")
        info = signer["info"]
        return json_response(200, {
            "version": 5, "signature_request": {"id": req["id"], "name": req["name"]},
            "sender": {"id": str(uuid.uuid4()), "type": "User"},
            "signer": {"id": signer["id"], "first_name": info["first_name"], "last_name": info["last_name"],
                       "email_address": info["email"], "consent_given_at": _iso(signer["signed_at"]),
                       "signature_process_completed_at": _iso(signer["signed_at"])},
            "documents": [{"id": d["id"], "name": d["filename"], "mime_type": "application/pdf"}
                          for d in req["documents"]],
            "organization": {"name": "Fake organisation"},
            "authentication": {"mode": signer["signature_authentication_mode"]},
        })

    def download_documents(self, request):
        req, problem = self._request(request)
        if problem:
            return problem
        version = request.arg("version", "current")
        if version not in ("current", "completed"):
            return self.error(400, "version: The value you selected is not a valid choice.")
        if version == "completed" and req["status"] != "done":
            return self.error(400, "The completed version is only available when the signature request is done.")
        docs = [d for d in req["documents"] if d["nature"] == "signable_document"] or req["documents"]
        files = [(d["filename"], self.completed_pdf(req, d) if version == "completed" else d["content"])
                 for d in docs]
        return self._file_answer(files, request.arg("archive") == "true", f"documents-{req['id']}.zip")

    def download_audit_trails(self, request):
        req, problem = self._request(request)
        if problem:
            return problem
        if req["status"] != "done":
            return self.error(400, "Audit trails are only available when the signature request is done.")
        trails = [(f"audit_trail_{s['id']}.pdf", self.audit_trail_pdf(req, s)) for s in req["signers"]]
        if request.arg("merge") == "true":
            trails = [("audit_trails.pdf", b"".join(t[1] for t in trails))]
        return self._file_answer(trails, False, f"audit_trails-{req['id']}.zip")

    def create_webhook(self, request):
        data, problem = self._json_body(request)
        if problem:
            return problem
        for key in ("endpoint", "description", "sandbox", "enabled", "auto_retry", "scopes", "subscribed_events"):
            if key not in data:
                return self.error(400, f"{key}: This value should not be blank.")
        endpoint = data["endpoint"]
        if not isinstance(endpoint, str) or (self.require_https_webhook and not endpoint.startswith("https://")):
            return self.error(400, "endpoint: only https endpoints are accepted.")
        secret = data.get("secret_key")
        if secret is not None and (not isinstance(secret, str) or len(secret) != 32):
            return self.error(400, "secret_key: This value should have exactly 32 characters.")
        events = data["subscribed_events"]
        if not isinstance(events, list) or not events:
            return self.error(400, "subscribed_events: must be a non-empty list.")
        sub = self.subscribe(endpoint, secret, events=events, description=data["description"],
                             enabled=bool(data["enabled"]), sandbox=bool(data["sandbox"]),
                             auto_retry=bool(data["auto_retry"]), scopes=data["scopes"])
        return json_response(201, {**sub, "created_at": _iso(sub["created_at"]), "updated_at": None})

    # ------------------------------------------------------------------ files

    @staticmethod
    def _file_answer(files, archive, zip_name):
        if len(files) == 1 and not archive:
            name, content = files[0]
            return 200, content, {"Content-Type": "application/pdf",
                                  "Content-Disposition": f'attachment; filename="{name}"'}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive_file:
            for name, content in files:
                archive_file.writestr(name, content)
        return 200, buffer.getvalue(), {"Content-Type": "application/zip",
                                        "Content-Disposition": f'attachment; filename="{zip_name}"'}

    @staticmethod
    def completed_pdf(req, doc):
        """The original PDF plus a trailer naming who signed (what tests can check)."""
        names = ", ".join(s["info"]["email"] for s in req["signers"] if s["status"] == "signed")
        return doc["content"] + f"\n%% signed with fake Yousign by {names}\n".encode()

    @staticmethod
    def audit_trail_pdf(req, signer):
        return (f"%PDF-1.4\n%% Yousign audit trail\n%% request {req['id']}\n%% signer {signer['info']['email']} "
                f"{signer['status']}\n%%EOF\n").encode()

    # ------------------------------------------------------------------ simulated signer actions

    def _find(self, request_id, email):
        req = self.signature_requests.get(request_id)
        if req is None:
            raise FakeActionError(f"unknown signature request {request_id}")
        signer = next((s for s in req["signers"] if s["info"]["email"].lower() == (email or "").lower()), None)
        if signer is None:
            raise FakeActionError(f"{email} is not a signer of {request_id}")
        return req, signer

    @staticmethod
    def _turn(req):
        """The signers who may act now: the first unsigned one if ordered, else all unsigned."""
        open_signers = [s for s in req["signers"] if s["status"] not in ("signed", "declined", "aborted", "error")]
        return open_signers[:1] if req["ordered_signers"] else open_signers

    def _check_turn(self, req, signer):
        if req["status"] != "ongoing":
            raise FakeActionError(f"the signature request is {req['status']}")
        if signer not in self._turn(req):
            raise FakeActionError(f"it is not {signer['info']['email']}'s turn to sign")

    def _notify(self, req, signer):
        if signer["status"] == "initiated":
            signer["status"] = "notified"
            self._emit(req, "signer.notified", signer)

    def sign(self, request_id, email):
        with self.lock:
            req, signer = self._find(request_id, email)
            self._check_turn(req, signer)
            signer["status"] = "signed"
            signer["signed_at"] = _now()
            self._emit(req, "signer.done", signer)
            following = self._turn(req)
            if not following:
                req["status"] = "done"
                self._emit(req, "signature_request.done")
            for other in following:
                self._notify(req, other)

    def decline(self, request_id, email, reason="I do not agree"):
        with self.lock:
            req, signer = self._find(request_id, email)
            self._check_turn(req, signer)
            if not req["signers_allowed_to_decline"]:
                raise FakeActionError("signers are not allowed to decline this signature request")
            signer["status"] = "declined"
            req["status"] = "declined"
            req["decline_information"] = {"signer_id": signer["id"], "reason": reason,
                                          "declined_at": _iso(_now())}
            for other in req["signers"]:
                if other["status"] not in ("signed", "declined"):
                    other["status"] = "aborted"  # [GUESS]
            self._emit(req, "signer.declined", signer)
            self._emit(req, "signature_request.declined")

    def fail_signature(self, request_id, email):
        """Yousign fails to apply ``email``'s signature (event ``signer.error``) and cancels the request."""
        with self.lock:
            req, signer = self._find(request_id, email)
            self._check_turn(req, signer)
            signer["status"] = "error"
            req["status"] = "canceled"
            for other in req["signers"]:
                if other["status"] not in ("signed", "declined", "error"):
                    other["status"] = "aborted"  # [GUESS], as for a cancel
            self._emit(req, "signer.error", signer)
            if self.cancel_event_after_signer_error:
                self._emit(req, "signature_request.canceled")

    def expire(self, request_id):
        with self.lock:
            req = self.signature_requests[request_id]
            if req["status"] != "ongoing":
                raise FakeActionError(f"the signature request is {req['status']}")
            req["status"] = "expired"
            self._emit(req, "signature_request.expired")

    # ------------------------------------------------------------------ webhooks

    def subscribe(self, endpoint, secret=None, events=("*",), description="test", enabled=True,
                  sandbox=True, auto_retry=True, scopes=("*",)):
        """A webhook subscription, as if made in the Yousign app (or via ``POST /webhooks``)."""
        sub = {"id": str(uuid.uuid4()), "endpoint": endpoint, "description": description,
               "sandbox": sandbox, "subscribed_events": list(events),
               "secret_key": secret or secrets.token_hex(16), "scopes": list(scopes), "workspaces": ["*"],
               "auto_retry": auto_retry, "enabled": enabled, "created_at": _now()}
        with self.lock:
            self.subscriptions[sub["id"]] = sub
        return sub

    @staticmethod
    def signature(secret, body):
        return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    def _emit(self, req, event_name, signer=None):
        data = {"signature_request": self.view_request(req)}
        if signer is not None:
            data["signer"] = self.view_signer(signer)
        for sub in list(self.subscriptions.values()):
            if not sub["enabled"]:
                continue
            if "*" not in sub["subscribed_events"] and event_name not in sub["subscribed_events"]:
                continue
            payload = {"event_id": str(uuid.uuid4()), "event_name": event_name,
                       "event_time": str(int(time.time())), "subscription_id": sub["id"],
                       "subscription_description": sub["description"], "sandbox": sub["sandbox"],
                       "data": data}
            body = json.dumps(payload).encode()
            self.events.append((sub["id"], payload))
            self._deliver(sub, body, retry=0)

    def _deliver(self, sub, body, retry):
        headers = {"Content-Type": "application/json", "User-Agent": "Yousign Webhook Bot",
                   "X-Yousign-Signature-256": self.signature(sub["secret_key"], body),
                   "X-Yousign-Retry": str(retry), "X-Yousign-Issued-At": _iso(_now())}
        self.delivered.append((sub["endpoint"], body, headers))
        self.queue_callback(sub["endpoint"], body, headers)

    def retry_event(self, index=-1):
        """Deliver a previously queued event again (same body, so the same ``event_id``)."""
        url, body, headers = self.delivered[index]
        sub = next(s for s in self.subscriptions.values() if s["endpoint"] == url)
        self._deliver(sub, body, retry=int(headers["X-Yousign-Retry"]) + 1)
