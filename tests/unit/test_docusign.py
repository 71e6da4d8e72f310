"""DocuSign client against the strict fake over real HTTP: flows, auth, errors, retries."""
import datetime
import json
import time
import urllib.parse

import jwt
import pytest
import requests
from conftest import SHARED_PROVIDERS

from esign_connector.api import docusign as ds
from esign_connector.api import keys
from esign_connector.api.base import Document, Envelope, Organisation, ProviderError, Signer
from esign_connector.tests.fakes.docusign import FakeActionError, FakeDocuSign, spec_path_from

SPEC = spec_path_from(SHARED_PROVIDERS)
INTEGRATION_KEY = "6f1d2c3b-0000-4000-8000-00000000abcd"
CALLBACK = "https://odoo.example.com/esign/webhook/docusign"
SECRET = "connect-secret-1"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n"


@pytest.fixture(scope="module")
def private_pem():
    return keys.generate_private_key_pem()


@pytest.fixture(autouse=True)
def _clear_caches():
    ds.clear_caches()
    yield
    ds.clear_caches()


@pytest.fixture(scope="module")
def fake_server():
    # Schema validation is on whenever the spec is present; the tests that need it skip without it.
    with FakeDocuSign(spec_path=SPEC) as server:
        yield server


@pytest.fixture
def fake(fake_server, private_pem):
    server = fake_server
    server.reset()
    server.register_integration(INTEGRATION_KEY, keys.public_pem(private_pem))
    server.account_id = server.add_account(name="ACME sp. z o.o.")
    server.salesperson = server.add_user(email="sales@acme.example", name="Sam Sales",
                                         accounts=[server.account_id])
    server.representative = server.add_user(email="ceo@acme.example", name="Rita Rep",
                                            accounts=[server.account_id])
    server.connect_secrets = [SECRET]
    server.delivered = []

    def sink(url, body, headers):
        server.delivered.append((url, body, {k.lower(): v for k, v in headers.items()}))
        return 200

    server.callback_sink = sink
    yield server


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_client(fake, private_pem, sleeps):
    def factory(**kwargs):
        options = dict(integration_key=INTEGRATION_KEY, user_id=fake.salesperson,
                       private_key_pem=private_pem, auth_host=fake.base_url, hmac_secrets=[SECRET],
                       redirect_uri="https://odoo.example.com/docusign/consent",
                       timeout=(1, 0.5), max_retries=2, sleep=sleeps.append)
        options.update(kwargs)
        return ds.DocuSignClient(**options)
    return factory


def make_envelope(company_email="sales@acme.example", company_name="Sam Sales", organisation=None,
                  **kwargs):
    signers = [
        Signer(key="signer-2", name=company_name, email=company_email, role="company", sequence=20,
               organisation=organisation, representation_basis="board member" if organisation else ""),
        Signer(key="signer-1", name="Carla Client", email="carla@client.example", role="client", sequence=10),
    ]
    options = dict(reference="SO/2026/0001", title="Contract SO/2026/0001",
                   document=Document("contract.pdf", PDF), signers=signers,
                   message="Please sign the contract.", callback_url=CALLBACK)
    options.update(kwargs)
    return Envelope(**options)


def notifications(client, fake):
    """Deliver queued Connect messages and run them through verify + parse, as the controller does."""
    fake.flush_callbacks()
    result = []
    for _url, body, headers in fake.delivered:
        client.verify_webhook(headers, body, {})
        result.extend(client.parse_webhook(headers, body, {}))
    fake.delivered.clear()
    return result


def warm_up(client):
    """Token and account resolved first, so an injected fault hits the call under test."""
    client._rest_transport()
    client._token()


def by_key(status):
    return {s.key: s.state for s in status.signers}


# --------------------------------------------------------------------------- the whole flow


