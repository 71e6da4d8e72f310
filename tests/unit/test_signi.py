"""SigniClient against FakeSigni over real HTTP: the flow in both account modes, outcomes, lost
callbacks, the expiring download link, outages, and the token-in-URL webhook scheme."""
import contextlib
import datetime
import json
import logging
import os
import secrets
import urllib.parse

import pytest
from conftest import SHARED_PROVIDERS

from esign_connector.api import signi
from esign_connector.api.base import (Document, Envelope, Organisation, ProviderError, Signer,
                                      WebhookAuthError, WebhookMalformed)
from esign_connector.api.signi import SigniClient
from esign_connector.tests.fakes.signi import FakeSigni, FakeSigniError

KEY = "demo-workspace-key-0123456789"
PROPOSER = "founder@acme.example"
TOKEN = secrets.token_urlsafe(32)
CALLBACK = f"https://odoo.example.com/esign/webhook/signi?token={TOKEN}"
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ACME = Organisation(name="ACME s.r.o.", tax_id="CZ12345678", country_code="CZ")
CLIENT_EMAIL = "jan.novak@client.example"
SWAGGER = os.path.join(SHARED_PROVIDERS, "signi", "apiDefinition.swagger.json")
# Signi has one API key per WORKSPACE, not per user: both modes use the same key and proposer;
# only the company's counterparty differs.
MODES = {
    "individual": {"email": "sales@acme.example", "name": "Petr Obchodník", "basis": ""},
    "central": {"email": "ceo@acme.example", "name": "Anna Jednatelka", "basis": "jednatelka"},
}


@contextlib.contextmanager
def running_fake():
    """A started FakeSigni with our workspace, collecting callbacks in ``delivered``."""
    with FakeSigni() as srv:
        srv.add_workspace(KEY, members=(PROPOSER, "sales@acme.example"))
        srv.delivered = []
        srv.callback_sink = lambda url, body, headers: srv.delivered.append((url, body, headers)) or 200
        yield srv


@pytest.fixture
def fake():
    with running_fake() as srv:
        yield srv


def make_client(fake, sleeps=None, **overrides):
    values = dict(base_url=fake.api_url, api_key=KEY, proposer_email=PROPOSER, timeout=(1, 0.5),
                  max_retries=2, sleep=sleeps.append if sleeps is not None else (lambda s: None))
    values.update(overrides)
    return SigniClient(**values)


def make_envelope(mode="central", **overrides):
    account = MODES[mode]
    client = Signer(key="signer-1", name="Jan Novák", email=CLIENT_EMAIL, role="client", sequence=1,
                    phone="+420 601 234 567")
    company = Signer(key="signer-2", name=account["name"], email=account["email"], role="company",
                     sequence=2, organisation=ACME, representation_basis=account["basis"])
    values = dict(reference="REQ-0007", title="Smlouva 7/2025", document=Document("smlouva.pdf", PDF),
                  signers=(company, client), message="Prosíme o podpis", language="cs", callback_url=CALLBACK)
    values.update(overrides)
    return Envelope(**values)


