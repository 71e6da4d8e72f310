"""AutentiClient against FakeAutenti over real HTTP: flow in both account modes, failures, tokens."""
import base64
import json

import pytest

from esign_connector.api import autenti, keys
from esign_connector.api.autenti import AutentiClient
from esign_connector.api.base import (Document, Envelope, Organisation, ProviderError, Signer,
                                      WebhookAuthError)
from esign_connector.tests.fakes.autenti import FakeAutenti, FakeAutentiError

CLIENT_ID = "odoo-client-app"
SECRET = "s3cret"
KID = "odoo-key-1"
ORG = "odoo-db-uuid-company-1"
WEBHOOK_URL = "https://odoo.example.com/esign/webhook/autenti"
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ACME = Organisation(name="ACME Sp. z o.o.", tax_id="PL 123-456-78-90", country_code="PL")
CLIENT_EMAIL = "jan@client.example"
MODES = {
    # individual: the salesperson's own Autenti account acts and signs for the company
    "individual": {"email": "sales@acme.example", "subject": "odoo-user-7", "name": "Piotr Handlowiec",
                   "basis": ""},
    # central: the representative acts and signs every contract, with the basis of representation
    "central": {"email": "ceo@acme.example", "subject": "odoo-representative-1", "name": "Anna Prezes",
                "basis": "Prezes Zarządu (KRS 0000123456)"},
}


@pytest.fixture(scope="module")
def pem():
    return keys.generate_private_key_pem()


@pytest.fixture(autouse=True)
def _fresh_caches():
    autenti.clear_caches()
    yield
    autenti.clear_caches()


@pytest.fixture(scope="module")
def jwk(pem):
    return keys.public_jwk(pem, KID)


@pytest.fixture
def fake(jwk):
    with FakeAutenti() as srv:
        srv.register_client(CLIENT_ID, SECRET, jwk, organisation=ORG)
        srv.delivered = []
        # Stands in for Odoo's controller: records what Autenti POSTs to us.
        srv.callback_sink = lambda url, body, headers: srv.delivered.append((url, body, headers)) or 200
        yield srv


@pytest.fixture
def sleeps():
    return []


def make_client(fake, pem, mode="central", sleeps=None, **overrides):
    account = MODES[mode]
    values = dict(base_url=fake.api_url, client_id=CLIENT_ID, client_secret=SECRET, organisation_id=ORG,
                  private_key_pem=pem, kid=KID, acting_email=account["email"],
                  acting_subject=account["subject"], jwks_url=fake.jwks_url, timeout=(1, 0.5),
                  max_retries=2, sleep=(sleeps.append if sleeps is not None else (lambda s: None)))
    values.update(overrides)
    return AutentiClient(**values)


def webhook_client(fake):
    """What the Odoo controller builds: no acting account, only the JWKS location."""
    return AutentiClient(base_url=fake.api_url, jwks_url=fake.jwks_url, timeout=(1, 0.5),
                         sleep=lambda s: None)


def make_envelope(mode="central", **overrides):
    account = MODES[mode]
    client = Signer(key="signer-1", name="Jan Kowalski", email=CLIENT_EMAIL, role="client", sequence=1)
    company = Signer(key="signer-2", name=account["name"], email=account["email"], role="company",
                     sequence=2, organisation=ACME, representation_basis=account["basis"])
    values = dict(reference="REQ-0001", title="Umowa 1/2025", document=Document("umowa.pdf", PDF),
                  signers=(company, client), message="Prosimy o podpis", language="pl",
                  callback_url=WEBHOOK_URL)
    values.update(overrides)
    return Envelope(**values)


def deliver(fake):
    """Flush the fake's callbacks and run them through verify + parse like the controller does."""
    fake.flush_callbacks()
    receiver = webhook_client(fake)
    notes = []
    for _url, body, headers in fake.delivered:
        lowered = {k.lower(): v for k, v in headers.items()}
        receiver.verify_webhook(lowered, body, {})
        notes.extend(receiver.parse_webhook(lowered, body, {}))
    fake.delivered.clear()
    return notes


def signer_states(status):
    return {s.email: s.state for s in status.signers}


# ------------------------------------------------------------------ the whole flow


