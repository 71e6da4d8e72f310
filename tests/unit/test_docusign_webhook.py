"""DocuSign Connect: HMAC verification, parsing, de-duplication; and the fake's request validation."""
import base64
import hashlib
import hmac
import json

import pytest
import requests
from conftest import SHARED_PROVIDERS

from esign_connector.api import docusign as ds
from esign_connector.api import keys
from esign_connector.api.base import Document, Envelope, Signer, WebhookAuthError, WebhookMalformed, body_digest
from esign_connector.tests.fakes.docusign import FakeDocuSign, spec_path_from

SPEC = spec_path_from(SHARED_PROVIDERS)
SECRET = "connect-secret-1"
ENVELOPE_ID = "93be49ab-0000-4000-8000-000000000001"


def client(secrets=(SECRET,)):
    return ds.DocuSignClient("ik", "uid", "pem", hmac_secrets=list(secrets))


def connect_body(event="recipient-completed", generated="2026-11-23T08:42:00.1234567Z", summary=True,
                 **data):
    message = {"event": event, "apiVersion": "v2.1", "uri": f"/restapi/v2.1/accounts/a/envelopes/{ENVELOPE_ID}",
               "retryCount": 0, "configurationId": 1001,
               "data": {"accountId": "a", "userId": "u", "envelopeId": ENVELOPE_ID, "recipientId": "1", **data}}
    if generated:
        message["generatedDateTime"] = generated
    if summary:
        message["data"]["envelopeSummary"] = {
            "envelopeId": ENVELOPE_ID, "status": "sent",
            "customFields": {"textCustomFields": [{"name": "esign_reference", "value": "SO/1"}]},
            "recipients": {"currentRoutingOrder": "2", "signers": [
                {"recipientId": "1", "routingOrder": "1", "email": "c@x.example", "status": "completed",
                 "signedDateTime": "2026-11-23T08:41:59.0000000Z", "customFields": ["esign_key=signer-1"]},
                {"recipientId": "2", "routingOrder": "2", "email": "s@y.example", "status": "sent",
                 "customFields": ["esign_key=signer-2"]}]}}
    return json.dumps(message, indent=2).encode()


def sign(body, secret=SECRET):
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# --------------------------------------------------------------------------- HMAC


def test_good_signature_is_accepted():
    body = connect_body()
    client().verify_webhook({"x-docusign-signature-1": sign(body)}, body, {})


def test_any_matching_header_or_secret_is_enough():
    body = connect_body()
    headers = {"x-docusign-signature-1": sign(body, "old-secret"), "x-docusign-signature-2": sign(body)}
    client().verify_webhook(headers, body, {})  # the account rotated: our secret is key 2
    client(["other", SECRET]).verify_webhook({"x-docusign-signature-1": sign(body)}, body, {})


def test_wrong_missing_or_changed_signature_is_refused():
    body = connect_body()
    cases = [
        {"x-docusign-signature-1": sign(body, "wrong-secret")},
        {},
        {"x-docusign-signature-1": ""},
        {"x-authorization-digest": "HMACSHA256"},
    ]
    for headers in cases:
        with pytest.raises(WebhookAuthError):
            client().verify_webhook(headers, body, {})
    changed = body.replace(b'"completed"', b'"declined"', 1)
    with pytest.raises(WebhookAuthError):
        client().verify_webhook({"x-docusign-signature-1": sign(body)}, changed, {})
    # Re-serialised JSON (whitespace differs) is not the signed body either.
    compact = json.dumps(json.loads(body)).encode()
    with pytest.raises(WebhookAuthError):
        client().verify_webhook({"x-docusign-signature-1": sign(body)}, compact, {})


def test_no_configured_secret_refuses_everything():
    body = connect_body()
    with pytest.raises(WebhookAuthError) as info:
        client(secrets=()).verify_webhook({"x-docusign-signature-1": sign(body)}, body, {})
    assert info.value.http_status == 403


# --------------------------------------------------------------------------- parsing


