"""SellAndSignClient against FakeSellAndSign over real HTTP: the flow in both account modes,
outcomes, lost callbacks, outages, and the token-in-URL callback scheme (nothing is signed)."""
import datetime
import io
import json
import secrets
import urllib.parse
import zipfile

import pytest

from esign_connector.api import sellandsign
from esign_connector.api.base import (Document, Envelope, Organisation, ProviderError, Signer,
                                      WebhookAuthError, WebhookMalformed)
from esign_connector.api.sellandsign import SellAndSignClient
from esign_connector.tests.fakes.sellandsign import FakeSellAndSign, FakeSellAndSignError

TOKEN = secrets.token_urlsafe(32)
CALLBACK = f"https://odoo.example.com/esign/webhook/sellandsign?token={TOKEN}"
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ACME = Organisation(name="ACME SAS", tax_id="FR 12 345678901", country_code="FR")
CLIENT_EMAIL = "jean.dupont@client.example"
DEFINITION = 4321
# SELL&SIGN has one j_token per licence SEAT (user): each mode acts with its own token and vendor.
MODES = {
    "individual": {"token": "sales|RH/Ygw-sales", "email": "vendeur@acme.example", "name": "Paul Vendeur",
                   "basis": ""},
    "central": {"token": "!ceo|RH/Ygw-ceo", "email": "pdg@acme.example", "name": "Claire Présidente",
                "basis": "Présidente"},
}


@pytest.fixture
def fake():
    with FakeSellAndSign() as srv:
        for account in MODES.values():
            srv.add_licence(account["token"], account["email"], definitions=(DEFINITION,), adhoc=DEFINITION)
        srv.delivered = []
        srv.callback_sink = lambda url, body, headers: srv.delivered.append((url, body, headers)) or 200
        yield srv


def make_client(fake, mode="central", sleeps=None, **overrides):
    account = MODES[mode]
    values = dict(base_url=fake.base_url, j_token=account["token"], vendor_email=account["email"],
                  contract_definition_id=DEFINITION, timeout=(1, 0.5), max_retries=2,
                  sleep=sleeps.append if sleeps is not None else (lambda s: None))
    values.update(overrides)
    return SellAndSignClient(**values)


def make_envelope(mode="central", **overrides):
    account = MODES[mode]
    client = Signer(key="signer-1", name="Jean Dupont", email=CLIENT_EMAIL, role="client", sequence=1,
                    phone="06 06 06 06 06")
    company = Signer(key="signer-2", name=account["name"], email=account["email"], role="company", sequence=2,
                     phone="07 07 07 07 07", organisation=ACME, representation_basis=account["basis"])
    values = dict(reference="REQ-0042", title="Contrat 42", document=Document("contrat 42.pdf", PDF),
                  signers=(company, client), message="Merci de signer", language="fr", callback_url=CALLBACK)
    values.update(overrides)
    return Envelope(**values)