@pytest.mark.parametrize("mode", ["individual", "central"])
def test_full_flow_client_then_company(fake, pem, mode):
    account = MODES[mode]
    client = make_client(fake, pem, mode)
    client.register_callback(WEBHOOK_URL)
    result = client.send(make_envelope(mode))
    ref = result.provider_ref
    assert ref.startswith("DOCUMENT_PROCESS:")
    assert {(s.key, s.provider_ref) for s in result.signers} == {
        ("signer-1", f"PARTY-EMAIL:{CLIENT_EMAIL}"), ("signer-2", f"PARTY-EMAIL:{account['email']}")}

    # The JWT-bearer assertion acted as the right Autenti user.
    claims = fake.token_requests[0]
    assert (claims["email"], claims["sub"], claims["iss"], claims["aud"]) == (
        account["email"], account["subject"], ORG, "autenti.com")
    assert claims["exp"] - claims["iat"] == 300 and claims["email_verified"] is True

    # Parties: client priority 1, company priority 2 as member of ACME with its NIP (+ basis).
    body = fake.create_requests()[0]
    # Our reference rides in the title, the only value of ours Autenti keeps (module docstring).
    assert body["title"] == "Umowa 1/2025 [ref REQ-0001]" and body["processLanguage"] == "pl"
    first, second = body["parties"]
    assert first["party"]["contacts"][0]["attributes"]["email"] == CLIENT_EMAIL
    assert "relationships" not in first["party"]
    priorities = [[c["attributes"]["priority"] for c in p["constraints"]
                   if c["classifiers"] == ["CONSTRAINT-UNIQUE_TYPE:PARTICIPATION_PRIORITY"]] for p in body["parties"]]
    assert priorities == [[1], [2]]
    assert all(p["role"] == "SIGNER" for p in body["parties"])
    relationship = second["party"]["relationships"][0]
    assert relationship["type"] == "PARTY_RELATIONSHIP-TYPE:MEMBER"
    assert relationship["party"] == {"name": "ACME Sp. z o.o.", "extIds": [
        {"identificationSpace": "TAXID-PL-NIP", "identifier": "1234567890"}]}
    if mode == "central":
        assert relationship["attributes"] == {"relationshipDescription": account["basis"]}
    else:
        assert "attributes" not in relationship

    notes = deliver(fake)
    assert [n.event_type for n in notes] == ["EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_SENT"]
    status = client.get_status(ref)
    assert status.state == "sent" and status.provider_state == "PROCESSING"
    assert signer_states(status) == {CLIENT_EMAIL: "pending", account["email"]: "waiting"}

    with pytest.raises(FakeAutentiError):  # Autenti enforces the order
        fake.sign(ref, account["email"])

    fake.sign(ref, CLIENT_EMAIL)
    notes = deliver(fake)
    assert notes and all(n.provider_ref == ref and n.status is None for n in notes)
    assert signer_states(client.get_status(ref)) == {CLIENT_EMAIL: "signed", account["email"]: "pending"}

    fake.sign(ref, account["email"])
    notes = deliver(fake)
    assert "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_PROCESS_COMPLETED" in [n.event_type for n in notes]
    status = client.get_status(ref)
    assert status.state == "signed" and set(signer_states(status).values()) == {"signed"}

    signed = client.download_signed(ref)
    assert signed.content == PDF + fake.signed_marker and signed.mimetype == "application/pdf"
    assert signed.filename.endswith(".pdf")
    evidence = client.download_evidence(ref)
    assert evidence.content.startswith(b"%PDF") and "signature_card" in evidence.filename
    # File ids contain "/" and travel percent-encoded as one path segment.
    content_paths = [r.path for r in fake.requests_to("GET", r"/content$")]
    assert content_paths and all("%2FDTBS" in p for p in content_paths)


def test_lost_callback_is_recovered_by_reading_the_status(fake, pem):
    client = make_client(fake, pem)
    client.register_callback(WEBHOOK_URL)
    ref = client.send(make_envelope()).provider_ref
    deliver(fake)
    fake.drop_callbacks = 1
    fake.sign(ref, CLIENT_EMAIL)
    assert fake.flush_callbacks() == [None]
    assert signer_states(client.get_status(ref))[CLIENT_EMAIL] == "signed"