def test_parse_recipient_event_with_summary():
    [note] = client().parse_webhook({}, connect_body(), {})
    assert note.event_type == "recipient-completed" and note.provider_ref == ENVELOPE_ID
    assert note.dedup_key == f"docusign:{ENVELOPE_ID}:recipient-completed:1:2026-11-23T08:42:00.1234567Z"
    assert note.status.state == "sent"
    assert {s.key: s.state for s in note.status.signers} == {"signer-1": "signed", "signer-2": "pending"}
    assert note.hints == {"recipient_id": "1"}
    assert note.reference == note.status.reference == "SO/1"
    assert note.status.completed_at is None
    assert note.occurred_at.isoformat() == "2026-11-23T08:42:00.123456"


def test_retried_message_has_the_same_dedup_key():
    first = json.loads(connect_body())
    retry = dict(first, retryCount=3)
    one = client().parse_webhook({}, json.dumps(first).encode(), {})[0]
    two = client().parse_webhook({}, json.dumps(retry).encode(), {})[0]
    assert one.dedup_key == two.dedup_key


def test_without_generated_time_the_body_digest_is_the_key_and_without_summary_no_status():
    body = connect_body(event="envelope-sent", generated=None, summary=False)
    [note] = client().parse_webhook({}, body, {})
    assert note.dedup_key == body_digest(body)
    assert note.status is None


def test_malformed_messages():
    bad = [b"<DocuSignEnvelopeInformation/>", b"[]", b'{"event": "envelope-sent"}',
           b'{"event": "envelope-sent", "data": {}}', b'{"data": {"envelopeId": "x"}}', b"\xff\xfe"]
    for body in bad:
        with pytest.raises(WebhookMalformed):
            client().parse_webhook({}, body, {})


# --------------------------------------------------------------------------- fake -> client, end to end


@pytest.fixture(scope="module")
def fake_server():
    with FakeDocuSign(spec_path=SPEC) as server:
        server.pem = keys.generate_private_key_pem()
        yield server


@pytest.fixture
def fake(fake_server):
    server = fake_server
    server.reset()
    server.register_integration("ik", keys.public_pem(server.pem))
    server.account = server.add_account()
    server.user = server.add_user(email="sales@acme.example", accounts=[server.account])
    server.connect_secrets = ["old-secret", SECRET]
    server.got = []
    server.callback_sink = lambda url, body, headers: server.got.append(
        (body, {k.lower(): v for k, v in headers.items()})) or 200
    ds.clear_caches()
    yield server
    ds.clear_caches()


def fake_client(fake, **kwargs):
    options = dict(integration_key="ik", user_id=fake.user, private_key_pem=fake.pem, auth_host=fake.base_url,
                   hmac_secrets=[SECRET], timeout=(1, 0.5), max_retries=1, sleep=lambda s: None)
    options.update(kwargs)
    return ds.DocuSignClient(**options)


def envelope():
    return Envelope("SO/9", "Contract SO/9", Document("c.pdf", b"%PDF-1.4 x"), [
        Signer("signer-1", "Carla Client", "carla@client.example", "client", 1),
        Signer("signer-2", "Sam Sales", "sales@acme.example", "company", 2)],
        callback_url="https://odoo.example.com/esign/webhook/docusign")


def test_fake_messages_verify_and_republished_ones_deduplicate(fake):
    c = fake_client(fake)
    envelope_id = c.send(envelope()).provider_ref
    fake.sign(envelope_id, "carla@client.example")
    fake.republish()  # Connect retry of the last message
    fake.flush_callbacks()
    notes = []
    for body, headers in fake.got:
        assert headers["x-authorization-digest"] == "HMACSHA256"
        assert set(h for h in headers if h.startswith("x-docusign-signature-")) == {
            "x-docusign-signature-1", "x-docusign-signature-2"}
        c.verify_webhook(headers, body, {})
        notes.extend(c.parse_webhook(headers, body, {}))
    assert [n.event_type for n in notes] == ["envelope-sent", "recipient-completed", "recipient-completed"]
    assert notes[1].dedup_key == notes[2].dedup_key
    assert notes[1].payload["retryCount"] == 0 and notes[2].payload["retryCount"] == 1
    with pytest.raises(WebhookAuthError):
        fake_client(fake, hmac_secrets=["not-it"]).verify_webhook(fake.got[0][1], fake.got[0][0], {})


