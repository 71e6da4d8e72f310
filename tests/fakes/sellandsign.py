"""FakeSellAndSign: a strict stand-in for SELL&SIGN's "REST-like" API, built from sellandsign/NOTES.md.

``fake.base_url`` is the client's ``base_url`` (paths start with ``/calinda/hub``). Rules (NOTES §):

* auth (§2): ``j_token`` header or query parameter of a registered licence seat, else 401.
* ``POST /calinda/hub/selling/do?m=sendCommandPacket`` (§4.1): multipart with a JSON "sellsign" file
  part and a PDF part whose file name equals ``contract.pdf_file_path``; customer (number, mode,
  contractor_id, vendor, fields), contract (licence's contract definition, ``contract_id`` -1),
  properties, ``contractors`` (shape [GUESS]: like the customer plus ``rank``) are checked.
* our reference: the customer ``number`` and the contract properties are stored with the contract
  (:meth:`contract` ``["customer_number"]``, ``["properties"]``); ``getContract`` echoes the number as
  ``customerNumber`` and ``customer.number`` ([2nd] S8; :attr:`echo_customer_number`).
* reads (§4.5): ``model/contract/read?action=getContract`` (with ``closedDate``, epoch ms, once
  closed), ``model/contractorsforcontract/list?action=getContractorsAbout``;
  ``model/contract/update?action=updateContractAutoCloseMode`` (§4.2).
* downloads (§4.6): ``do?m=getSignedContract`` only when signed and closed; the evidence method
  (:attr:`evidence_method`, [2nd] S8) serves a ZIP; an unknown ``m`` answers :attr:`unknown_method_status`.
* signing (§4.4, [GUESS] by ``rank``): :meth:`sign` / :meth:`reject` raise :class:`FakeSellAndSignError`
  out of turn; :meth:`expire`, :meth:`close` simulate the rest, :meth:`fail` a contract SELL&SIGN
  itself gives up on (state name and reason field [GUESS]).
* callbacks (§5): POSTed (unsigned) to the ``callback:url`` contract property, ``<id>`` replaced by
  the contract id, body per :attr:`callback_format` (default: form-encoded fields ``contract_id``,
  ``status``, ``event``; [GUESS], NOTES has no payload sample), queued for :meth:`flush_callbacks`.

Status value names are unknown (§4.5): :attr:`status_names` / :attr:`signer_status_names` set them.
"""
import io
import json
import re
import time
import urllib.parse
import zipfile

from .base import FakeProviderServer, json_response

HUB = "/calinda/hub"
SELLING = HUB + "/selling"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class FakeSellAndSignError(Exception):
    """A test drove the fake into something SELL&SIGN would not allow (e.g. signing out of turn)."""