def query_of(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def deliver(fake, client):
    """Flush the fake's callbacks through verify + parse, as the controller does."""
    fake.flush_callbacks()
    notes = []
    for url, body, headers in fake.delivered:
        lowered = {k.lower(): v for k, v in headers.items()}
        query = query_of(url)
        assert query["token"] == TOKEN  # our per-request token came back untouched
        client.verify_webhook(lowered, body, query)
        notes.extend(client.parse_webhook(lowered, body, query))
    fake.delivered.clear()
    return notes


# ------------------------------------------------------------------ the whole flow


@pytest.mark.parametrize("mode", ["individual", "central"])
def test_full_flow_client_then_company(fake, mode):
    account = MODES[mode]
    client = make_client(fake)
    result = client.send(make_envelope(mode))
    ref = result.provider_ref
    assert ref.isdigit()
    assert [(s.key, s.state) for s in result.signers] == [("signer-1", "pending"), ("signer-2", "waiting")]
    assert all(s.signing_url for s in result.signers)

    request = fake.requests_to("POST", r"/contract/$")[0]
    assert request.headers["x-api-key"] == KEY and request.arg("type") == "doc"
    parts = request.multipart()
    assert parts["uploaded_file_key"] == ("smlouva.pdf", "application/pdf", PDF)
    data = json.loads(parts["data"][2])
    assert data["name"] == "Smlouva 7/2025" and data["number"] == "REQ-0007" and data["locale"] == "cs"
    assert data["state"] == "pending"
    assert data["settings"] == {"signing_order": "one_at_a_time", "missing_positions": "append_to_the_end"}
    proposer, first, second = data["people"]
    assert proposer == {"is_proposer": True, "email": PROPOSER, "contract_role": "approve"}
    assert (first["email"], first["party_order"], first["contract_role"], first["person_type"]) == (
        CLIENT_EMAIL, 1, "sign", "nature")
    assert (first["first_name"], first["last_name"], first["phone"]) == ("Jan", "Novák", "+420601234567")
    assert (second["email"], second["party_order"], second["person_type"]) == (account["email"], 2, "legal")
    assert (second["company_name"], second["dic"], second["ic"]) == ("ACME s.r.o.", "CZ12345678", "12345678")
    hooks = {h["state"]: query_of(h["url"]) for h in data["webhooks"]}
    assert hooks == {e: {"token": TOKEN, "event": e, "ref": "REQ-0007"} for e in signi.WEBHOOK_EVENTS}

    with pytest.raises(FakeSigniError):  # one_at_a_time: the company cannot sign first
        fake.sign(ref, account["email"])
    fake.sign(ref, CLIENT_EMAIL)
    assert deliver(fake, client) == []  # Signi calls only on the outcome
    assert client.get_status(ref).state == "sent"

    fake.sign(ref, account["email"])
    [note] = deliver(fake, client)
    assert note.event_type == "completed" and note.provider_ref == ref and note.reference == "REQ-0007"
    assert note.status is None  # unsigned body: the core reads the state from the API
    assert note.hints["signed_url"].startswith(fake.api_url + "/contract/pdf/preview?hash=")

    signed = client.download_signed(ref, note.hints)  # at once: the link lives 10 minutes
    assert signed.content == PDF + fake.signed_marker and signed.mimetype == "application/pdf"
    assert not fake.requests_to("GET", r"/download$")  # the hint was enough
    evidence = client.download_evidence(ref, note.hints)
    assert evidence.content.startswith(b"%PDF") and evidence.filename.endswith(".pdf")
    status = client.get_status(ref)
    assert (status.state, status.provider_state) == ("signed", "completed")
    completed = fake.contract(ref)["modified_at"].astimezone(datetime.timezone.utc).replace(tzinfo=None)
    assert status.completed_at == completed.replace(microsecond=0)


def test_requests_match_the_proxy_swagger_fields(fake, monkeypatch):
    """The ``data`` part and the fake's callbacks against what NETWORG's proxy swagger says about
    Signi's own fields (people, settings, locale, state; the callback body). The proxy's own
    fields (fileName, fileContent, file) are not Signi's and are left out."""
    if not os.path.exists(SWAGGER):
        pytest.skip(f"Signi swagger not available at {SWAGGER}")
    jsonschema = pytest.importorskip("jsonschema")
    with open(SWAGGER, encoding="utf-8") as handle:
        spec = json.load(handle)
    operation = spec["paths"]["/v2.1/contract/sign/provided"]["post"]
    body_schema = next(p["schema"] for p in operation["parameters"] if p["in"] == "body")
    own = {k: v for k, v in body_schema["properties"].items()
           if k in ("people", "settings", "locale", "state", "number")}
    schema = {"type": "object", "properties": own, "required": ["people"]}
    fake.data_schema = schema  # the fake refuses anything the schema refuses
    client = make_client(fake)
    for mode in MODES:
        ref = client.send(make_envelope(mode, reference=f"REQ-{mode}")).provider_ref
        jsonschema.validate(fake.create_requests()[-1], schema)
        fake.sign(ref, CLIENT_EMAIL)
        fake.sign(ref, MODES[mode]["email"])
    rejected = client.send(make_envelope("central", reference="REQ-rej")).provider_ref
    fake.reject(rejected, CLIENT_EMAIL, "Nesouhlasím")
    fake.flush_callbacks()
    callback_schema = spec["paths"]["/v2/registerwebhook/{contractId}"]["x-ms-notification-content"]["schema"]
    assert len(fake.delivered) == 3
    for _url, body, _headers in fake.delivered:
        jsonschema.validate(json.loads(body), callback_schema)
    # and the schema does bite: a wrong enum is refused by the fake
    monkeypatch.setattr(signi, "SIGNING_ORDER", "client_first")
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope())
    assert err.value.kind == "rejected" and "signing_order" in err.value.detail