@pytest.mark.parametrize("mode", ["individual", "central"])
def test_full_flow(fake, make_client, mode):
    if mode == "individual":
        # The salesperson sends as themself; account and REST base found through /oauth/userinfo.
        user_id, company_email, company_name, organisation = fake.salesperson, "sales@acme.example", \
            "Sam Sales", None
        client = make_client(user_id=user_id)
    else:
        # The representative sends for the company; account id and base URL configured (no userinfo).
        user_id, company_email, company_name = fake.representative, "ceo@acme.example", "Rita Rep"
        organisation = Organisation("ACME sp. z o.o.", "PL1234567890", "PL")
        client = make_client(user_id=user_id, account_id=fake.account_id, base_url=fake.rest_url)

    result = client.send(make_envelope(company_email, company_name, organisation))
    envelope_id = result.provider_ref
    stored = fake.envelopes[envelope_id]
    assert stored["sender_user_id"] == user_id
    assert [(s["email"], s["routingOrder"]) for s in stored["signers"]] == [
        ("carla@client.example", 1), (company_email, 2)]
    assert stored["customFields"]["textCustomFields"][0] == {
        "name": "esign_reference", "value": "SO/2026/0001", "show": "false", "required": "false"}
    assert stored["documents"][0][2] == PDF
    assert {s.key: s.state for s in result.signers} == {"signer-1": "pending", "signer-2": "waiting"}
    body = fake.requests_to("POST", r"/envelopes$")[0].json()
    assert body["status"] == "sent"
    event = body["eventNotification"]
    assert event["url"] == CALLBACK and event["includeHMAC"] == "true"
    assert event["requireAcknowledgment"] == "true"
    if organisation:
        assert "ACME sp. z o.o." in body["recipients"]["signers"][1]["note"]
    assert bool(fake.requests_to("GET", r"/oauth/userinfo$")) is (mode == "individual")

    status = client.get_status(envelope_id)
    assert (status.state, by_key(status)) == ("sent", {"signer-1": "pending", "signer-2": "waiting"})

    # The company cannot sign before the client (routing order).
    with pytest.raises(FakeActionError):
        fake.sign(envelope_id, company_email)

    fake.open(envelope_id, "carla@client.example")
    fake.sign(envelope_id, "carla@client.example")
    status = client.get_status(envelope_id)
    assert (status.state, by_key(status)) == ("sent", {"signer-1": "signed", "signer-2": "pending"})

    fake.sign(envelope_id, company_email)
    status = client.get_status(envelope_id)
    assert (status.state, status.provider_state) == ("signed", "completed")
    assert status.reference == "SO/2026/0001"
    assert status.completed_at == ds.parse_datetime(stored["completedDateTime"])
    assert by_key(status) == {"signer-1": "signed", "signer-2": "signed"}
    assert all(s.changed_at for s in status.signers)

    signed = client.download_signed(envelope_id)
    assert signed.content.startswith(b"%PDF") and signed.mimetype == "application/pdf"
    assert b"status=completed" in signed.content
    evidence = client.download_evidence(envelope_id)
    assert evidence.content.startswith(b"%PDF") and b"Certificate of Completion" in evidence.content
    assert evidence.filename.endswith(".pdf")

    events = notifications(client, fake)
    assert [n.event_type for n in events] == [
        "envelope-sent", "recipient-completed", "recipient-completed", "envelope-completed"]
    assert {n.provider_ref for n in events} == {envelope_id}
    assert len({n.dedup_key for n in events}) == 4
    after_client = events[1].status
    assert after_client.state == "sent" and by_key(after_client) == {"signer-1": "signed", "signer-2": "pending"}
    final = events[-1]
    assert final.status.state == "signed" and by_key(final.status) == {"signer-1": "signed", "signer-2": "signed"}
    assert final.reference == final.status.reference == "SO/2026/0001"
    assert all(n.reference == "SO/2026/0001" for n in events)
    assert final.status.completed_at == ds.parse_datetime(fake.envelopes[envelope_id]["completedDateTime"])
    assert events[1].status.completed_at is None  # still in progress
    assert final.occurred_at is not None


def test_every_request_body_is_valid_against_the_swagger(fake, make_client):
    if SPEC is None:
        pytest.skip("DocuSign swagger not found under shared/providers/docusign; spec validation skipped")
    client = make_client()
    envelope_id = client.send(make_envelope(expires_at=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=14))
                              ).provider_ref
    client.remind(envelope_id)
    client.cancel(envelope_id, "Customer changed their mind")
    bodies = [r for r in fake.requests if r.method in ("POST", "PUT") and "/restapi/" in r.path]
    assert len(bodies) == 3
    assert [d for d, _p in fake.validated] == ["envelopeDefinition", "envelope", "envelope"]
    sent = fake.requests_to("POST", r"/envelopes$")[0].json()
    assert sent["notification"]["expirations"] == {"expireEnabled": "true", "expireAfter": "14",
                                                   "expireWarn": "0"}


# --------------------------------------------------------------------------- refusal, void, resend