def test_refusal_gives_refused_with_reason(fake, pem):
    client = make_client(fake, pem)
    client.register_callback(WEBHOOK_URL)
    ref = client.send(make_envelope()).provider_ref
    fake.reject(ref, CLIENT_EMAIL, "Cena za wysoka")
    notes = deliver(fake)
    assert notes[-1].event_type == "EVENT_CLASSIFIER-UNIQUE_TYPE:SIGNATURE_REJECTION"
    status = client.get_status(ref)
    assert (status.state, status.reason) == ("refused", "Cena za wysoka")
    refused = next(s for s in status.signers if s.email == CLIENT_EMAIL)
    assert (refused.state, refused.reason) == ("refused", "Cena za wysoka")
    assert signer_states(status)["ceo@acme.example"] == "waiting"  # OBSOLETE: never acted


def test_party_refusal_wins_over_a_lagging_process_status(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.reject(ref, CLIENT_EMAIL, "nie")
    fake.processes[ref]["status"] = "PROCESSING"  # Autenti's status may lag the party's (NOTES §7)
    assert client.get_status(ref).state == "refused"


def test_cancel_withdraws_and_nobody_can_sign(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    client.cancel(ref, "wrong price")
    status = client.get_status(ref)
    assert status.state == "cancelled" and status.provider_state == "WITHDRAWN"
    with pytest.raises(FakeAutentiError):
        fake.sign(ref, CLIENT_EMAIL)
    with pytest.raises(ProviderError) as info:
        client.cancel(ref)
    assert info.value.kind == "conflict" and "cannot be withdrawn" in info.value.detail


def test_remind_answers_the_party_selection_challenge(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    client.remind(ref)
    assert fake.reminders == [(ref, [f"PARTY-EMAIL:{CLIENT_EMAIL}"])]
    first, second = fake.requests_to("POST", r"/actions$")[-2:]
    assert len(first.headers["X-ASSERTION"].split(",")) == 1
    decoded = [json.loads(base64.b64decode(v)) for v in second.headers["X-ASSERTION"].split(",")]
    assert [d["classifiers"][0] for d in decoded] == [
        "CHALLENGE_CLASSIFIER-UNIQUE_TYPE:ACTION_SELECTION",
        "CHALLENGE_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_REMINDER_PARTY_SELECTION"]
    assert decoded[0]["attributes"]["selectedIds"] == ["EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_REMINDER_SENT"]


def test_remind_on_a_finished_process_is_a_conflict(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    client.cancel(ref)
    with pytest.raises(ProviderError) as info:
        client.remind(ref)
    assert info.value.kind == "conflict" and "WITHDRAWN" in info.value.detail
    assert fake.reminders == []


def test_download_before_completion_is_not_found(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    with pytest.raises(ProviderError) as info:
        client.download_signed(ref)
    assert info.value.kind == "not_found"
    assert client.download_evidence(ref) is None


def test_evidence_falls_back_to_the_content_archive(fake, pem):
    fake.produce_signature_card = False
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, "ceo@acme.example")
    evidence = client.download_evidence(ref)
    assert evidence.mimetype == "application/zip" and evidence.content.startswith(b"PK")
    fake.produce_content_archive = False
    ref2 = client.send(make_envelope(title="second")).provider_ref
    fake.sign(ref2, CLIENT_EMAIL)
    fake.sign(ref2, "ceo@acme.example")
    assert client.download_evidence(ref2) is None


def test_file_list_as_json_array_is_understood_too(fake, pem):
    fake.files_ndjson = False
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.sign(ref, CLIENT_EMAIL)
    fake.sign(ref, "ceo@acme.example")
    assert client.download_signed(ref).content.startswith(PDF)


def test_send_without_event_array_is_confirmed_by_reading_the_status(fake, pem):
    fake.send_response_events = False
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    assert fake.processes[ref]["status"] == "PROCESSING"


# ------------------------------------------------------------------ status details


def _ts(value):
    return autenti._parse_timestamp(value)


def test_provider_failure_is_error_with_autentis_message(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.fail(ref, "Signature provider unavailable")
    status = client.get_status(ref)
    assert (status.state, status.provider_state) == ("error", "FAILED")
    assert status.reason == "Signature provider unavailable"
    assert status.completed_at == _ts(fake.processes[ref]["modifiedAt"])


def test_a_failed_party_explains_the_failure_when_the_process_does_not(fake, pem):
    fake.failure_reason_key = None
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.fail(ref, "SMS code expired", email=CLIENT_EMAIL, status="ERROR")
    status = client.get_status(ref)
    assert (status.state, status.reason) == ("error", "SMS code expired")
    failed = next(s for s in status.signers if s.email == CLIENT_EMAIL)
    assert (failed.state, failed.reason) == ("waiting", "SMS code expired")  # FAILED is not a signature


def test_a_failure_without_any_message_names_autentis_status(fake, pem):
    fake.failure_reason_key = None
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.fail(ref)
    assert client.get_status(ref).reason == "Autenti reports the document process as FAILED"


def test_completed_at_is_the_last_signature_and_empty_while_open(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    assert client.get_status(ref).completed_at is None
    fake.sign(ref, CLIENT_EMAIL)
    assert client.get_status(ref).completed_at is None
    fake.sign(ref, "ceo@acme.example")
    status = client.get_status(ref)
    company = next(p for p in fake.processes[ref]["parties"] if p["_email"] == "ceo@acme.example")
    assert status.completed_at == _ts(company["events"][-1]["timestamp"])
    assert next(s for s in status.signers if s.email == CLIENT_EMAIL).changed_at is not None


def test_completed_at_of_a_refusal_is_the_refusal(fake, pem, monkeypatch):
    monkeypatch.setattr(autenti, "COMPLETED_AT_FALLBACK_KEY", None)  # prove it is not modifiedAt
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.reject(ref, CLIENT_EMAIL, "nie")
    rejection = fake.processes[ref]["parties"][0]["events"][-1]
    assert client.get_status(ref).completed_at == _ts(rejection["timestamp"])


def test_completed_at_of_a_withdrawal_is_the_last_change(fake, pem, monkeypatch):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    client.cancel(ref)
    fake.processes[ref]["modifiedAt"] = "2025-03-01T10:00:00+01:00"
    assert client.get_status(ref).completed_at.isoformat() == "2025-03-01T09:00:00"
    monkeypatch.setattr(autenti, "COMPLETED_AT_FALLBACK_KEY", None)
    assert client.get_status(ref).completed_at is None


# ------------------------------------------------------------------ nothing secret in messages


def test_callback_urls_lose_their_query_in_messages(fake, pem):
    client = make_client(fake, pem)
    for index in range(5):
        client.register_callback(f"https://other{index}.example.com/hook?token=s3cret{index}")
    with pytest.raises(ProviderError) as info:
        client.register_callback(WEBHOOK_URL)
    assert "other4.example.com/hook?…" in info.value.detail and "s3cret" not in info.value.detail
    with pytest.raises(ProviderError) as info:
        client.register_callback("ftp://odoo.example.com/hook?token=t0psecret")
    assert info.value.kind == "config" and "t0psecret" not in str(info.value)


def test_webhook_key_set_url_loses_its_query_in_messages(fake):
    fake.webhook_keys = []
    receiver = AutentiClient(base_url=fake.api_url, jwks_url=fake.jwks_url + "?sig=t0psecret",
                             timeout=(1, 0.5), sleep=lambda s: None)
    with pytest.raises(ProviderError) as info:
        receiver._webhook_key("any")
    assert info.value.kind == "protocol" and "t0psecret" not in str(info.value)


def test_failed_sends_put_no_token_or_secret_in_errors_or_logs(fake, pem, caplog):
    caplog.set_level("DEBUG")
    client = make_client(fake, pem)
    errors = []
    fake.fail_next(500, on=("POST", r"/files$"))
    fake.fail_next(503, on=("POST", r"/actions$"))
    fake.fail_next(503, on=("POST", r"/actions$"))
    fake.fail_next(503, times=3, on=("GET", r"/document-processes/[^/]+$"))
    for _attempt in range(2):
        with pytest.raises(ProviderError) as info:
            client.send(make_envelope())
        errors.append(info.value)
    fake.expire_tokens()
    fake.token_lifetime = 0
    with pytest.raises(ProviderError) as info:
        client.get_status("DOCUMENT_PROCESS:x")
    errors.append(info.value)
    secrets = [SECRET, pem.splitlines()[1], *fake.tokens]
    assertions = [r.form()["assertion"] for r in fake.requests_to("POST", r"/auth/token$")]
    texts = [caplog.text] + [f"{e} {e.body}" for e in errors]
    for text in texts:
        for secret in secrets + assertions:
            assert secret not in text


# ------------------------------------------------------------------ validation before any call


@pytest.mark.parametrize("envelope, kind, words", [
    (make_envelope(signers=(make_envelope().signers[0],)), "rejected", "client"),
    (make_envelope(document=Document("x.docx", b"PK\x03\x04")), "rejected", "not a PDF"),
    (make_envelope(title="  "), "rejected", "title"),
    (make_envelope(signers=(Signer(key="a", name="A B", email=CLIENT_EMAIL),
                            Signer(key="b", name="C D", email=CLIENT_EMAIL.upper(), role="company",
                                   sequence=2))), "rejected", "twice"),
    (make_envelope(signers=(Signer(key="a", name="A B", email="not-an-email"),)), "rejected", "e-mail"),
    (make_envelope(signers=(Signer(key="a", name="A B", email=CLIENT_EMAIL),
                            Signer(key="b", name="C D", email="ceo@acme.example", role="company",
                                   sequence=2, organisation=Organisation("ACME")))), "config", "tax id"),
])
def test_send_validates_before_the_first_call(fake, pem, envelope, kind, words):
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem).send(envelope)
    assert info.value.kind == kind and words in info.value.detail
    assert fake.requests == []


@pytest.mark.parametrize("override, words", [
    ({"private_key_pem": ""}, "private key"),
    ({"private_key_pem": "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"}, "private key"),
    ({"acting_email": ""}, "e-mail"),
    ({"client_secret": ""}, "client secret"),
])
def test_incomplete_settings_are_config_errors(fake, pem, override, words):
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem, **override).send(make_envelope())
    assert info.value.kind == "config" and words in info.value.detail
    assert fake.requests == []


def test_unsupported_language_falls_back_to_english(fake, pem):
    make_client(fake, pem).send(make_envelope(language="fr"))
    assert fake.create_requests()[0]["processLanguage"] == "en"


def test_tax_id_country_comes_from_the_company_when_the_vat_has_no_prefix(fake, pem):
    account = MODES["central"]
    company = Signer(key="signer-2", name=account["name"], email=account["email"], role="company",
                     sequence=2, organisation=Organisation("ACME GmbH", "123456789", "DE"))
    client_signer = make_envelope().signers[1]
    make_client(fake, pem).send(make_envelope(signers=(client_signer, company)))
    ext = fake.create_requests()[0]["parties"][1]["party"]["relationships"][0]["party"]["extIds"][0]
    assert ext == {"identificationSpace": "TAXID-DE-NIP", "identifier": "123456789"}


# ------------------------------------------------------------------ failures after the process exists


def test_upload_failure_withdraws_the_draft_and_says_so(fake, pem):
    fake.fail_on("POST", r"/files$", 500, "storage down")
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem).send(make_envelope())
    (ref,) = fake.processes
    assert info.value.kind == "unavailable"
    assert ref in info.value.detail and "was withdrawn" in info.value.detail
    assert "storage down" in info.value.detail
    assert fake.processes[ref]["status"] == "WITHDRAWN"


def test_upload_failure_when_the_draft_cannot_be_withdrawn(fake, pem):
    fake.allow_withdraw_draft = False
    fake.fail_on("POST", r"/files$", 400, "file too large")
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem).send(make_envelope())
    (ref,) = fake.processes
    assert info.value.kind == "rejected"
    assert ref in info.value.detail and "could NOT be withdrawn" in info.value.detail
    assert "draft that was never sent" in info.value.detail
    assert fake.processes[ref]["status"] == "DRAFT"


def test_send_action_failure_withdraws(fake, pem):
    fake.fail_on("POST", r"/actions$", 503)
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem).send(make_envelope())
    (ref,) = fake.processes
    assert "DOCUMENT_SENT" in info.value.detail and "was withdrawn" in info.value.detail
    assert fake.processes[ref]["status"] == "WITHDRAWN"
    assert len(fake.requests_to("POST", r"/actions$")) == 2  # send (failed, not retried) + withdraw


# ------------------------------------------------------------------ outages and error mapping


def test_reads_are_retried_on_5xx(fake, pem, sleeps):
    client = make_client(fake, pem, sleeps=sleeps)
    ref = client.send(make_envelope()).provider_ref
    fake.fail_next(503, times=2)
    assert client.get_status(ref).state == "sent"
    assert len(sleeps) == 2
    fake.fail_next(502, times=3)
    with pytest.raises(ProviderError) as info:
        client.get_status(ref)
    assert info.value.kind == "unavailable" and info.value.transient


def test_create_is_retried_after_429_with_retry_after(fake, pem, sleeps):
    client = make_client(fake, pem, sleeps=sleeps)
    client.list_callbacks()  # token first, so the fault hits the create call
    fake.fail_next(429, body={"message": "slow down"}, headers={"Retry-After": "2"})
    client.send(make_envelope())
    assert sleeps == [2.0] and len(fake.create_requests()) == 2 and len(fake.processes) == 1


def test_create_500_is_not_retried_and_says_what_is_unknown(fake, pem):
    client = make_client(fake, pem)
    client.list_callbacks()
    fake.fail_next(500)
    with pytest.raises(ProviderError) as info:
        client.send(make_envelope())
    assert info.value.kind == "unavailable" and "unknown whether a draft was created" in info.value.detail
    assert len(fake.create_requests()) == 1


def test_create_timeout_is_not_resent(fake, pem):
    client = make_client(fake, pem)
    client.list_callbacks()
    fake.delay_next(1.0)
    with pytest.raises(ProviderError) as info:
        client.send(make_envelope())
    assert info.value.kind == "timeout"
    assert len(fake.requests_to("POST", r"/document-processes$")) == 1


def test_4xx_error_body_gives_a_readable_detail(fake, pem):
    client = make_client(fake, pem)
    client.list_callbacks()
    fake.fail_next(402, body={"message": "Document package limit reached", "code": "PACKAGE_LIMIT"})
    with pytest.raises(ProviderError) as info:
        client.send(make_envelope())
    assert info.value.kind == "rejected" and info.value.status_code == 402
    assert info.value.detail == "Document package limit reached [PACKAGE_LIMIT]"
    assert info.value.provider == "Autenti"


def test_unknown_process_is_not_found(fake, pem):
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem).get_status("DOCUMENT_PROCESS:nope")
    assert info.value.kind == "not_found"