def query_of(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def deliver(fake, client):
    fake.flush_callbacks()
    notes = []
    for url, body, headers in fake.delivered:
        lowered = {k.lower(): v for k, v in headers.items()}
        query = query_of(url)
        client.verify_webhook(lowered, body, query)
        notes.extend(client.parse_webhook(lowered, body, query))
    fake.delivered.clear()
    return notes


def fields_of(entry):
    return {f["key"]: f["value"] for f in entry["fields"]}


# ------------------------------------------------------------------ the whole flow


@pytest.mark.parametrize("mode", ["individual", "central"])
def test_full_flow_client_then_company(fake, mode):
    account = MODES[mode]
    client = make_client(fake, mode)
    result = client.send(make_envelope(mode))
    ref = result.provider_ref
    assert ref.isdigit()
    assert [(s.key, s.provider_ref, s.state) for s in result.signers] == [
        ("signer-1", "rank:1", "pending"), ("signer-2", "rank:2", "waiting")]

    request = fake.requests_to("POST", r"/selling/do$")[0]
    assert request.headers["j_token"] == account["token"] and request.arg("m") == "sendCommandPacket"
    parts = request.multipart()
    assert parts["sellsign"][0:2] == ("contract.sellsign", "application/json")
    packet = json.loads(parts["sellsign"][2])
    assert parts["pdf"] == ("contrat_42.pdf", "application/pdf", PDF)
    assert packet["contract"] == {"contract_definition_id": DEFINITION, "pdf_file_path": "contrat_42.pdf",
                                  "contract_id": -1, "message_title": "Contrat 42",
                                  "message_body": "Merci de signer"}
    customer = packet["customer"]
    assert (customer["number"], customer["mode"], customer["contractor_id"], customer["vendor"]) == (
        "REQ-0042", 3, -1, account["email"])
    assert fields_of(customer) == {"firstname": "Jean", "lastname": "Dupont", "email": CLIENT_EMAIL,
                                   "cellPhone": "0606060606"}
    [company] = packet["contractors"]
    assert (company["rank"], company["mode"], company["contractor_id"]) == (2, 3, -1)
    company_fields = fields_of(company)
    assert company_fields["email"] == account["email"] and company_fields["company_name"] == "ACME SAS"
    assert company_fields["registrationNumber"] == "FR12345678901"
    assert company_fields.get("job_title", "") == account["basis"]
    properties = {p["key"]: p["value"] for p in packet["contract_properties"]}
    assert properties["internal_contract_id"] == "REQ-0042"
    assert query_of(properties["callback:url"]) == {"token": TOKEN, "ref": "REQ-0042", "contract_id": "<id>"}
    assert fake.contract(ref)["auto_close"] == 1  # so the signed PDF becomes downloadable
    assert result.warnings == ()

    with pytest.raises(FakeSellAndSignError):  # rank 2 cannot sign before rank 1
        fake.sign(ref, account["email"])
    fake.sign(ref, CLIENT_EMAIL)
    [note] = deliver(fake, client)
    assert note.provider_ref == ref and note.status is None  # a ping: the core reads the status
    assert note.reference == "REQ-0042"
    status = client.get_status(ref)
    assert (status.state, status.reference, status.completed_at) == ("sent", "REQ-0042", None)
    assert [(s.provider_ref, s.state) for s in status.signers] == [("rank:1", "signed"), ("rank:2", "pending")]

    fake.sign(ref, account["email"])
    [note] = deliver(fake, client)
    assert note.provider_ref == ref
    status = client.get_status(ref)
    assert (status.state, status.provider_state) == ("signed", "CLOSED (closed)")
    assert all(s.state == "signed" and s.changed_at for s in status.signers)
    assert status.completed_at == datetime.datetime.fromtimestamp(
        fake.contract(ref)["closedDate"] / 1000, datetime.timezone.utc).replace(tzinfo=None)
    signed = client.download_signed(ref)
    assert signed.content == PDF + fake.signed_marker and signed.mimetype == "application/pdf"
    evidence = client.download_evidence(ref)
    assert evidence.mimetype == "application/zip" and evidence.filename.endswith(".zip")
    assert zipfile.ZipFile(io.BytesIO(evidence.content)).namelist() == ["preuve.json"]


def test_definition_looked_up_from_licence(fake):
    for fmt in ("json", "text"):
        fake.adhoc_preference_format = fmt
        client = make_client(fake, contract_definition_id=None)
        client.send(make_envelope(reference=f"REQ-{fmt}"))
        assert fake.packets()[-1]["contract"]["contract_definition_id"] == DEFINITION
    assert len(fake.requests_to("GET", r"getPreferenceForLicense")) == 2


def test_token_as_query_parameter(fake, monkeypatch):
    monkeypatch.setattr(sellandsign, "TOKEN_IN_HEADER", False)
    ref = make_client(fake).send(make_envelope()).provider_ref
    request = fake.requests_to("POST", r"/selling/do$")[0]
    assert "j_token" not in request.headers and request.arg("j_token") == MODES["central"]["token"]
    assert make_client(fake).get_status(ref).state == "sent"


def test_text_answer_to_send(fake):
    fake.send_response_format = "text"
    assert make_client(fake).send(make_envelope()).provider_ref.isdigit()


# ------------------------------------------------------------------ outcomes


def test_refusal(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.reject(ref, CLIENT_EMAIL, "Prix trop élevé")
    [note] = deliver(fake, client)
    assert note.event_type == "refused"
    status = client.get_status(ref)
    assert status.state == "refused"
    assert [(s.provider_ref, s.state) for s in status.signers] == [("rank:1", "refused"), ("rank:2", "waiting")]
    with pytest.raises(ProviderError) as err:
        client.download_signed(ref)
    assert err.value.kind == "conflict"


def test_expiry(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.expire(ref)
    [note] = deliver(fake, client)
    assert note.provider_ref == ref
    assert client.get_status(ref).state == "expired"


def test_signed_but_not_closed_is_not_final(fake, monkeypatch):
    monkeypatch.setattr(sellandsign, "AUTO_CLOSE_AFTER_SEND", False)
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    status = client.get_status(ref)
    assert (status.state, status.provider_state) == ("sent", "SIGNED")
    fake.close(ref)
    assert client.get_status(ref).state == "signed"


def test_unknown_status_names_are_inferred_from_signatories(fake):
    fake.status_names = {k: f"X_{k}" for k in fake.status_names}
    fake.signer_status_names = {"waiting": "W", "pending": "W", "signed": "SIGNED", "refused": "REFUSED"}
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    status = client.get_status(ref)
    assert status.state == "sent"
    assert [s.state for s in status.signers] == ["pending", "waiting"]  # first open signer's turn
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    assert client.get_status(ref).state == "signed"


def test_lost_callback_then_status(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    fake.drop_callbacks = 2
    assert fake.flush_callbacks() == [None, None] and fake.delivered == []
    assert client.get_status(ref).state == "signed"
    assert client.download_signed(ref).content.endswith(fake.signed_marker)


def test_no_evidence_method(fake):
    fake.evidence_method = None
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    assert client.download_evidence(ref) is None  # the guessed method is unknown: no evidence, no failure


def test_cancel_and_remind_are_not_in_the_api(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    for call in (lambda: client.cancel(ref, "x"), lambda: client.remind(ref)):
        with pytest.raises(ProviderError) as err:
            call()
        assert err.value.kind == "conflict"
    assert len(fake.requests) == 2  # send + auto-close only


# ------------------------------------------------------------------ errors and retries


def test_wrong_token_and_readable_rejections(fake):
    with pytest.raises(ProviderError) as err:
        make_client(fake, j_token="nope|x").send(make_envelope())
    assert (err.value.kind, err.value.status_code) == ("auth", 401) and "j_token" in err.value.detail
    with pytest.raises(ProviderError) as err:  # the vendor must be the token's own user
        make_client(fake, vendor_email="someone@acme.example").send(make_envelope())
    assert err.value.kind == "rejected" and "is not the user of this token" in err.value.detail
    with pytest.raises(ProviderError) as err:
        make_client(fake, contract_definition_id=999).send(make_envelope())
    assert err.value.kind == "rejected" and "contract_definition_id 999" in err.value.detail
    with pytest.raises(ProviderError) as err:
        make_client(fake).get_status("123456")
    assert err.value.kind == "not_found"


def test_checks_before_any_call(fake):
    client = make_client(fake)
    no_phone = Signer(key="signer-1", name="Jean Dupont", email=CLIENT_EMAIL, role="client")
    for envelope, kind, words in (
        (make_envelope(callback_url="https://odoo.example.com/esign/webhook/sellandsign"), "config", "token"),
        (make_envelope(signers=(no_phone,)), "rejected", "mobile phone"),
        (make_envelope(document=Document("a.docx", b"PK\x03\x04")), "rejected", "PDF"),
    ):
        with pytest.raises(ProviderError) as err:
            client.send(envelope)
        assert err.value.kind == kind and words in err.value.detail
    with pytest.raises(ProviderError) as err:
        make_client(fake, j_token="").send(make_envelope())
    assert err.value.kind == "config"
    assert fake.requests == []
    # with a mode that sends no SMS, no phone is needed
    make_client(fake, signature_mode=2).send(make_envelope(signers=(no_phone,)))


def test_status_read_retries_5xx_and_429(fake):
    sleeps = []
    client = make_client(fake, sleeps=sleeps)
    ref = client.send(make_envelope()).provider_ref
    fake.fail_next(500)
    fake.fail_next(429, headers={"Retry-After": "3"})
    assert client.get_status(ref).state == "sent"
    assert sleeps == [0.5, 3.0]
    fake.drop_next()
    assert client.get_status(ref).state == "sent"  # a dropped read is simply read again
    fake.fail_next(503, times=3)
    with pytest.raises(ProviderError) as err:
        client.get_status(ref)
    assert err.value.kind == "unavailable"


def test_send_5xx_not_retried_and_429_retried(fake):
    client = make_client(fake)
    fake.fail_next(502)
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope())
    assert err.value.kind == "unavailable" and "unknown whether" in err.value.detail
    assert len(fake.requests_to("POST", r"/selling/do$")) == 1 and not fake.contracts
    fake.fail_next(429)
    client.send(make_envelope())
    assert len(fake.requests_to("POST", r"/selling/do$")) == 3 and len(fake.contracts) == 1


def test_send_timeout_is_not_resent(fake):
    client = make_client(fake, timeout=(1, 0.3))
    fake.delay_next(0.8)
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope())
    assert err.value.kind == "timeout"
    assert len(fake.requests_to("POST", r"/selling/do$")) == 1


def test_auto_close_failure_does_not_fail_the_send(fake):
    fake.auto_close_failure_status = 500
    client = make_client(fake)
    result = client.send(make_envelope())
    assert result.provider_ref.isdigit() and fake.contract(result.provider_ref)["auto_close"] == 0
    assert len(fake.requests_to("POST", r"/model/contract/update$")) == 3  # idempotent: retried


# ------------------------------------------------------------------ callback checks


def test_verify_webhook_token_presence_and_form():
    client = SellAndSignClient()
    client.verify_webhook({}, b"", {"token": TOKEN})
    for query in ({}, {"token": ""}, {"token": "abc"}, {"contract_id": "5"}, {"token": "é" * 30}):
        with pytest.raises(WebhookAuthError):
            client.verify_webhook({}, b"", query)


@pytest.mark.parametrize("body, query", [
    (b"\xff\xfe", {}),
    (b"just text", {"contract_id": "5"}),
    (b"[1]", {"contract_id": "5"}),
    (b"", {}),
    (b"", {"contract_id": "<id>"}),
    (json.dumps({"status": "SIGNED"}).encode(), {}),
    (json.dumps({"contract_id": "12a"}).encode(), {}),
    (json.dumps({"contract_id": True}).encode(), {}),
])
def test_malformed_callbacks(body, query):
    with pytest.raises(WebhookMalformed):
        SellAndSignClient().parse_webhook({}, body, {"token": TOKEN, **query})


@pytest.mark.parametrize("fmt, placeholder", [("json", True), ("form", False), ("empty", True)])
def test_callback_formats(fake, fmt, placeholder):
    fake.callback_format = fmt
    fake.replace_id_placeholder = placeholder
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    [note] = deliver(fake, client)
    assert note.provider_ref == ref and note.dedup_key.startswith(f"sellandsign:{ref}:")


def test_duplicate_callbacks_share_dedup_key(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.outbox.append(fake.outbox[0])
    fake.sign(ref, MODES["central"]["email"])
    first, again, final = deliver(fake, client)
    assert first.dedup_key == again.dedup_key != final.dedup_key


# ------------------------------------------------------------------ form-encoded callbacks, nothing trusted

FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_fake_posts_form_fields_and_the_client_reads_them(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.flush_callbacks()
    [(url, body, headers)] = fake.delivered
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(body.decode()) == {"contract_id": [ref], "status": ["OPEN"],
                                                    "event": ["signer_signed"]}
    [note] = client.parse_webhook({k.lower(): v for k, v in headers.items()}, body, query_of(url))
    assert (note.provider_ref, note.event_type, note.reference) == (ref, "signer_signed", "REQ-0042")
    assert note.payload == {"contract_id": ref, "status": "OPEN", "event": "signer_signed"}


def test_a_callback_claiming_signed_is_only_a_ping(fake):
    """The body is unsigned and SELL&SIGN's state names are unknown (NOTES §4.5/§5): its claim is
    never a status; the core reads the contract, which is still open."""
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    body = urllib.parse.urlencode({"contract_id": ref, "status": "CLOSED", "event": "completed"}).encode()
    [note] = client.parse_webhook(FORM, body, {"token": TOKEN, "contract_id": ref})
    assert note.status is None and note.provider_ref == ref
    assert client.get_status(ref).state == "sent"


@pytest.mark.parametrize("body, query, words", [
    (b"contract_id=81000&contract_id=81001", {}, "repeats contract_id"),
    (b"contract_id=81001", {"contract_id": "81000"}, "two different contracts"),
    (b"contract_id=81000%20OR%201", {}, "invalid contract id"),
    (b"status=SIGNED", {"contract_id": "<id>"}, "names no contract"),
    (b"just text", {"contract_id": "81000"}, "neither a form nor JSON"),
])
def test_malformed_form_callbacks(body, query, words):
    with pytest.raises(WebhookMalformed, match=words):
        SellAndSignClient().parse_webhook(FORM, body, {"token": TOKEN, **query})


def test_form_callback_values_are_decoded_and_labels_bounded():
    body = urllib.parse.urlencode({"contract_id": "81000", "event": "sign\u00e9 par le client",
                                   "message": "Sign\u00e9 & valid\u00e9"}).encode()
    [note] = SellAndSignClient().parse_webhook(FORM, body, {"token": TOKEN, "contract_id": "81000",
                                                            "ref": "REQ-0042"})
    assert note.payload["message"] == "Sign\u00e9 & valid\u00e9"
    assert note.event_type == "changed"  # not a plain label: not copied into the event journal's name
    assert note.reference == "REQ-0042"
    [note] = SellAndSignClient().parse_webhook(FORM, b"contract_id=81000", {"token": TOKEN, "ref": "R" * 129})
    assert note.reference == ""  # longer than any reference of ours


# ------------------------------------------------------------------ failures, reasons, dates


def test_provider_failure_maps_to_error_with_its_message(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.fail(ref, "Service de signature indisponible")
    [note] = deliver(fake, client)
    assert (note.provider_ref, note.event_type, note.status) == (ref, "failed", None)
    status = client.get_status(ref)
    assert (status.state, status.reason, status.provider_state) == (
        "error", "Service de signature indisponible", "ERROR")


@pytest.mark.parametrize("name", ["FAILED", "IN_ERROR"])
def test_provider_failure_without_message_names_the_state(fake, name):
    fake.status_names["failed"] = name
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.fail(ref)
    status = client.get_status(ref)
    assert status.state == "error" and name in status.reason


def test_completed_at_without_closing_is_the_last_signature(fake, monkeypatch):
    monkeypatch.setattr(sellandsign, "AUTO_CLOSE_AFTER_SEND", False)
    monkeypatch.setattr(sellandsign, "REQUIRE_CLOSED_FOR_SIGNED", False)
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    assert client.get_status(ref).completed_at is None  # not finished yet
    fake.sign(ref, MODES["central"]["email"])
    status = client.get_status(ref)
    last = max(s["signatureDate"] for s in fake.contract(ref)["signers"])
    assert status.state == "signed"
    assert status.completed_at == datetime.datetime.fromtimestamp(
        last / 1000, datetime.timezone.utc).replace(tzinfo=None)


def test_reference_is_echoed_only_where_the_contract_read_has_it(fake):
    client = make_client(fake)
    ref = client.send(make_envelope(reference="ESR/2027/0007")).provider_ref
    assert fake.contract(ref)["customer_number"] == "ESR/2027/0007"
    assert client.get_status(ref).reference == "ESR/2027/0007"
    fake.echo_customer_number = False
    assert client.get_status(ref).reference == ""