def test_refusal(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    fake.decline(envelope_id, "carla@client.example", "Price is wrong")
    status = client.get_status(envelope_id)
    assert status.state == "refused" and status.reason == "Price is wrong"
    assert by_key(status) == {"signer-1": "refused", "signer-2": "waiting"}
    with pytest.raises(FakeActionError):
        fake.sign(envelope_id, "sales@acme.example")
    events = notifications(client, fake)
    assert [n.event_type for n in events][-2:] == ["recipient-declined", "envelope-declined"]
    assert events[-1].status.state == "refused"
    # A declined envelope cannot be voided any more.
    with pytest.raises(ProviderError) as info:
        client.cancel(envelope_id, "too late")
    assert info.value.kind == "conflict" and "declined" in info.value.detail


def test_cancel_voids_and_repeating_it_is_harmless(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    client.cancel(envelope_id, "Offer withdrawn")
    request = fake.requests_to("PUT", envelope_id + "$")[-1]
    assert request.json() == {"status": "voided", "voidedReason": "Offer withdrawn"}
    status = client.get_status(envelope_id)
    assert (status.state, status.reason) == ("cancelled", "Offer withdrawn")
    client.cancel(envelope_id, "again")  # already voided: success, not an error
    assert fake.envelopes[envelope_id]["voidedReason"] == "Offer withdrawn"
    events = notifications(client, fake)
    assert events[-1].event_type == "envelope-voided" and events[-1].status.state == "cancelled"
    with pytest.raises(FakeActionError):
        fake.sign(envelope_id, "carla@client.example")


def test_cancel_without_reason_sends_the_default_reason(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    client.cancel(envelope_id)
    assert fake.envelopes[envelope_id]["voidedReason"] == ds.DEFAULT_VOID_REASON


def test_expired_envelope_maps_to_expired(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    fake.expire(envelope_id)
    assert client.get_status(envelope_id).state == "expired"


def test_remind_resends(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    client.remind(envelope_id)
    request = fake.requests_to("PUT", envelope_id + "$")[-1]
    assert request.arg("resend_envelope") == "true" and request.json() == {}
    assert fake.envelopes[envelope_id]["resends"] == 1
    fake.sign(envelope_id, "carla@client.example")
    fake.sign(envelope_id, "sales@acme.example")
    with pytest.raises(ProviderError) as info:
        client.remind(envelope_id)
    assert info.value.kind == "conflict" and "ENVELOPE_INVALID_STATUS" in info.value.detail


def test_lost_callback_then_get_status(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    notifications(client, fake)
    fake.sign(envelope_id, "carla@client.example")
    fake.drop_callbacks = 1
    assert fake.flush_callbacks() == [None]
    assert fake.delivered == []
    status = client.get_status(envelope_id)
    assert by_key(status) == {"signer-1": "signed", "signer-2": "pending"}


# --------------------------------------------------------------------------- input checks


def test_client_refuses_unusable_envelopes_before_calling(fake, make_client):
    client = make_client()
    bad_email = make_envelope(company_email="not-an-email")
    no_doc = make_envelope(document=Document("x.pdf", b""))
    no_callback = make_envelope(callback_url="")
    for envelope, kind in ((bad_email, "rejected"), (no_doc, "rejected"), (no_callback, "config")):
        with pytest.raises(ProviderError) as info:
            client.send(envelope)
        assert info.value.kind == kind
    with pytest.raises(ProviderError) as info:
        make_client(hmac_secrets=[]).send(make_envelope())
    assert info.value.kind == "config" and "HMAC" in info.value.detail
    assert not fake.requests_to("POST", r"/envelopes$")


def test_missing_settings_are_a_config_error(make_client):
    with pytest.raises(ProviderError) as info:
        make_client(user_id="", private_key_pem="").get_status("x")
    assert info.value.kind == "config"
    assert "user id" in info.value.detail and "RSA private key" in info.value.detail


# --------------------------------------------------------------------------- errors and outages


def test_unknown_envelope_gives_readable_not_found(make_client):
    with pytest.raises(ProviderError) as info:
        make_client().get_status("00000000-0000-0000-0000-000000000000")
    error = info.value
    assert error.kind == "not_found" and error.status_code == 400
    assert error.detail == ("The envelope specified either does not exist or you have no access to it. "
                            "[ENVELOPE_DOES_NOT_EXIST]")


def test_5xx_on_read_is_retried(fake, make_client, sleeps):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    fake.fail_next(503, {"errorCode": "SERVICE_UNAVAILABLE", "message": "maintenance"})
    assert client.get_status(envelope_id).state == "sent"
    assert len(fake.requests_to("GET", envelope_id + "$")) == 2
    assert sleeps


def test_5xx_on_create_is_not_retried(fake, make_client):
    client = make_client()
    warm_up(client)
    fake.fail_next(500, {"errorCode": "UNSPECIFIED_ERROR", "message": "boom"})
    with pytest.raises(ProviderError) as info:
        client.send(make_envelope())
    assert info.value.kind == "unavailable" and "unknown whether" in info.value.detail
    assert "boom [UNSPECIFIED_ERROR]" in info.value.detail
    assert len(fake.requests_to("POST", r"/envelopes$")) == 1


def test_timeout_on_create_is_not_resent(fake, make_client):
    client = make_client()
    warm_up(client)
    fake.delay_next(1.0)
    with pytest.raises(ProviderError) as info:
        client.send(make_envelope())
    assert info.value.kind == "timeout" and info.value.transient
    time.sleep(0.7)  # let the fake finish the slow request
    assert len(fake.requests_to("POST", r"/envelopes$")) == 1
    assert len(fake.envelopes) == 1  # DocuSign did create it: the caller must check, not resend


def test_dropped_connection_on_read_is_retried(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    fake.drop_next()
    assert client.get_status(envelope_id).state == "sent"


def test_429_on_create_is_retried_after_the_rate_limit_reset(fake, make_client, sleeps):
    client = make_client()
    warm_up(client)
    reset = str(int(time.time()) + 20)
    fake.fail_next(429, {"errorCode": "HOURLY_APIINVOCATION_LIMIT_EXCEEDED",
                         "message": "The maximum number of hourly API invocations has been exceeded"},
                   headers={"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": "0"})
    envelope_id = client.send(make_envelope()).provider_ref
    assert envelope_id in fake.envelopes and len(fake.envelopes) == 1
    assert len(fake.requests_to("POST", r"/envelopes$")) == 2
    assert 15 <= sleeps[-1] <= 21


def test_hourly_limit_exhausted_is_rate_limited_with_reset(fake, make_client, sleeps):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    fake.rate_limit = fake.rate_limit_used  # no calls left this hour
    fake.rate_limit_reset_in = 1200
    with pytest.raises(ProviderError) as info:
        client.get_status(envelope_id)
    error = info.value
    assert error.kind == "rate_limited" and error.status_code == 429
    assert "hourly API invocations" in error.detail and "HOURLY_APIINVOCATION_LIMIT_EXCEEDED" in error.detail
    assert 1100 < error.retry_after <= 1200
    assert len(fake.requests_to("GET", envelope_id + "$")) == 3  # two retries, each capped by max_wait
    assert sleeps[-2:] == [30.0, 30.0]


def test_rate_limit_headers_are_served(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    response = client._api("GET", client._envelope_path(envelope_id))
    assert response.headers["X-RateLimit-Limit"] == "3000"
    assert int(response.headers["X-RateLimit-Remaining"]) == 3000 - fake.rate_limit_used
    assert {"X-RateLimit-Reset", "X-BurstLimit-Limit", "X-BurstLimit-Remaining"} <= set(response.headers)


# --------------------------------------------------------------------------- JWT grant and tokens


def test_assertion_claims(make_client, fake, private_pem):
    client = make_client()
    now = int(time.time())
    claims = jwt.decode(client.build_assertion(now=now), keys.public_pem(private_pem),
                        algorithms=["RS256"], audience=fake.host)
    assert claims == {"iss": INTEGRATION_KEY, "sub": fake.salesperson, "aud": fake.host,
                      "iat": now, "exp": now + 3600, "scope": "signature impersonation"}
    assert jwt.get_unverified_header(client.build_assertion())["alg"] == "RS256"


def test_default_hosts_and_audience():
    demo = ds.DocuSignClient("ik", "uid", "pem")
    assert demo.auth_url == "https://account-d.docusign.com" and demo.audience == "account-d.docusign.com"
    prod = ds.DocuSignClient("ik", "uid", "pem", auth_host=ds.PRODUCTION_AUTH_HOST)
    assert prod.audience == "account.docusign.com"


def test_token_is_cached_per_user_and_shared_between_instances(fake, make_client):
    first = make_client()
    envelope_id = first.send(make_envelope()).provider_ref
    make_client().get_status(envelope_id)
    assert fake.token_requests == 1
    make_client(user_id=fake.representative).get_status(envelope_id)
    assert fake.token_requests == 2


def test_token_close_to_expiry_is_renewed(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    token = ds._TOKENS.get(client._token_key(), time.time())
    assert token
    ds._TOKENS.put(client._token_key(), token, time.time() + ds.TOKEN_REFRESH_MARGIN - 5)
    client.get_status(envelope_id)  # two GETs, one new token
    assert fake.token_requests == 2
    assert ds._TOKENS.get(client._token_key(), time.time()) != token


def test_401_refreshes_the_token_once(fake, make_client):
    client = make_client(account_id=fake.account_id, base_url=fake.rest_url)
    envelope_id = client.send(make_envelope()).provider_ref
    fake.expire_tokens()  # revoked at DocuSign, still cached here
    assert client.get_status(envelope_id).state == "sent"
    assert fake.token_requests == 2


def test_persistent_401_is_an_auth_error_after_one_refresh(fake, make_client):
    client = make_client(account_id=fake.account_id, base_url=fake.rest_url)
    fake.token_lifetime = -1  # every token is dead on arrival
    with pytest.raises(ProviderError) as info:
        client.get_status("whatever")
    assert info.value.kind == "auth" and info.value.status_code == 401
    assert "AUTHORIZATION_INVALID_TOKEN" in info.value.detail
    assert fake.token_requests == 2


def test_consent_required_gives_the_consent_url(fake, make_client):
    fake.users[fake.salesperson]["consented"] = False
    client = make_client()
    with pytest.raises(ProviderError) as info:
        client.get_status("x")
    error = info.value
    assert error.kind == "auth" and "consent_required" in error.detail
    assert client.consent_url() in error.detail
    fake.grant_consent(fake.salesperson)
    with pytest.raises(ProviderError) as info:
        client.get_status("00000000-0000-0000-0000-000000000000")
    assert info.value.kind == "not_found"


def test_consent_url_format():
    client = ds.DocuSignClient(INTEGRATION_KEY, "uid", "pem")
    url = client.consent_url("https://odoo.example.com/docusign/consent")
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "account-d.docusign.com", "/oauth/auth")
    assert "scope=signature%20impersonation" in parts.query
    assert urllib.parse.parse_qs(parts.query) == {
        "response_type": ["code"], "scope": ["signature impersonation"], "client_id": [INTEGRATION_KEY],
        "redirect_uri": ["https://odoo.example.com/docusign/consent"]}


def test_wrong_key_is_refused_with_a_readable_message(make_client):
    other_pem = keys.generate_private_key_pem()
    with pytest.raises(ProviderError) as info:
        make_client(private_key_pem=other_pem).get_status("x")
    assert info.value.kind == "auth" and "no_valid_keys_or_signatures" in info.value.detail


def test_wrong_audience_and_unknown_integration_are_refused(make_client):
    with pytest.raises(ProviderError) as info:
        make_client(audience="account.docusign.com").get_status("x")
    assert info.value.kind == "auth" and "audience" in info.value.detail
    with pytest.raises(ProviderError) as info:
        make_client(integration_key="unknown").get_status("x")
    assert "issuer_not_found" in info.value.detail


def _token_answer(fake, private_pem, **overrides):
    now = int(time.time())
    claims = {"iss": INTEGRATION_KEY, "sub": fake.salesperson, "aud": fake.host, "iat": now,
              "exp": now + 3600, "scope": "signature impersonation"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    assertion = jwt.encode(claims, private_pem, algorithm="RS256")
    return requests.post(fake.base_url + "/oauth/token", timeout=2, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})


def test_fake_token_endpoint_is_strict(fake, private_pem):
    now = int(time.time())
    assert _token_answer(fake, private_pem).status_code == 200
    expired = _token_answer(fake, private_pem, iat=now - 7200, exp=now - 3600)
    assert (expired.status_code, expired.json()["error_description"]) == (400, "expired")
    assert _token_answer(fake, private_pem, scope="signature").json()["error"] == "invalid_scope"
    assert _token_answer(fake, private_pem, scope=None).json()["error"] == "invalid_scope"
    assert _token_answer(fake, private_pem, aud="https://" + fake.host).json()["error"] == "invalid_grant"
    too_long = _token_answer(fake, private_pem, exp=now + 7200)
    assert too_long.json()["error_description"] == "assertion lifetime over one hour"
    assert _token_answer(fake, private_pem, sub="nobody").json()["error_description"] == "user_not_found"


# --------------------------------------------------------------------------- status table


def test_status_table():
    assert ds.map_envelope_state("completed") == "signed"
    assert ds.map_envelope_state("signed") == "sent"  # transient, not final yet
    assert ds.map_envelope_state("declined") == "refused"
    assert ds.map_envelope_state("voided", "Offer withdrawn") == "cancelled"
    assert ds.map_envelope_state("voided", "Envelope has expired.") == "expired"
    assert ds.map_envelope_state("created") == "draft"
    assert ds.map_envelope_state("something-new") == "sent"
    assert ds.map_recipient_state("created") == "waiting"
    assert ds.map_recipient_state("delivered") == "pending"
    assert ds.map_recipient_state("completed") == "signed"
    assert ds.map_recipient_state("declined") == "refused"
    assert ds.parse_datetime("2026-11-23T08:42:00.1234567Z") == datetime.datetime(2026, 11, 23, 8, 42, 0, 123456)


@pytest.mark.parametrize("finish, state, reason, field", [
    ("decline", "refused", "Price is wrong", "declinedDateTime"),
    ("void", "cancelled", "Offer withdrawn", "voidedDateTime"),
    ("expire", "expired", "Envelope has expired.", "voidedDateTime"),
    ("delete", "cancelled", ds.DELETED_REASON, "deletedDateTime"),
])
def test_final_states_carry_docusigns_date_and_message(fake, make_client, finish, state, reason, field):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    assert client.get_status(envelope_id).completed_at is None
    {"decline": lambda: fake.decline(envelope_id, "carla@client.example", "Price is wrong"),
     "void": lambda: client.cancel(envelope_id, "Offer withdrawn"),
     "expire": lambda: fake.expire(envelope_id),
     "delete": lambda: fake.delete(envelope_id)}[finish]()
    stored = fake.envelopes[envelope_id]
    status = client.get_status(envelope_id)
    assert (status.state, status.reason) == (state, reason)
    assert status.completed_at == ds.parse_datetime(stored[field]) is not None
    if finish != "delete":  # deleting sends no Connect message
        final = notifications(client, fake)[-1]
        assert (final.status.state, final.status.completed_at) == (state, status.completed_at)


def test_no_docusign_state_means_a_provider_failure():
    """DocuSign's envelope states are people's decisions or expiry: none becomes our "error"."""
    assert "error" not in set(ds.STATUS_MAP["envelope"].values())
    assert ds.map_envelope_state("deleted") == "cancelled" and ds.map_envelope_state("timedout") == "expired"
    completed = {"status": "completed", "completedDateTime": "2026-11-23T08:42:00.0000000Z"}
    assert ds.completed_at(completed, "signed") == datetime.datetime(2026, 11, 23, 8, 42)
    assert ds.completed_at({"status": "sent", "statusChangedDateTime": "2026-11-23T08:42:00Z"}, "sent") is None
    fallback = {"status": "timedout", "statusChangedDateTime": "2026-11-24T00:00:00Z"}
    assert ds.completed_at(fallback, "expired") == datetime.datetime(2026, 11, 24)


def test_bounced_signer_stays_pending_with_docusigns_reason():
    [signer] = ds.signer_statuses({"signers": [
        {"recipientId": "1", "status": "autoresponded", "email": "carla@client.example"}]})
    assert (signer.state, signer.reason) == ("pending", ds.AUTORESPONDED_REASON)


def test_error_detail_shapes():
    class Response:
        def __init__(self, data):
            self._data, self.text, self.reason = data, json.dumps(data), "Bad Request"

        def json(self):
            return self._data

    assert ds.error_detail(Response({"errorCode": "X", "message": "m"})) == "m [X]"
    assert ds.error_detail(Response({"error": "consent_required"})) == \
        "consent_required: the user has not granted consent to the integration"


def test_account_from_userinfo_is_chosen_by_id_and_cached(fake, make_client):
    second = fake.add_account(name="ACME second")
    fake.users[fake.salesperson]["accounts"].append(second)
    client = make_client(account_id=second)
    envelope_id = client.send(make_envelope()).provider_ref
    assert fake.envelopes[envelope_id]["accountId"] == second
    make_client(account_id=second).get_status(envelope_id)
    assert len(fake.requests_to("GET", r"/oauth/userinfo$")) == 1  # cached per user and account
    with pytest.raises(ProviderError) as info:
        make_client(account_id="not-mine").get_status(envelope_id)
    assert info.value.kind == "config" and "ACME second" in info.value.detail