def test_token_endpoint_outage_is_unavailable_not_auth(fake, pem):
    fake.fail_next(503, times=3)
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem).get_status("DOCUMENT_PROCESS:x")
    assert info.value.kind == "unavailable"


# ------------------------------------------------------------------ tokens


def test_token_is_cached_per_account_at_module_level(fake, pem):
    make_client(fake, pem).list_callbacks()
    make_client(fake, pem).list_callbacks()  # another instance, same account: reused
    assert len(fake.token_requests) == 1
    make_client(fake, pem, mode="individual").list_callbacks()  # another Autenti user: own token
    assert [c["email"] for c in fake.token_requests] == ["ceo@acme.example", "sales@acme.example"]
    assert fake.requests_to("POST", r"/auth/token$")[0].headers["Content-Type"].startswith(
        "application/x-www-form-urlencoded")


def test_token_close_to_expiry_is_not_reused(fake, pem):
    fake.token_lifetime = autenti.TOKEN_REFRESH_MARGIN - 1
    client = make_client(fake, pem)
    client.list_callbacks()
    client.list_callbacks()
    assert len(fake.token_requests) == 2


def test_401_refreshes_the_token_once_and_retries(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.expire_tokens()
    assert client.get_status(ref).state == "sent"
    assert len(fake.token_requests) == 2
    assert len(fake.requests_to("GET", r"/document-processes/[^/]+$")) == 2


def test_persistent_401_fails_clearly_after_one_refresh(fake, pem):
    fake.token_lifetime = 0
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem).get_status("DOCUMENT_PROCESS:x")
    assert info.value.kind == "auth" and info.value.status_code == 401
    assert "fresh access token" in info.value.detail
    assert len(fake.token_requests) == 2


