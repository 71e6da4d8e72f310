"""FakeSigni: a strict stand-in for Signi's REST API (``/api/v1``), built from signi/NOTES.md.

``fake.api_url`` is the client's ``base_url``. Rules (NOTES section in brackets):

* auth (§2): header ``x-api-key`` with a registered workspace key, else 401.
* create (§3.1): ``POST /contract/?type=doc``, multipart with a JSON file part ``data`` and the
  document part ``uploaded_file_key`` (pdf/doc/docx/odt). ``data`` is checked field by field against
  what Signi's help pages and NETWORG's proxy schema say about Signi's own fields (people, settings,
  locale, state, webhooks); exactly one proposer, a member of the workspace. Tests may also set
  :attr:`data_schema` (built from the proxy's swagger) to validate ``data`` with ``jsonschema``.
* signing (§3.2): :meth:`sign` / :meth:`reject` are test-driven and raise :class:`FakeSigniError`
  when it is not that person's turn (``one_at_a_time``: ascending ``party_order``); the proposer
  approves automatically at creation.
* webhooks (§4): on the outcome, ONE unsigned JSON POST ``{"contract_id", "state", "file",
  "attachments"}`` (+ ``message`` on rejection) to the URL registered for that outcome, queued for
  :meth:`flush_callbacks`. ``file`` is a preview link that expires after :attr:`link_ttl` seconds;
  afterwards it answers :attr:`expired_link_status`.
* status (§3.4) ``GET /contract/{id}``, download ``GET /contract/{id}/download`` and history
  ``GET /contract/{id}/history`` ([GUESS] paths), delete ``DELETE /contract/{id}`` (§3.6). The
  detail's ``modified`` is written as :attr:`modified_style` says, in :attr:`timezone`; it echoes
  our ``number`` only when :attr:`detail_includes_number` is set (the proxy's detail has none).
* no call lists or searches contracts (none is known): a contract is found by its id only.

[GUESS] behaviours are attributes set in ``__init__``.
"""
import copy
import datetime
import json
import re
import secrets
import time
import zoneinfo

from .base import FakeProviderServer, json_response

API = "/api/v1"
LOCALES = ("cs", "en", "sk", "ru", "vi", "pl", "hu")
CONTRACT_STATES_ON_CREATE = ("pending",)
SIGNING_ORDERS = ("all_at_once", "proposers_before_counterparties", "one_at_a_time")
MISSING_POSITIONS = ("error", "append_to_the_end")
CONTRACT_ROLES = ("sign", "approve", "stamp")
PERSON_TYPES = ("legal", "nature", "citizen")
PERSON_STRINGS = ("email", "first_name", "last_name", "phone", "company_name", "ic", "dic", "street", "city",
                  "zip_code", "date_of_birth", "autosign_place")
WEBHOOK_STATES = ("completed", "rejected", "expired")
EXTENSIONS = (".pdf", ".doc", ".docx", ".odt")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
HISTORY_PDF = b"%PDF-1.4\n% Signi contract history (fake)\n%%EOF\n"