class FakeSellAndSign(FakeProviderServer):
    name = "sellandsign"

    def __init__(self):
        # --- configurable ([GUESS] points of NOTES) ---
        self.packet_suffixes = (".sellsign", ".json", ".apiv3")
        self.require_vendor_is_token_user = True
        self.require_phone_for_sms = True
        self.sms_modes = (1, 3, 9)
        self.enforce_rank_order = True
        self.send_response_format = "json"  # or "text": "contract_id=<n>"
        self.callback_format = "form"  # "form" | "json" | "empty"
        self.callback_on = ("signer_signed", "completed", "refused", "expired", "failed")
        self.replace_id_placeholder = True
        self.evidence_method = "getEvidences"  # None: the fake knows no evidence method
        self.unknown_method_status = 400
        self.unsigned_download_status = 409
        self.auth_failure_status = 401
        self.auto_close_failure_status = None  # make updateContractAutoCloseMode fail (tests)
        self.adhoc_preference_format = "json"  # or "text"
        self.echo_customer_number = True  # getContract shows customerNumber / customer.number ([2nd] S8)
        self.status_names = {"open": "OPEN", "signed": "SIGNED", "closed": "CLOSED", "refused": "REFUSED",
                             "expired": "EXPIRED", "cancelled": "CANCELED", "failed": "ERROR"}
        self.signer_status_names = {"waiting": "NONE", "pending": "PENDING", "signed": "SIGNED",
                                    "refused": "REFUSED"}
        self.signed_marker = b"\n%SELLANDSIGN-SIGNED\n"
        # --- state ---
        self.licences = {}  # token -> {"vendor", "definitions", "adhoc", "modes"}
        self.contracts = {}  # id -> contract
        self._next_id = 81000
        self._next_contractor = 500
        super().__init__()

    # ------------------------------------------------------------------ test API

    def add_licence(self, token, vendor, definitions=(4321,), adhoc=4321, modes=(1, 2, 3, 7, 8, 9)):
        self.licences[token] = {"vendor": vendor.lower(), "definitions": set(definitions), "adhoc": adhoc,
                                "modes": set(modes)}

    def packets(self):
        out = []
        for request in self.requests_to("POST", r"/selling/do$"):
            if request.arg("m") == "sendCommandPacket":
                part = next(p for p in request.multipart().values() if p[1] == "application/json")
                out.append(json.loads(part[2]))
        return out

    def contract(self, contract_id):
        return self.contracts[int(contract_id)]

    def sign(self, contract_id, email):
        with self.lock:
            contract, signer = self._acting(contract_id, email)
            signer["state"] = "signed"
            signer["signatureDate"] = int(time.time() * 1000)
            self._advance(contract)
            if all(s["state"] == "signed" for s in contract["signers"]):
                contract["state"] = "signed"
                contract["signed"] = contract["pdf"] + self.signed_marker
                if contract["auto_close"]:
                    self._set_closed(contract)
                self._notify(contract, "completed")
            else:
                self._notify(contract, "signer_signed")

    def reject(self, contract_id, email, reason=""):
        with self.lock:
            contract, signer = self._acting(contract_id, email)
            signer["state"] = "refused"
            contract["state"] = "refused"
            self._notify(contract, "refused")

    def expire(self, contract_id):
        with self.lock:
            contract = self.contract(contract_id)
            if contract["state"] != "open":
                raise FakeSellAndSignError(f"contract {contract_id} is {contract['state']}")
            contract["state"] = "expired"
            self._notify(contract, "expired")

    def fail(self, contract_id, reason=""):
        """SELL&SIGN gives up on an open contract (e.g. its signature service failed)."""
        with self.lock:
            contract = self.contract(contract_id)
            if contract["state"] != "open":
                raise FakeSellAndSignError(f"contract {contract_id} is {contract['state']}")
            contract["state"] = "failed"
            contract["canceledReason"] = reason
            self._notify(contract, "failed")

    def close(self, contract_id):
        """What SELL&SIGN staff (or closeTransaction) do when auto-close is off."""
        self._set_closed(self.contract(contract_id))

    # ------------------------------------------------------------------ internals

    def _acting(self, contract_id, email):
        contract = self.contracts.get(int(contract_id))
        if contract is None:
            raise FakeSellAndSignError(f"unknown contract {contract_id}")
        if contract["state"] != "open":
            raise FakeSellAndSignError(f"contract {contract_id} is {contract['state']}")
        signer = next((s for s in contract["signers"] if s["email"] == email.lower()), None)
        if signer is None:
            raise FakeSellAndSignError(f"{email} does not sign contract {contract_id}")
        if signer["state"] != "pending":
            raise FakeSellAndSignError(f"it is not {email}'s turn ({signer['state']})")
        return contract, signer

    def _advance(self, contract):
        open_signers = [s for s in contract["signers"] if s["state"] in ("waiting", "pending")]
        if not open_signers:
            return
        if not self.enforce_rank_order:
            for s in open_signers:
                s["state"] = "pending"
            return
        first = min(s["rank"] for s in open_signers)
        for s in open_signers:
            s["state"] = "pending" if s["rank"] == first else "waiting"

    @staticmethod
    def _set_closed(contract):
        if not contract["closed"]:
            contract["closed"] = True
            contract["closedDate"] = int(time.time() * 1000)

    def _status_name(self, contract):
        if contract["state"] == "signed" and contract["closed"]:
            return self.status_names["closed"]
        return self.status_names[contract["state"]]

    def _notify(self, contract, event):
        url = contract["callback"]
        if not url or event not in self.callback_on:
            return
        if self.replace_id_placeholder:
            url = url.replace("<id>", str(contract["id"])).replace("%3Cid%3E", str(contract["id"]))
        data = {"contract_id": contract["id"], "status": self._status_name(contract), "event": event}
        if self.callback_format == "json":
            self.queue_callback(url, data)
        elif self.callback_format == "form":
            body = urllib.parse.urlencode(data).encode("ascii")
            self.queue_callback(url, body, {"Content-Type": "application/x-www-form-urlencoded"})
        else:
            self.queue_callback(url, b"", {"Content-Type": "text/plain"})

    def _error(self, status, message):
        # [GUESS] SELL&SIGN's error bodies are unknown (NOTES §6); integrations show the raw text.
        return status, message.encode(), {"Content-Type": "text/plain; charset=utf-8"}

    def _authed(self, handler):
        def run(request):
            token = request.headers.get("j_token") or request.arg("j_token")
            if not token or token not in self.licences:
                return self._error(self.auth_failure_status, "Invalid or missing j_token")
            request.licence = self.licences[token]
            return handler(request)
        return run

    def register_routes(self):
        self.route("GET", HUB + "/getPreferenceForLicense.action", self._authed(self._preference))
        for method in ("GET", "POST"):
            self.route(method, SELLING + "/do", self._authed(self._do))
            self.route(method, SELLING + "/model/contract/read", self._authed(self._contract_read))
            self.route(method, SELLING + "/model/contractorsforcontract/list", self._authed(self._contractors))
        self.route("POST", SELLING + "/model/contract/update", self._authed(self._contract_update))

    def _owned(self, request, value):
        try:
            contract = self.contracts.get(int(value))
        except (TypeError, ValueError):
            return None
        if contract is None or contract["licence"] is not request.licence:
            return None
        return contract

    # ------------------------------------------------------------------ handlers

    def _preference(self, request):
        if request.arg("key") != "sellsign_adhoc_contract_definition_id":
            return self._error(404, "unknown preference")
        value = request.licence["adhoc"]
        if self.adhoc_preference_format == "json":
            return json_response(200, {"key": request.arg("key"), "value": str(value)})
        return 200, str(value).encode(), {"Content-Type": "text/plain"}

    def _do(self, request):
        method = request.arg("m")
        if method == "sendCommandPacket" and request.method == "POST":
            return self._send(request)
        if method == "getSignedContract":
            return self._signed(request)
        if self.evidence_method and method == self.evidence_method:
            return self._evidence(request)
        if method == "closeTransaction":
            contract = self._owned(request, request.arg("id"))
            if contract is None:
                return self._error(404, "contract not found")
            self._set_closed(contract)
            return json_response(200, {"result": "ok"})
        return self._error(self.unknown_method_status, f"unknown method {method!r}")

    def _check_fields(self, where, fields, mode):
        if not isinstance(fields, list) or not all(
                isinstance(f, dict) and isinstance(f.get("key"), str) and isinstance(f.get("value"), str)
                for f in fields):
            return f"{where}.fields must be a list of {{key, value}} strings"
        values = {f["key"]: f["value"] for f in fields}
        if not EMAIL_RE.match(values.get("email", "")):
            return f"{where}: a valid email field is required"
        if not (values.get("lastname") or values.get("firstname")):
            return f"{where}: firstname/lastname required"
        if self.require_phone_for_sms and mode in self.sms_modes and not values.get("cellPhone"):
            return f"{where}: cellPhone is required for signature mode {mode}"
        return None

    def _validate(self, packet, parts, licence):
        if not isinstance(packet, dict):
            return "the sellsign file must hold a JSON object"
        customer, contract = packet.get("customer"), packet.get("contract")
        if not isinstance(customer, dict) or not isinstance(contract, dict):
            return "customer and contract are required"
        if not isinstance(customer.get("number"), str) or not customer["number"].strip():
            return "customer.number is required"
        mode = customer.get("mode")
        if isinstance(mode, bool) or not isinstance(mode, int) or mode not in licence["modes"]:
            return f"customer.mode {mode!r} is not enabled for this licence"
        if not isinstance(customer.get("contractor_id"), int):
            return "customer.contractor_id must be an integer (-1 to create)"
        vendor = customer.get("vendor")
        if not isinstance(vendor, str) or not EMAIL_RE.match(vendor):
            return "customer.vendor must be the sender's e-mail"
        if self.require_vendor_is_token_user and vendor.lower() != licence["vendor"]:
            return f"vendor {vendor} is not the user of this token"
        error = self._check_fields("customer", customer.get("fields"), mode)
        if error:
            return error
        ranks = [1]
        emails = [{f["key"]: f["value"] for f in customer["fields"]}["email"].lower()]
        contractors = packet.get("contractors", [])
        if not isinstance(contractors, list):
            return "contractors must be a list"
        for index, item in enumerate(contractors):
            where = f"contractors[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("contractor_id"), int):
                return f"{where}.contractor_id must be an integer"
            cmode = item.get("mode")
            if isinstance(cmode, bool) or not isinstance(cmode, int) or cmode not in licence["modes"]:
                return f"{where}.mode {cmode!r} is not enabled for this licence"
            rank = item.get("rank")
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
                return f"{where}.rank must be a positive integer"
            error = self._check_fields(where, item.get("fields"), cmode)
            if error:
                return error
            ranks.append(rank)
            emails.append({f["key"]: f["value"] for f in item["fields"]}["email"].lower())
        if len(set(emails)) != len(emails):
            return "every signatory needs a distinct e-mail"
        if self.enforce_rank_order and len(set(ranks)) != len(ranks):
            return "contractor ranks must be distinct"
        definition = contract.get("contract_definition_id")
        if isinstance(definition, bool) or not isinstance(definition, int) or definition not in licence["definitions"]:
            return f"contract_definition_id {definition!r} does not exist for this licence"
        if contract.get("contract_id") != -1:
            return "contract.contract_id must be -1 to create a contract"
        for key in ("message_title", "message_body"):
            if key in contract and not isinstance(contract[key], str):
                return f"contract.{key} must be a string"
        path = contract.get("pdf_file_path")
        pdf = next((p for p in parts.values() if p[0] == path), None) if isinstance(path, str) else None
        if pdf is None:
            return "no file part named like contract.pdf_file_path"
        if not pdf[2].startswith(b"%PDF"):
            return "the contract file is not a PDF"
        properties = packet.get("contract_properties", [])
        if not isinstance(properties, list) or not all(
                isinstance(p, dict) and isinstance(p.get("key"), str) and isinstance(p.get("value"), str)
                for p in properties):
            return "contract_properties must be a list of {key, value} strings"
        for key in ("files", "options"):
            if key in packet and not isinstance(packet[key], list):
                return f"{key} must be a list"
        if packet.get("to_sign", 1) not in (0, 1):
            return "to_sign must be 0 or 1"
        return None

    def _send(self, request):
        parts = request.multipart()
        if not parts:
            return self._error(400, "multipart/form-data expected")
        packet_parts = [p for p in parts.values() if p[1] == "application/json" and p[0]
                        and p[0].lower().endswith(self.packet_suffixes)]
        if len(packet_parts) != 1:
            return self._error(400, "exactly one sellsign JSON file part expected")
        try:
            packet = json.loads(packet_parts[0][2].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._error(400, "the sellsign file is not JSON")
        error = self._validate(packet, parts, request.licence)
        if error:
            return self._error(400, error)
        with self.lock:
            contract_id = self._next_id
            self._next_id += 1
            customer = packet["customer"]
            people = [(1, customer["mode"], customer["fields"])] + [
                (c["rank"], c["mode"], c["fields"]) for c in packet.get("contractors", [])]
            signers = []
            for rank, mode, fields in sorted(people, key=lambda p: p[0]):
                self._next_contractor += 1
                signers.append({"rank": rank, "mode": mode, "contractorId": self._next_contractor,
                                "email": {f["key"]: f["value"] for f in fields}["email"].lower(),
                                "state": "waiting", "signatureDate": -1})
            properties = {p["key"]: p["value"] for p in packet.get("contract_properties", [])}
            path = packet["contract"]["pdf_file_path"]
            contract = {
                "id": contract_id, "licence": request.licence, "state": "open", "closed": False, "auto_close": 0,
                "closedDate": -1, "canceledReason": "", "date": int(time.time() * 1000),
                "customer_number": customer["number"], "properties": properties,
                "definition": packet["contract"]["contract_definition_id"],
                "title": packet["contract"].get("message_title", ""), "vendor": customer["vendor"],
                "callback": properties.get("callback:url", ""), "signers": signers,
                "pdf": next(p for p in parts.values() if p[0] == path)[2], "signed": None, "packet": packet,
            }
            self._advance(contract)
            self.contracts[contract_id] = contract
        if self.send_response_format == "json":
            return json_response(200, {"contract_id": contract_id, "result": "OK"})
        return 200, f"OK contract_id={contract_id}".encode(), {"Content-Type": "text/plain"}

    def _contract_read(self, request):
        if request.arg("action") != "getContract":
            return self._error(400, "unknown action")
        contract = self._owned(request, request.arg("contract_id"))
        if contract is None:
            return self._error(404, "contract not found")
        data = {
            "id": contract["id"], "date": contract["date"], "contractDefinitionId": contract["definition"],
            "status": self._status_name(contract), "transactionId": "", "vendorEmail": contract["vendor"],
            "closed": contract["closed"], "closedDate": contract["closedDate"],
            "canceledReason": contract["canceledReason"], "messageTitle": contract["title"], "messageBody": "",
            "customer": {}, "optionsList": [],
        }
        if self.echo_customer_number:
            data["customerNumber"] = contract["customer_number"]
            data["customer"] = {"number": contract["customer_number"]}
        return json_response(200, data)

    def _contractors(self, request):
        if request.arg("action") != "getContractorsAbout":
            return self._error(400, "unknown action")
        contract = self._owned(request, request.arg("contract_id"))
        if contract is None:
            return self._error(404, "contract not found")
        offset, size = int(request.arg("offset", 0)), int(request.arg("size", 20))
        elements = [{"id": 9000 + s["contractorId"], "contractId": contract["id"], "contractorId": s["contractorId"],
                     "signatureMode": s["mode"], "signatureStatus": self.signer_status_names[s["state"]],
                     "signatureDate": s["signatureDate"], "signatureId": "", "rank": s["rank"]}
                    for s in contract["signers"]][offset:offset + size]
        return json_response(200, {"elements": elements})

    def _contract_update(self, request):
        if self.auto_close_failure_status:
            return self._error(self.auto_close_failure_status, "internal error")
        if request.arg("action") != "updateContractAutoCloseMode":
            return self._error(400, "unknown action")
        data = request.json()
        if not isinstance(data, dict) or data.get("auto_close") not in (0, 1) or not isinstance(data.get("id"), int):
            return self._error(400, "auto_close (0/1) and id are required")
        contract = self._owned(request, data["id"])
        if contract is None:
            return self._error(404, "contract not found")
        contract["auto_close"] = data["auto_close"]
        return json_response(200, {"id": contract["id"], "auto_close": data["auto_close"]})

    def _signed(self, request):
        contract = self._owned(request, request.arg("contract_id"))
        if contract is None:
            return self._error(404, "contract not found")
        if contract["state"] != "signed" or not contract["closed"]:
            return self._error(self.unsigned_download_status, "contract is not signed and closed")
        return 200, contract["signed"], {"Content-Type": "application/pdf"}

    def _evidence(self, request):
        contract = self._owned(request, request.arg("contract_id"))
        if contract is None:
            return self._error(404, "contract not found")
        if not contract["closed"]:
            return self._error(self.unsigned_download_status, "contract is not closed")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("preuve.json", json.dumps({"contract_id": contract["id"]}))
        return 200, buffer.getvalue(), {"Content-Type": "application/zip"}