@pytest.mark.parametrize("override, words", [
    ({"private_key_pem": keys.generate_private_key_pem()}, "Signature verification failed"),
    ({"kid": "another-kid"}, "unknown key id"),
    ({"client_secret": "wrong"}, "unknown client or wrong secret"),
])
def test_refused_assertion_is_an_auth_error(fake, pem, override, words):
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem, **override).list_callbacks()
    assert info.value.kind == "auth" and words in info.value.detail
    assert "ceo@acme.example" in info.value.detail


def test_acting_user_unknown_to_autenti_is_an_auth_error(fake, pem):
    fake.register_client(CLIENT_ID, SECRET, keys.public_jwk(pem, KID), organisation=ORG,
                         users=["ceo@acme.example"])
    make_client(fake, pem).list_callbacks()
    with pytest.raises(ProviderError) as info:
        make_client(fake, pem, mode="individual").list_callbacks()
    assert info.value.kind == "auth" and "not a user" in info.value.detail


# ------------------------------------------------------------------ callbacks registration


def test_register_callback_is_idempotent(fake, pem):
    client = make_client(fake, pem)
    first = client.register_callback(WEBHOOK_URL)
    second = client.register_callback(WEBHOOK_URL)
    assert first["id"] == second["id"]
    assert len(fake.requests_to("POST", r"/applications/callbacks$")) == 1
    assert [c["callbackParameters"]["callbackUrl"] for c in client.list_callbacks()] == [WEBHOOK_URL]
    client.delete_callback(first["id"])
    assert client.list_callbacks() == []