class FakeSigniError(Exception):
    """A test drove the fake into something Signi would not allow (e.g. signing out of turn)."""


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FakeSigni(FakeProviderServer):
    name = "signi"

    def __init__(self):
        # --- configurable ([GUESS] points of NOTES) ---
        self.link_ttl = 600  # seconds the webhook's file link works ([OK] 10 minutes)
        self.expired_link_status = 403  # what an expired/used link answers (403 or 404)
        self.preview_requires_key = False  # the hash is the credential
        self.callback_state_names = {"completed": "completed", "rejected": "rejected", "expired": "expired"}
        self.detail_includes_people = False  # the proxy's detail has no people; Signi's may
        self.detail_includes_number = False  # the proxy's detail has no number; Signi's may
        self.modified_style = "naive"  # "naive": YYYY-MM-DD HH:MM:SS in ``timezone``; "iso": with offset
        self.timezone = "Europe/Prague"
        self.number_max_length = 255  # [GUESS] a typical VARCHAR; Signi's limit is undocumented
        self.require_party_order_for_one_at_a_time = True
        self.require_positions_or_append = True  # "if sign is chosen, position must be filled in"
        self.require_https_webhooks = False  # tests post to http://127.0.0.1
        self.allow_delete_completed = False
        self.signed_marker = b"\n%SIGNI-SIGNED\n"
        self.data_schema = None  # optional JSON schema of ``data`` (tests build it from the swagger)
        self.time_offset = 0.0
        # --- state ---
        self.workspaces = {}  # api key -> {"name", "members": set, "owner"}
        self.contracts = {}  # id -> contract dict
        self.links = {}  # hash -> {"contract_id", "expires_at", "content"}
        self._next_id = 3359
        self._url = ""
        super().__init__()

    # ------------------------------------------------------------------ test API

    def start(self):
        super().start()
        # Kept: a handler still answering a delayed request after stop() must not lose its address.
        self._url = self.base_url
        return self

    @property
    def api_url(self):
        return self._url + API

    def now(self):
        return time.time() + self.time_offset

    def add_workspace(self, api_key, name="DEMO workspace", members=("founder@acme.example",)):
        members = [m.lower() for m in members]
        self.workspaces[api_key] = {"name": name, "members": set(members), "owner": members[0]}

    def create_requests(self):
        return [json.loads(r.multipart()["data"][2]) for r in self.requests_to("POST", r"/contract/$")]

    def contract(self, contract_id):
        return self.contracts[int(contract_id)]

    def sign(self, contract_id, email):
        """The counterparty ``email`` signs (test-driven); raises when it is not their turn."""
        with self.lock:
            contract, person = self._acting(contract_id, email)
            person["state"] = "signed"
            self._touch(contract)
            self._advance(contract)
            if all(p["state"] in ("signed", "approved") for p in contract["people"]):
                contract["state"] = "completed"
                contract["signed"] = contract["document"] + self.signed_marker
                self._notify(contract, "completed")

    def reject(self, contract_id, email, message=""):
        with self.lock:
            contract, person = self._acting(contract_id, email)
            person["state"] = "rejected"
            contract["state"] = "rejected"
            contract["message"] = message
            self._touch(contract)
            self._notify(contract, "rejected", message=message)

    def expire(self, contract_id):
        with self.lock:
            contract = self.contract(contract_id)
            if contract["state"] != "pending":
                raise FakeSigniError(f"contract {contract_id} is {contract['state']}, cannot expire")
            contract["state"] = "expired"
            self._touch(contract)
            self._notify(contract, "expired")

    def force_state(self, contract_id, state, message=""):
        """Put a contract into a state the notes do not list (what an undocumented one looks like)."""
        with self.lock:
            contract = self.contract(contract_id)
            contract["state"] = state
            contract["message"] = message
            self._touch(contract)

    def make_link(self, contract_id):
        """A fresh 10-minute preview link to the signed document (what the webhook carries)."""
        contract = self.contract(contract_id)
        token = secrets.token_hex(16)
        self.links[token] = {"contract_id": contract["id"], "expires_at": self.now() + self.link_ttl,
                             "content": contract["signed"]}
        return f"{self.api_url}/contract/pdf/preview?hash={token}"

    # ------------------------------------------------------------------ internals

    def _acting(self, contract_id, email):
        contract = self.contracts.get(int(contract_id))
        if contract is None or contract.get("deleted"):
            raise FakeSigniError(f"unknown contract {contract_id}")
        if contract["state"] != "pending":
            raise FakeSigniError(f"contract {contract_id} is {contract['state']}")
        person = next((p for p in contract["people"] if p["email"].lower() == email.lower()
                       and not p["is_proposer"]), None)
        if person is None:
            raise FakeSigniError(f"{email} is not a counterparty of contract {contract_id}")
        if person["state"] != "pending":
            raise FakeSigniError(f"it is not {email}'s turn (state {person['state']})")
        return contract, person

    def _advance(self, contract):
        order = contract["settings"].get("signing_order", "proposers_before_counterparties")
        open_people = [p for p in contract["people"] if p["state"] in ("waiting", "pending")]
        if not open_people:
            return
        if order == "one_at_a_time":
            first = min(p.get("party_order", 0) for p in open_people)
            for p in open_people:
                p["state"] = "pending" if p.get("party_order", 0) == first else "waiting"
        else:
            for p in open_people:
                p["state"] = "pending"

    def _touch(self, contract):
        moment = datetime.datetime.fromtimestamp(self.now(), zoneinfo.ZoneInfo(self.timezone))
        contract["modified_at"] = moment  # for tests: the true moment of the last change
        if self.modified_style == "iso":
            contract["modified"] = moment.isoformat(timespec="seconds")
        else:
            contract["modified"] = moment.strftime("%Y-%m-%d %H:%M:%S")

    def _notify(self, contract, outcome, message=""):
        url = contract["webhooks"].get(outcome)
        if not url:
            return  # an empty URL means "don't call" [OK]
        body = {"contract_id": contract["id"], "state": self.callback_state_names[outcome]}
        if outcome == "completed":
            body["file"] = self.make_link(contract["id"])
            body["attachments"] = []
        if outcome == "rejected":
            body["message"] = message
        self.queue_callback(url, body)  # unsigned, as documented

    def _error(self, status, message, errors=None):
        # [GUESS] Signi's error body is undocumented (NOTES §5); Laravel-like shape.
        data = {"message": message}
        if errors:
            data["errors"] = errors
        return json_response(status, data)

    def _invalid(self, field, message):
        return self._error(422, "The given data was invalid.", {field: [message]})

    def _authed(self, handler):
        def run(request):
            key = request.headers.get("x-api-key")
            if not key or key not in self.workspaces:
                return self._error(401, "Unauthenticated.")
            request.workspace = self.workspaces[key]
            return handler(request)
        return run

    def register_routes(self):
        self.route("GET", API + "/me", self._authed(self._me))
        self.route("POST", API + "/contract/", self._authed(self._create))
        self.route("GET", API + "/contract/pdf/preview", self._preview)
        self.route("GET", API + "/contract/{cid}", self._authed(self._detail))
        self.route("DELETE", API + "/contract/{cid}", self._authed(self._delete))
        self.route("GET", API + "/contract/{cid}/download", self._authed(self._download))
        self.route("GET", API + "/contract/{cid}/history", self._authed(self._history))

    def _owned(self, request):
        try:
            contract = self.contracts.get(int(request.params["cid"]))
        except ValueError:
            contract = None
        if contract is None or contract["workspace"] is not request.workspace or contract.get("deleted"):
            return None
        return contract

    # ------------------------------------------------------------------ handlers

    def _me(self, request):
        ws = request.workspace
        return json_response(200, {"user": {"email": ws["owner"]}, "workspace": {"name": ws["name"]},
                                   "token": {"expiration_date": "2099-12-31"}, "links": {"tokens": ""}})

    def _validate_person(self, index, person):
        where = f"people.{index}"
        if not isinstance(person, dict):
            return self._invalid(where, "must be an object")
        for field in ("is_proposer", "email", "contract_role"):
            if field not in person:
                return self._invalid(f"{where}.{field}", "is required")
        if not isinstance(person["is_proposer"], bool):
            return self._invalid(f"{where}.is_proposer", "must be a boolean")
        for field in PERSON_STRINGS:
            if field in person and not isinstance(person[field], str):
                return self._invalid(f"{where}.{field}", "must be a string")
        if not EMAIL_RE.match(person["email"]):
            return self._invalid(f"{where}.email", "must be a valid e-mail address")
        if person["contract_role"] not in CONTRACT_ROLES:
            return self._invalid(f"{where}.contract_role", f"must be one of {CONTRACT_ROLES}")
        if "person_type" in person and person["person_type"] not in PERSON_TYPES:
            return self._invalid(f"{where}.person_type", f"must be one of {PERSON_TYPES}")
        if "party_order" in person and not _number(person["party_order"]):
            return self._invalid(f"{where}.party_order", "must be a number")
        if "date_of_birth" in person and not DATE_RE.match(person["date_of_birth"]):
            return self._invalid(f"{where}.date_of_birth", "must be YYYY-MM-DD")
        positions = person.get("positions", [])
        if not isinstance(positions, list) or not all(
                isinstance(p, dict) and all(_number(p[k]) for k in ("page", "x", "y") if k in p)
                for p in positions):
            return self._invalid(f"{where}.positions", "must be a list of {page, x, y, anchor}")
        return None

    def _validate(self, data, workspace):
        if not isinstance(data, dict):
            return self._invalid("data", "must be a JSON object")
        if self.data_schema is not None:
            import jsonschema
            try:
                jsonschema.validate(data, self.data_schema)
            except jsonschema.ValidationError as exc:
                return self._invalid(".".join(map(str, exc.absolute_path)) or "data", exc.message)
        name = data.get("name") or data.get("contract_name")
        if not isinstance(name, str) or not name.strip():
            return self._invalid("name", "is required")
        if "number" in data and not isinstance(data["number"], str):
            return self._invalid("number", "must be a string")
        if len(data.get("number") or "") > self.number_max_length:
            return self._invalid("number", f"may not be greater than {self.number_max_length} characters")
        if "locale" in data and data["locale"] not in LOCALES:
            return self._invalid("locale", f"must be one of {LOCALES}")
        if "state" in data and data["state"] not in CONTRACT_STATES_ON_CREATE:
            return self._invalid("state", f"must be one of {CONTRACT_STATES_ON_CREATE}")
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            return self._invalid("settings", "must be an object")
        if "signing_order" in settings and settings["signing_order"] not in SIGNING_ORDERS:
            return self._invalid("settings.signing_order", f"must be one of {SIGNING_ORDERS}")
        if "missing_positions" in settings and settings["missing_positions"] not in MISSING_POSITIONS:
            return self._invalid("settings.missing_positions", f"must be one of {MISSING_POSITIONS}")
        if "autosign_proposers" in settings and not isinstance(settings["autosign_proposers"], str):
            return self._invalid("settings.autosign_proposers", "must be a string")
        people = data.get("people")
        if not isinstance(people, list) or not people:
            return self._invalid("people", "is required")
        for index, person in enumerate(people):
            error = self._validate_person(index, person)
            if error:
                return error
        proposers = [p for p in people if p["is_proposer"]]
        if len(proposers) != 1:
            return self._invalid("people", "a contract has exactly one proposer (its author)")
        if proposers[0]["email"].lower() not in workspace["members"]:
            return self._invalid("people", f"{proposers[0]['email']} is not a member of the workspace")
        emails = [p["email"].lower() for p in people]
        if len(set(emails)) != len(emails):
            return self._invalid("people", "every person needs a distinct e-mail")
        counterparties = [p for p in people if not p["is_proposer"]]
        if not counterparties:
            return self._invalid("people", "at least one counterparty is required")
        if self.require_party_order_for_one_at_a_time and settings.get("signing_order") == "one_at_a_time" \
                and any("party_order" not in p for p in counterparties):
            return self._invalid("people", "one_at_a_time needs party_order for every counterparty")
        if self.require_positions_or_append and settings.get("missing_positions") != "append_to_the_end" \
                and any(p["contract_role"] == "sign" and not p.get("positions") for p in people):
            return self._invalid("people", "signers need positions (or missing_positions=append_to_the_end)")
        webhooks = data.get("webhooks", [])
        if not isinstance(webhooks, list):
            return self._invalid("webhooks", "must be a list")
        for hook in webhooks:
            if not isinstance(hook, dict) or hook.get("state") not in WEBHOOK_STATES \
                    or not isinstance(hook.get("url", ""), str):
                return self._invalid("webhooks", f"each webhook needs state in {WEBHOOK_STATES} and a url")
            if hook.get("url") and not hook["url"].startswith(("https://",) if self.require_https_webhooks
                                                             else ("https://", "http://")):
                return self._invalid("webhooks", "url must be an absolute URL")
        return None

    def _create(self, request):
        if request.arg("type") != "doc":
            return self._invalid("type", "type=doc is required for an uploaded document")
        parts = request.multipart()
        if parts is None:
            return self._error(400, "multipart/form-data expected")
        if "data" not in parts or "uploaded_file_key" not in parts:
            return self._invalid("data", "parts data and uploaded_file_key are required")
        try:
            data = json.loads(parts["data"][2].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._invalid("data", "must be a JSON file")
        filename, _ctype, content = parts["uploaded_file_key"]
        if not filename or not filename.lower().endswith(EXTENSIONS):
            return self._invalid("uploaded_file_key", f"only {EXTENSIONS} files are accepted")
        if filename.lower().endswith(".pdf") and not content.startswith(b"%PDF"):
            return self._invalid("uploaded_file_key", "the file is not a PDF")
        error = self._validate(data, request.workspace)
        if error:
            return error
        with self.lock:
            contract_id = self._next_id
            self._next_id += 1
            people = []
            for person in data["people"]:
                entry = copy.deepcopy(person)
                entry["state"] = "approved" if person["is_proposer"] else "waiting"
                people.append(entry)
            contract = {
                "id": contract_id, "workspace": request.workspace, "state": "pending",
                "name": data.get("name") or data.get("contract_name"), "number": data.get("number"),
                "settings": dict(data.get("settings") or {}), "people": people,
                "webhooks": {h["state"]: h.get("url", "") for h in data.get("webhooks", [])},
                "document": content, "signed": None, "message": "", "data": data,
            }
            self._touch(contract)
            self._advance(contract)
            self.contracts[contract_id] = contract
        notifications = [{"email": p["email"], "links": {"contract": f"{self._url}/sign/{contract_id}/{i}"}}
                         for i, p in enumerate(people) if not p["is_proposer"]]
        return json_response(200, {"contract_id": contract_id, "state": "pending", "attachments": [],
                                   "notifications": notifications})

    def _detail(self, request):
        contract = self._owned(request)
        if contract is None:
            return self._error(404, "Contract not found.")
        body = {"contract_id": str(contract["id"]), "state": contract["state"], "modified": contract["modified"],
                "attachments": []}
        if contract["message"]:  # the rejection reason (or a forced state's message)
            body["message"] = contract["message"]
        if contract["state"] == "completed":
            body["file"] = self.make_link(contract["id"])
        if self.detail_includes_number and contract.get("number"):
            body["number"] = contract["number"]
        if self.detail_includes_people:
            body["people"] = [{"email": p["email"], "is_proposer": p["is_proposer"], "state": p["state"],
                               "party_order": p.get("party_order")} for p in contract["people"]]
        return json_response(200, body)

    def _delete(self, request):
        contract = self._owned(request)
        if contract is None:
            return self._error(404, "Contract not found.")
        if contract["state"] == "completed" and not self.allow_delete_completed:
            return self._error(409, "A completed contract cannot be deleted.")
        contract["deleted"] = True
        return 204, b"", {}

    def _download(self, request):
        contract = self._owned(request)
        if contract is None:
            return self._error(404, "Contract not found.")
        if contract["state"] != "completed":
            return self._error(409, "The contract is not signed yet.")
        return 200, contract["signed"], {"Content-Type": "application/pdf"}

    def _history(self, request):
        contract = self._owned(request)
        if contract is None:
            return self._error(404, "Contract not found.")
        return 200, HISTORY_PDF, {"Content-Type": "application/pdf"}

    def _preview(self, request):
        if self.preview_requires_key and request.headers.get("x-api-key") not in self.workspaces:
            return self._error(401, "Unauthenticated.")
        link = self.links.get(request.arg("hash") or "")
        if link is None:
            return self._error(404, "Not found.")
        if link["expires_at"] < self.now():
            return self._error(self.expired_link_status, "The link has expired.")
        return 200, link["content"], {"Content-Type": "application/pdf"}
