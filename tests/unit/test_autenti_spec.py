"""Our requests and the fake's answers against Autenti's own connector Swagger, where it is the wire.

The only machine-readable description of Autenti's API is the Swagger 2.0 of Autenti's Power
Automate connector (read from ``../shared/providers/autenti/``, never copied into the repo). NOTES.md
§10: two of its request bodies are Power-Automate forms rewritten by a script before they reach
Autenti: "Add participant" (``Document_process_participants``: flat ``contacts_attributes_email``...)
and "Perform action" (``Actions_availability``: ``event_type`` turned into ``X-ASSERTION``). Those two
request bodies are NOT used here; the wire shape of a party entry is taken from the same operation's
*response* schema, which is the real nested object.
"""
import base64
import json
import os
import re

import jsonschema
import pytest

from esign_connector.api import autenti, keys
from esign_connector.api.autenti import AutentiClient
from esign_connector.api.base import Document, Envelope, Organisation, Signer
from esign_connector.tests.fakes.autenti import FakeAutenti

try:
    from conftest import SHARED_PROVIDERS
except ImportError:  # run from an unusual rootdir: same default as conftest.py
    SHARED_PROVIDERS = os.environ.get("ESIGN_SHARED_PROVIDERS", os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
        "shared", "providers"))

SPEC_DIR = os.path.join(SHARED_PROVIDERS, "autenti")
CLIENT_ID, SECRET, KID = "cid", "secret", "kid-1"
PDF = b"%PDF-1.4\n%%EOF\n"
HOOK = "https://odoo.example.com/esign/webhook/autenti"
# Endpoints the client uses that the connector does not describe, with their NOTES.md source.
NOT_IN_CONNECTOR = {
    ("GET", "/applications/callbacks"),  # NOTES §7, [2nd] S6: lists registrations
    ("POST", "/auth/token"),  # NOTES §2a: the connector has only an empty path item for it
}


def load(name):
    path = os.path.join(SPEC_DIR, name)
    if not os.path.exists(path):
        pytest.skip(f"Autenti reference file {path} is absent (set ESIGN_SHARED_PROVIDERS to the "
                    "shared/providers folder to run the spec checks)")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def swagger():
    return load("apiDefinition.swagger.json")


def operation(swagger, method, path):
    return swagger["paths"][path][method.lower()]


def body_schema(op):
    return next(p["schema"] for p in op["parameters"] if p["in"] == "body")


def validate(schema, instance):
    jsonschema.Draft4Validator(schema).validate(instance)  # Swagger 2.0 schemas are draft-4 based


@pytest.fixture(scope="module")
def pem():
    return keys.generate_private_key_pem()


@pytest.fixture(scope="module")
def jwk(pem):
    return keys.public_jwk(pem, KID)


@pytest.fixture
def fake(jwk):
    autenti.clear_caches()
    with FakeAutenti() as srv:
        srv.register_client(CLIENT_ID, SECRET, jwk, organisation="org")
        yield srv
    autenti.clear_caches()


@pytest.fixture
def flow(fake, pem):
    """A complete run in central mode, plus a cancel and a reminder on a second process."""
    client = AutentiClient(base_url=fake.api_url, client_id=CLIENT_ID, client_secret=SECRET,
                           organisation_id="org", private_key_pem=pem, kid=KID,
                           acting_email="ceo@acme.example", acting_subject="rep-1",
                           jwks_url=fake.jwks_url, timeout=(1, 0.5), sleep=lambda s: None)
    envelope = Envelope(
        reference="R1", title="Umowa", document=Document("umowa.pdf", PDF), language="pl",
        message="Prosimy o podpis",
        signers=(Signer(key="s1", name="Jan Kowalski", email="jan@client.example", sequence=1),
                 Signer(key="s2", name="Anna Prezes", email="ceo@acme.example", role="company", sequence=2,
                        organisation=Organisation("ACME Sp. z o.o.", "PL1234567890"),
                        representation_basis="Prezes Zarządu")))
    client.register_callback(HOOK)
    ref = client.send(envelope).provider_ref
    fake.sign(ref, "jan@client.example")
    fake.sign(ref, "ceo@acme.example")
    client.get_status(ref)
    client.download_signed(ref)
    client.download_evidence(ref)
    other = client.send(envelope).provider_ref
    client.remind(other)
    client.cancel(other)
    return client, ref