def test_register_callback_respects_the_limit_of_five(fake, pem):
    client = make_client(fake, pem)
    for index in range(5):
        client.register_callback(f"https://other{index}.example.com/hook")
    with pytest.raises(ProviderError) as info:
        client.register_callback(WEBHOOK_URL)
    assert info.value.kind == "conflict" and "at most 5" in info.value.detail
    assert len(fake.requests_to("POST", r"/applications/callbacks$")) == 5


# ------------------------------------------------------------------ webhooks


@pytest.fixture
def signed_event(fake, pem):
    client = make_client(fake, pem)
    client.register_callback(WEBHOOK_URL)
    ref = client.send(make_envelope()).provider_ref
    fake.flush_callbacks()
    (_url, body, headers), = fake.delivered
    return ref, body, {k.lower(): v for k, v in headers.items()}


def test_webhook_good_signature_is_accepted_and_parsed(fake, signed_event):
    ref, body, headers = signed_event
    receiver = webhook_client(fake)
    receiver.verify_webhook(headers, body, {})
    (note,) = receiver.parse_webhook(headers, body, {})
    event = json.loads(body)[0]
    assert note.dedup_key == "autenti:" + event["id"] and note.provider_ref == ref
    assert note.event_type == "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_SENT" and note.status is None
    assert note.occurred_at is not None and note.occurred_at.tzinfo is None
    # A duplicate delivery yields the same dedup key.
    assert receiver.parse_webhook(headers, body, {})[0].dedup_key == note.dedup_key