# --------------------------------------------------------------------------- the fake's validation is real


def _token(fake):
    return fake_client(fake)._token()


def _post(fake, body):
    return requests.post(f"{fake.rest_url}/v2.1/accounts/{fake.account}/envelopes", json=body, timeout=5,
                         headers={"Authorization": f"Bearer {_token(fake)}"})


def _valid_body(fake):
    return fake_client(fake).build_envelope_definition(envelope())


def test_fake_accepts_the_clients_body(fake):
    response = _post(fake, _valid_body(fake))
    assert response.status_code == 201, response.text


def test_fake_rejects_bodies_violating_the_swagger_definitions(fake):
    if SPEC is None:
        pytest.skip("DocuSign swagger not found under shared/providers/docusign; cannot check the fake's "
                    "schema validation")
    wrong_type = _valid_body(fake)
    wrong_type["recipients"]["signers"][0]["routingOrder"] = 1  # the spec types it as a string
    not_array = _valid_body(fake)
    not_array["documents"] = {"documentId": "1"}
    misspelt = _valid_body(fake)
    misspelt["eventNotification"]["includeHmac"] = "true"  # the field is includeHMAC
    bad_event = _valid_body(fake)
    bad_event["eventNotification"]["envelopeEvents"] = ["Completed"]  # must be objects
    for body, where in ((wrong_type, "recipients/signers/0/routingOrder"), (not_array, "documents"),
                        (misspelt, "eventNotification"), (bad_event, "eventNotification/envelopeEvents/0")):
        response = _post(fake, body)
        assert response.status_code == 400
        error = response.json()
        assert error["errorCode"] == "INVALID_REQUEST_BODY" and where in error["message"], error
    assert not fake.envelopes
    # The void body is validated against `envelope` too.
    envelope_id = _post(fake, _valid_body(fake)).json()["envelopeId"]
    response = requests.put(f"{fake.rest_url}/v2.1/accounts/{fake.account}/envelopes/{envelope_id}",
                            json={"status": "voided", "voidedReason": 5}, timeout=5,
                            headers={"Authorization": f"Bearer {_token(fake)}"})
    assert response.status_code == 400 and "voidedReason" in response.json()["message"]


@pytest.mark.parametrize("change, code", [
    (lambda b: b.pop("documents"), "ENVELOPE_IS_INCOMPLETE"),
    (lambda b: b["documents"][0].pop("documentBase64"), "INVALID_DOCUMENT"),
    (lambda b: b["recipients"]["signers"][0].pop("name"), "INVALID_USERNAME_FOR_RECIPIENT"),
    (lambda b: b["recipients"]["signers"][1].update(email="nope"), "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT"),
    (lambda b: b["recipients"]["signers"][0].update(routingOrder="0"), "INVALID_ROUTING_ORDER"),
    (lambda b: b["recipients"].update(signers=[]), "ENVELOPE_IS_INCOMPLETE"),
    (lambda b: b.pop("emailSubject"), "ENVELOPE_IS_INCOMPLETE"),
    (lambda b: b["eventNotification"].update(url="http://odoo.example.com/cb"), "INVALID_REQUEST_PARAMETER"),
    (lambda b: b.update(status="completed"), "INVALID_ENVELOPE_STATUS"),
])
def test_fake_semantic_checks(fake, change, code):
    body = _valid_body(fake)
    change(body)
    response = _post(fake, body)
    assert response.status_code == 400 and response.json()["errorCode"] == code


def test_fake_requires_a_valid_token_and_account_membership(fake):
    url = f"{fake.rest_url}/v2.1/accounts/{fake.account}/envelopes/x"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer forged"}, timeout=5).status_code == 401
    other = fake.add_account()
    response = requests.get(f"{fake.rest_url}/v2.1/accounts/{other}/envelopes/x", timeout=5,
                            headers={"Authorization": f"Bearer {_token(fake)}"})
    assert response.status_code == 400 and response.json()["errorCode"] == "USER_LACKS_MEMBERSHIP"