def test_hosts_and_token_url_match_the_connector(swagger):
    assert f"https://{swagger['host']}{swagger['basePath']}" == autenti.PRODUCTION_URL
    settings = load("apiProperties.json")["properties"]["connectionParameters"]["token"]["oAuthSettings"]
    assert settings["customParameters"]["tokenUrl"]["value"] == autenti.PRODUCTION_URL + autenti.TOKEN_PATH


def test_every_request_goes_to_a_described_endpoint(swagger, fake, flow):
    templates = []
    for path, item in swagger["paths"].items():
        regex = "^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(path).replace(r"\{", "{").replace(r"\}", "}")) + "$"
        templates.extend((method.upper(), re.compile(regex)) for method in item if method in (
            "get", "post", "put", "delete", "patch"))
    api_requests = [r for r in fake.requests if r.path.startswith("/api/v2/")]
    assert api_requests
    for request in api_requests:
        path = request.path[len("/api/v2"):]
        described = any(m == request.method and rx.match(path) for m, rx in templates)
        assert described or (request.method, path) in NOT_IN_CONNECTOR, (request.method, path)


def test_create_process_bodies_validate(swagger, fake, flow):
    schema = body_schema(operation(swagger, "POST", "/document-processes"))
    # The wire shape of one party entry: the "Add participant" RESPONSE (its request is a PA form).
    party_schema = operation(swagger, "POST", "/document-processes/{documentProcessId}/parties")[
        "responses"]["200"]["schema"]
    bodies = fake.create_requests()
    assert len(bodies) == 2
    for body in bodies:
        validate(schema, body)
        for entry in body["parties"]:
            validate(party_schema, entry)
    with pytest.raises(jsonschema.ValidationError):
        validate(schema, {"processLanguage": "pl"})  # the schema does bite: title is required


def test_upload_requests_carry_the_described_form_fields(swagger, fake, flow):
    op = operation(swagger, "POST", "/document-processes/{documentProcessId}/files")
    assert op["consumes"] == ["multipart/form-data"]
    required = {p["name"] for p in op["parameters"] if p["in"] == "formData" and p.get("required")}
    for request in fake.requests_to("POST", r"/files$"):
        parts = request.multipart()
        assert required <= set(parts), (required, set(parts))
        assert parts["filePurpose"][2] == b"SOURCE_FILE" and parts["mimeType"][2] == b"application/pdf"
        assert parts["file"][0].endswith(".pdf") and parts["file"][2] == PDF


def test_callback_registration_body_validates(swagger, fake, flow):
    schema = body_schema(operation(swagger, "POST", "/applications/callbacks"))
    (request,) = fake.requests_to("POST", r"/applications/callbacks$")
    validate(schema, request.json())


def test_action_requests_use_the_wire_form_not_the_connector_form(fake, flow):
    # Actions_availability's body ({event_type}) is a Power Automate form (NOTES §10): on the wire
    # the body is empty JSON and the choice travels in X-ASSERTION (NOTES §4.4).
    for request in fake.requests_to("POST", r"/actions$"):
        assert request.json() == {}
        for value in request.headers["X-ASSERTION"].split(","):
            decoded = json.loads(base64.b64decode(value.strip(), validate=True))
            assert decoded["classifiers"][0].startswith("CHALLENGE_CLASSIFIER-UNIQUE_TYPE:")