def _tamper(token, part, value):
    pieces = token.split(".")
    pieces[part] = value
    return ".".join(pieces)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("make_header", [
    lambda fake, body, good: None,
    lambda fake, body, good: "",
    lambda fake, body, good: "garbage",
    lambda fake, body, good: _tamper(good, 1, b64url(body)),  # attached payload, not detached
    lambda fake, body, good: _tamper(good, 0, "!!!"),
    lambda fake, body, good: _tamper(good, 2, b64url(b"\x00" * 256)),
    lambda fake, body, good: fake.sign_jws(body, header={"alg": "RS512"}),
    lambda fake, body, good: fake.sign_jws(body, header={"alg": "none"}),
    lambda fake, body, good: fake.sign_jws(body, kid="unknown-kid"),
    lambda fake, body, good: fake.sign_jws(body, pem=keys.generate_private_key_pem()),  # right kid, wrong key
    lambda fake, body, good: fake.sign_jws(body, header={"crit": ["exp"], "exp": 1}),
])
def test_webhook_bad_signatures_are_refused(fake, signed_event, make_header):
    _ref, body, headers = signed_event
    value = make_header(fake, body, headers["x-jws-signature"])
    tampered = {k: v for k, v in headers.items() if k != "x-jws-signature"}
    if value is not None:
        tampered["x-jws-signature"] = value
    with pytest.raises(WebhookAuthError):
        webhook_client(fake).verify_webhook(tampered, body, {})