# ------------------------------------------------------------------ outcomes


def test_refusal(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.reject(ref, CLIENT_EMAIL, "Cena nesouhlasí")
    with pytest.raises(FakeSigniError):
        fake.sign(ref, MODES["central"]["email"])
    [note] = deliver(fake, client)
    assert (note.event_type, note.hints, note.status) == ("rejected", None, None)
    status = client.get_status(ref)  # the reason comes from Signi's API, not from the callback
    assert (status.state, status.reason) == ("refused", "Cena nesouhlasí")
    with pytest.raises(ProviderError) as err:  # nothing signed to download
        client.download_signed(ref)
    assert err.value.kind == "conflict"


def test_expiry(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.expire(ref)
    [note] = deliver(fake, client)
    assert (note.event_type, note.status) == ("expired", None)
    assert fake.delivered == [] and query_of(fake.callbacks_sent[-1][0])["event"] == "expired"
    assert client.get_status(ref).state == "expired"


def test_help_text_state_names_accepted(fake):
    fake.callback_state_names = {"completed": "signed", "rejected": "rejected", "expired": "expired"}
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    [note] = deliver(fake, client)
    assert (note.event_type, note.status) == ("completed", None)


def test_lost_callback_then_status_and_api_download(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    fake.drop_callbacks = 1
    assert fake.flush_callbacks() == [None] and fake.delivered == []
    status = client.get_status(ref)
    assert status.state == "signed"
    signed = client.download_signed(ref)  # no hint: Signi's download endpoint
    assert signed.content == PDF + fake.signed_marker
    assert len(fake.requests_to("GET", rf"/contract/{ref}/download$")) == 1


@pytest.mark.parametrize("style", ["naive", "iso"])
def test_completed_at_is_signis_completion_date(fake, style):
    fake.modified_style = style  # naive: Prague wall-clock time; iso: with its offset
    fake.time_offset = -3 * 86400  # signed three days ago
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    assert client.get_status(ref).completed_at is None  # still pending: nothing completed
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    fake.time_offset = 0
    status = client.get_status(ref)
    signed_at = fake.contract(ref)["modified_at"].astimezone(datetime.timezone.utc).replace(tzinfo=None)
    assert status.state == "signed" and status.completed_at == signed_at.replace(microsecond=0)
    assert status.completed_at < datetime.datetime.utcnow() - datetime.timedelta(days=2)


def test_refusal_date_and_reason_come_from_the_api(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.reject(ref, CLIENT_EMAIL, "Cena nesouhlasí")
    status = client.get_status(ref)
    assert (status.state, status.reason) == ("refused", "Cena nesouhlasí")
    rejected_at = fake.contract(ref)["modified_at"].astimezone(datetime.timezone.utc).replace(tzinfo=None)
    assert status.completed_at == rejected_at.replace(microsecond=0)


def test_undocumented_state_stays_open(fake, caplog):
    """Signi documents no failure state, so nothing maps to "error"; an unknown state must not end
    the request (it is polled again) and is reported in the log."""
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.force_state(ref, "archived", "moved by an admin")
    status = client.get_status(ref)
    assert (status.state, status.provider_state, status.reason, status.completed_at) == (
        "sent", "archived", "", None)
    assert "undocumented state 'archived'" in caplog.text


def test_signer_states_when_detail_lists_people(fake):
    fake.detail_includes_people = True
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    status = client.get_status(ref)
    assert {s.email: s.state for s in status.signers} == {CLIENT_EMAIL: "signed",
                                                          MODES["central"]["email"]: "pending"}


# ------------------------------------------------------------------ the expiring link


def completed_note(fake, client):
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    [note] = deliver(fake, client)
    return ref, note


def test_link_downloaded_immediately_before_it_expires(fake):
    client = make_client(fake)
    ref, note = completed_note(fake, client)
    fake.time_offset = fake.link_ttl - 5  # still valid
    assert client.download_signed(ref, note.hints).content == PDF + fake.signed_marker
    assert len(fake.requests_to("GET", r"/pdf/preview$")) == 1 and not fake.requests_to("GET", r"/download$")


@pytest.mark.parametrize("expired_status", [403, 404])
def test_expired_link_falls_back_to_api(fake, expired_status):
    fake.expired_link_status = expired_status
    client = make_client(fake)
    ref, note = completed_note(fake, client)
    fake.time_offset = fake.link_ttl + 1
    signed = client.download_signed(ref, note.hints)
    assert signed.content == PDF + fake.signed_marker
    assert len(fake.requests_to("GET", r"/pdf/preview$")) == 1  # tried once, not retried
    assert len(fake.requests_to("GET", r"/download$")) == 1


def test_stale_hint_is_not_even_tried(fake):
    client = make_client(fake)
    ref, note = completed_note(fake, client)
    old = (datetime.datetime.utcnow() - datetime.timedelta(seconds=signi.SIGNED_LINK_TTL + 60)).isoformat()
    client.download_signed(ref, {**note.hints, "received_at": old})
    assert not fake.requests_to("GET", r"/pdf/preview$") and fake.requests_to("GET", r"/download$")


def test_link_on_foreign_host_is_ignored_and_its_query_never_logged(fake, caplog):
    caplog.set_level(logging.DEBUG, logger="esign_connector")
    client = make_client(fake)
    ref, note = completed_note(fake, client)
    client.download_signed(ref, {"signed_url": "http://169.254.169.254/latest/meta-data?hash=SECRET-HASH"})
    assert not fake.requests_to("GET", r"/pdf/preview$") and fake.requests_to("GET", r"/download$")
    assert "169.254.169.254/latest/meta-data" in caplog.text  # says which link was refused
    assert "SECRET-HASH" not in caplog.text


def test_failing_signed_link_is_not_logged_with_its_hash(fake, caplog):
    caplog.set_level(logging.DEBUG, logger="esign_connector")
    client = make_client(fake)
    ref, note = completed_note(fake, client)
    link_hash = query_of(note.hints["signed_url"])["hash"]
    fake.fail_next(500, times=3, on=("GET", r"/pdf/preview$"))  # first try + 2 retries of a GET
    assert client.download_signed(ref, note.hints).content == PDF + fake.signed_marker
    assert "using the API" in caplog.text and link_hash not in caplog.text


# ------------------------------------------------------------------ cancel, remind


def test_cancel_deletes_and_remind_is_not_supported(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    with pytest.raises(ProviderError) as err:
        client.remind(ref)
    assert err.value.kind == "conflict" and "remind" in err.value.detail
    client.cancel(ref, "wrong price")
    assert fake.requests_to("DELETE", rf"/contract/{ref}$")
    with pytest.raises(ProviderError) as err:
        client.get_status(ref)
    assert err.value.kind == "not_found"
    with pytest.raises(FakeSigniError):
        fake.sign(ref, CLIENT_EMAIL)


def test_evidence_path_unknown_means_no_evidence(fake, monkeypatch):
    monkeypatch.setattr(signi, "EVIDENCE_PATH", "/contract/{contract_id}/revisions")
    client = make_client(fake)
    ref, _note = completed_note(fake, client)
    assert client.download_evidence(ref) is None


def test_cancel_completed_is_a_conflict(fake):
    client = make_client(fake)
    ref, _note = completed_note(fake, client)
    with pytest.raises(ProviderError) as err:
        client.cancel(ref)
    assert err.value.kind == "conflict" and "cannot be deleted" in err.value.detail


# ------------------------------------------------------------------ errors and retries


def test_wrong_key_and_readable_validation_errors(fake):
    with pytest.raises(ProviderError) as err:
        make_client(fake, api_key="nope").send(make_envelope())
    assert (err.value.kind, err.value.status_code) == ("auth", 401)
    with pytest.raises(ProviderError) as err:
        make_client(fake, proposer_email="stranger@acme.example").send(make_envelope())
    assert err.value.kind == "rejected" and err.value.status_code == 422
    assert "not a member of the workspace" in err.value.detail


def test_checks_before_any_call(fake):
    client = make_client(fake)
    for envelope, kind, words in (
        (make_envelope(callback_url="https://odoo.example.com/esign/webhook/signi"), "config", "token"),
        (make_envelope(signers=(Signer(key="s", name="X", email="bad", role="client"),)), "rejected", "e-mail"),
        (make_envelope(signers=(Signer(key="s", name="X", email="x@y.cz", role="client", action="view"),)),
         "rejected", "view"),
    ):
        with pytest.raises(ProviderError) as err:
            client.send(envelope)
        assert err.value.kind == kind and words in err.value.detail
    with pytest.raises(ProviderError) as err:  # the proposer cannot be a counterparty too
        make_client(fake, proposer_email="sales@acme.example").send(make_envelope("individual"))
    assert err.value.kind == "config"
    with pytest.raises(ProviderError) as err:
        make_client(fake, api_key="").get_status("1")
    assert err.value.kind == "config"
    assert fake.requests == []


def test_no_callback_url_means_polling_only(fake):
    client = make_client(fake)
    client.send(make_envelope(callback_url=""))
    assert "webhooks" not in fake.create_requests()[0]


def test_status_read_retries_5xx_and_429(fake):
    sleeps = []
    client = make_client(fake, sleeps=sleeps)
    ref = client.send(make_envelope()).provider_ref
    fake.fail_next(503)
    fake.fail_next(429, headers={"Retry-After": "7"})
    assert client.get_status(ref).state == "sent"
    assert sleeps == [0.5, 7.0]
    fake.fail_next(502, times=3)
    with pytest.raises(ProviderError) as err:
        client.get_status(ref)
    assert err.value.kind == "unavailable" and err.value.transient


def test_send_429_is_retried_once_created(fake):
    client = make_client(fake)
    fake.fail_next(429)
    client.send(make_envelope())
    assert len(fake.requests_to("POST", r"/contract/$")) == 2 and len(fake.contracts) == 1


def test_send_5xx_is_not_retried(fake):
    client = make_client(fake)
    fake.fail_next(500, body={"message": "Server Error"})
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope())
    assert err.value.kind == "unavailable" and "unknown whether" in err.value.detail
    assert len(fake.requests_to("POST", r"/contract/$")) == 1


def test_send_timeout_is_not_resent(fake):
    client = make_client(fake, timeout=(1, 0.3))
    fake.delay_next(0.8)
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope())
    assert err.value.kind == "timeout"
    assert len(fake.requests_to("POST", r"/contract/$")) == 1


def test_dropped_connection_on_read_is_retried(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.drop_next()
    assert client.get_status(ref).state == "sent"


# ------------------------------------------------------------------ webhook checks


BODY = json.dumps({"contract_id": 3359, "state": "completed", "file": "https://api.signi.com/x",
                   "attachments": []}).encode()


def test_verify_webhook_token_presence_and_form():
    client = SigniClient(api_key="", proposer_email="")  # the controller's client needs no key
    client.verify_webhook({}, BODY, {"token": TOKEN, "event": "completed"})
    client.verify_webhook({}, BODY, {"token": [TOKEN]})
    for query in ({}, {"token": ""}, {"token": "short"}, {"token": "x" * 20 + "<script>"}, {"event": "completed"}):
        with pytest.raises(WebhookAuthError):
            client.verify_webhook({}, BODY, query)


@pytest.mark.parametrize("body, query", [
    (b"not json", {}),
    (b"[1, 2]", {}),
    (json.dumps({"state": "completed"}).encode(), {}),
    (json.dumps({"contract_id": "abc", "state": "completed"}).encode(), {}),
    (json.dumps({"contract_id": True, "state": "completed"}).encode(), {}),
    (json.dumps({"contract_id": 1, "state": "teleported"}).encode(), {}),
    (json.dumps({"contract_id": 1}).encode(), {}),
    (json.dumps({"contract_id": 1, "state": "completed"}).encode(), {"event": "rejected"}),
])
def test_malformed_webhooks(body, query):
    with pytest.raises(WebhookMalformed):
        SigniClient().parse_webhook({}, body, {"token": TOKEN, **query})


@pytest.mark.parametrize("forged", [
    {"state": "completed", "file": "https://api.signi.com/api/v1/contract/pdf/preview?hash=forged"},
    {"state": "rejected", "message": "forged refusal"},
    {"state": "expired"},
])
def test_forged_callback_body_sets_no_state(fake, forged):
    """Signi does not sign callbacks: whoever has (or guesses) the URL can post any body. Its claim
    must not become a state; the core reads Signi's API, which still says pending."""
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    body = json.dumps({"contract_id": int(ref), **forged}).encode()
    query = {"token": TOKEN, "event": forged["state"], "ref": "REQ-0007"}
    client.verify_webhook({}, body, query)
    [note] = client.parse_webhook({"content-type": "application/json"}, body, query)
    assert (note.event_type, note.provider_ref, note.reference) == (forged["state"], ref, "REQ-0007")
    assert note.status is None
    status = client.get_status(ref)  # what the core does for a notification without status
    assert (status.state, status.reason) == ("sent", "")
    assert fake.contract(ref)["state"] == "pending" and not fake.requests_to("GET", r"/pdf/preview$")


def test_callback_link_on_foreign_host_is_dropped_unlogged(caplog):
    caplog.set_level(logging.DEBUG, logger="esign_connector")
    body = json.dumps({"contract_id": 12, "state": "completed",
                       "file": "https://evil.example/pdf?hash=SECRET-HASH"}).encode()
    [note] = SigniClient().parse_webhook({}, body, {"token": TOKEN, "event": "completed"})
    assert note.hints is None and note.status is None
    assert "evil.example/pdf" in caplog.text and "SECRET-HASH" not in caplog.text


def test_event_from_url_when_body_has_none():
    [note] = SigniClient().parse_webhook({}, json.dumps({"contract_id": 12}).encode(),
                                         {"token": TOKEN, "event": "expired"})
    assert (note.provider_ref, note.event_type, note.status) == ("12", "expired", None)


def test_duplicate_callbacks_share_dedup_key(fake):
    client = make_client(fake)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, MODES["central"]["email"])
    fake.outbox.append(fake.outbox[0])  # Signi delivers the same call twice
    first, second = deliver(fake, client)
    assert first.dedup_key == second.dedup_key and first.dedup_key.startswith(f"signi:{ref}:completed:")
    other = client.parse_webhook({}, json.dumps({"contract_id": int(ref), "state": "expired"}).encode(),
                                 {"token": TOKEN})
    assert other[0].dedup_key != first.dedup_key