def test_fake_answers_validate_against_the_connector(swagger, fake, pem):
    autenti.clear_caches()
    client = AutentiClient(base_url=fake.api_url, client_id=CLIENT_ID, client_secret=SECRET,
                           organisation_id="org", private_key_pem=pem, kid=KID,
                           acting_email="ceo@acme.example", acting_subject="rep-1",
                           jwks_url=fake.jwks_url, timeout=(1, 0.5), sleep=lambda s: None)
    token = client._token()
    import requests  # raw calls: we check the fake's answers, not the client
    headers = {"Authorization": f"Bearer {token}"}
    create = operation(swagger, "POST", "/document-processes")
    created = requests.post(fake.api_url + "/document-processes", headers=headers, timeout=2, json={
        "title": "T", "processLanguage": "en"})
    assert created.status_code == 201
    validate(create["responses"]["201"]["schema"], created.json())
    pid = created.json()["id"]
    party = {"party": {"firstName": "A", "lastName": "B", "contacts": [
        {"type": "CONTACT-TYPE:EMAIL", "attributes": {"email": "a@b.example"}}]}, "role": "SIGNER"}
    added = requests.post(f"{fake.api_url}/document-processes/{pid}/parties", headers=headers, json=party,
                          timeout=2)
    validate(operation(swagger, "POST", "/document-processes/{documentProcessId}/parties")[
        "responses"]["200"]["schema"], added.json())
    uploaded = requests.post(f"{fake.api_url}/document-processes/{pid}/files", headers=headers, timeout=2,
                             files={"file": ("t.pdf", PDF, "application/pdf")})
    validate(operation(swagger, "POST", "/document-processes/{documentProcessId}/files")[
        "responses"]["200"]["schema"], uploaded.json())
    fetched = requests.get(f"{fake.api_url}/document-processes/{pid}", headers=headers, timeout=2)
    validate(create["responses"]["201"]["schema"], fetched.json())


def test_callback_payloads_validate_against_the_notification_schema(swagger, fake, flow):
    schema = swagger["paths"]["/applications/callbacks"]["x-ms-notification-content"]["schema"]
    seen = []

    def sink(url, body, headers):
        validate(schema, json.loads(body))
        seen.append(json.loads(body)[0]["eventType"].rsplit(":", 1)[1])
        return 200

    fake.callback_sink = sink
    fake.flush_callbacks()
    assert {"DOCUMENT_SENT", "DOCUMENT_PROCESS_COMPLETED", "DOCUMENT_REMINDER_SENT",
            "DOCUMENT_WITHDRAWAL"} <= set(seen)


def test_the_create_body_has_no_external_id_so_our_reference_rides_in_the_title(swagger, fake, flow):
    # api/autenti.py "Outbox": the described create body offers no place for a value of ours but these.
    schema = body_schema(operation(swagger, "POST", "/document-processes"))
    assert set(schema["properties"]) == {"title", "description", "processLanguage"}
    for body in fake.create_requests():
        assert body["title"] == "Umowa " + autenti.TITLE_REFERENCE_TAG.format(reference="R1")
        validate(schema, body)


def test_nothing_described_finds_a_process_by_our_reference(swagger):
    # The only listing takes no parameter (no filter, no search, no paging): no lookup by reference.
    listing = operation(swagger, "GET", "/document-processes")
    assert listing.get("parameters", []) == []
    assert not any(p.get("in") == "query" for item in swagger["paths"].values() for op in item.values()
                   if isinstance(op, dict) for p in op.get("parameters", []) if p.get("name") != "responseVariant")
    assert AutentiClient.can_find_by_reference is False


def test_callback_events_have_no_field_for_our_reference(swagger):
    item = swagger["paths"]["/applications/callbacks"]["x-ms-notification-content"]["schema"]["items"]
    assert set(item["properties"]) == {"id", "actor", "eventType", "object", "timestamp"}
    assert set(item["properties"]["object"]["properties"]) == {"id", "type"}