def test_webhook_any_byte_change_is_refused(fake, signed_event):
    _ref, body, headers = signed_event
    receiver = webhook_client(fake)
    receiver.verify_webhook(headers, body, {})
    for changed in (body + b" ", body.replace(b"DOCUMENT_SENT", b"DOCUMENT_SEND"), body[:-1]):
        with pytest.raises(WebhookAuthError):
            receiver.verify_webhook(headers, changed, {})


def test_jwks_is_cached_and_refetched_once_on_key_rotation(fake, signed_event):
    _ref, body, headers = signed_event
    receiver = webhook_client(fake)
    for _i in range(3):
        receiver.verify_webhook(headers, body, {})
    assert len(fake.requests_to("GET", r"^/jwks$")) == 1
    fake.rotate_webhook_key()
    rotated = {"x-jws-signature": fake.sign_jws(body)}
    receiver.verify_webhook(rotated, body, {})  # unknown kid -> one refetch -> accepted
    assert len(fake.requests_to("GET", r"^/jwks$")) == 2
    with pytest.raises(WebhookAuthError):  # the old key is gone from the set now
        receiver.verify_webhook(headers, body, {})
    assert len(fake.requests_to("GET", r"^/jwks$")) == 2  # no refetch storm within the cooldown


def test_jwks_is_refetched_after_its_ttl(fake, signed_event, monkeypatch):
    _ref, body, headers = signed_event
    monkeypatch.setattr(autenti, "JWKS_TTL", -1)  # configuration constant: every use is stale
    receiver = webhook_client(fake)
    receiver.verify_webhook(headers, body, {})
    receiver.verify_webhook(headers, body, {})
    assert len(fake.requests_to("GET", r"^/jwks$")) == 2


def test_unreachable_jwks_is_a_provider_error_not_a_forgery(fake, signed_event):
    _ref, body, headers = signed_event
    fake.fail_on("GET", r"^/jwks$", 503, times=3)
    with pytest.raises(ProviderError) as info:
        webhook_client(fake).verify_webhook(headers, body, {})
    assert info.value.kind == "unavailable"


@pytest.mark.parametrize("body", [
    b"not json", b'"a string"', b"[1, 2]", b'[{"id": "e1", "eventType": "X"}]',
    b'[{"id": "", "eventType": "X", "object": {"id": "P"}}]', b"\xff\xfe",
])
def test_malformed_webhook_bodies(fake, body):
    from esign_connector.api.base import WebhookMalformed
    with pytest.raises(WebhookMalformed):
        webhook_client(fake).parse_webhook({}, body, {})


def test_webhook_with_several_events(fake):
    body = json.dumps([
        {"id": "e1", "eventType": "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_SENT",
         "object": {"id": "DOCUMENT_PROCESS:a"}, "timestamp": "2025-03-01T10:00:00+01:00"},
        {"id": "e2", "eventType": "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_PROCESS_COMPLETED",
         "object": {"id": "DOCUMENT_PROCESS:b"}, "timestamp": 1740823200000},
    ]).encode()
    notes = webhook_client(fake).parse_webhook({}, body, {})
    assert [(n.dedup_key, n.provider_ref) for n in notes] == [
        ("autenti:e1", "DOCUMENT_PROCESS:a"), ("autenti:e2", "DOCUMENT_PROCESS:b")]
    assert notes[0].occurred_at.isoformat() == "2025-03-01T09:00:00"
    assert notes[1].occurred_at.isoformat() == "2025-03-01T10:00:00"


def test_reads_are_retried_after_a_timeout(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.delay_next(1.0)
    assert client.get_status(ref).state == "sent"
    assert len(fake.requests_to("GET", r"/document-processes/[^/]+$")) == 2


def test_token_body_encoding_can_be_switched_to_json(fake, pem, monkeypatch):
    monkeypatch.setattr(autenti, "TOKEN_BODY_ENCODING", "json")  # the [GUESS] constant of NOTES §2b
    make_client(fake, pem).list_callbacks()
    assert fake.requests_to("POST", r"/auth/token$")[0].headers["Content-Type"] == "application/json"
