"""FakeAutenti is strict where NOTES.md says Autenti is: raw HTTP against the fake, no client."""
import base64
import http.client
import json
import time
import uuid

import jwt
import pytest
import requests

from esign_connector.api import keys
from esign_connector.tests.fakes.autenti import FakeAutenti, FakeAutentiError

CLIENT_ID, SECRET, KID, ORG = "cid", "secret", "kid-1", "org-1"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PDF = b"%PDF-1.4\n%%EOF\n"


@pytest.fixture(scope="module")
def pem():
    return keys.generate_private_key_pem()


@pytest.fixture(scope="module")
def other_pem():
    return keys.generate_private_key_pem()


@pytest.fixture(scope="module")
def jwk(pem):
    return keys.public_jwk(pem, KID)


@pytest.fixture
def fake(jwk):
    with FakeAutenti() as srv:
        srv.register_client(CLIENT_ID, SECRET, jwk, organisation=ORG)
        yield srv


_LOADED = {}


def assertion(pem, header=None, **claims):
    now = int(time.time())
    values = {"aud": "autenti.com", "iss": ORG, "sub": "odoo-user-1", "email": "ceo@acme.example",
              "email_verified": True, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    values.update(claims)
    values = {k: v for k, v in values.items() if v is not None}
    key = _LOADED.get(pem) or _LOADED.setdefault(pem, keys.load_private_key(pem))  # loading is slow
    return jwt.encode(values, key, algorithm="RS256", headers={"kid": KID, **(header or {})})


def token_call(fake, pem, as_json=False, **fields):
    values = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": GRANT,
              "assertion": assertion(pem)}
    values.update(fields)
    if as_json:
        return requests.post(fake.api_url + "/auth/token", json=values, timeout=2)
    return requests.post(fake.api_url + "/auth/token", data=values, timeout=2)


def token(fake, pem):
    response = token_call(fake, pem)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def api(fake, pem, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {token(fake, pem)}", **kwargs.pop("headers", {})}
    return requests.request(method, fake.api_url + path, headers=headers, timeout=2, **kwargs)


def party(email, priority=None, role="SIGNER", **extra):
    entry = {"party": {"firstName": "A", "lastName": "B",
                       "contacts": [{"type": "CONTACT-TYPE:EMAIL", "attributes": {"email": email}}]},
             "role": role}
    if priority is not None:
        entry["constraints"] = [{"classifiers": ["CONSTRAINT-UNIQUE_TYPE:PARTICIPATION_PRIORITY"],
                                 "attributes": {"priority": priority}}]
    entry.update(extra)
    return entry


def x_assertion(classifier, ids):
    return base64.b64encode(json.dumps({"classifiers": [classifier],
                                        "attributes": {"selectedIds": ids}}).encode()).decode()


SEND = x_assertion("CHALLENGE_CLASSIFIER-UNIQUE_TYPE:ACTION_SELECTION",
                   ["EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_SENT"])
REMIND = x_assertion("CHALLENGE_CLASSIFIER-UNIQUE_TYPE:ACTION_SELECTION",
                     ["EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_REMINDER_SENT"])


def new_process(fake, pem, parties=None):
    parties = parties if parties is not None else [party("a@x.example", 1), party("b@x.example", 2)]
    response = api(fake, pem, "POST", "/document-processes", json={"title": "T", "parties": parties})
    assert response.status_code == 201, response.text
    process_id = response.json()["id"]
    upload = api(fake, pem, "POST", f"/document-processes/{process_id}/files",
                 files={"file": ("t.pdf", PDF, "application/pdf")})
    assert upload.status_code == 200, upload.text
    return process_id


def start(fake, pem, process_id):
    response = api(fake, pem, "POST", f"/document-processes/{process_id}/actions",
                   headers={"X-ASSERTION": SEND}, json={})
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------ token endpoint


def test_good_assertion_gets_a_token_form_or_json(fake, pem):
    for as_json in (False, True):
        response = token_call(fake, pem, as_json=as_json)
        assert response.status_code == 200
        assert set(response.json()) == {"access_token", "token_type", "expires_in"}


def test_json_token_body_can_be_switched_off(fake, pem):
    fake.accept_json_token_body = False
    assert token_call(fake, pem, as_json=True).status_code == 400


@pytest.mark.parametrize("fields, status, words", [
    ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
    ({"client_secret": "nope"}, 401, "invalid_client"),
    ({"client_id": "who"}, 401, "invalid_client"),
    ({"assertion": "not-a-jwt"}, 400, "not a JWT"),
])
def test_token_request_rejections(fake, pem, fields, status, words):
    response = token_call(fake, pem, **fields)
    assert response.status_code == status and words in response.text


@pytest.mark.parametrize("make, words", [
    (lambda pem, other: assertion(other), "Signature verification failed"),
    (lambda pem, other: assertion(pem, header={"kid": "kid-2"}), "unknown key id"),
    (lambda pem, other: assertion(pem, aud="api.autenti.com"), "aud"),
    (lambda pem, other: assertion(pem, iat=int(time.time()) - 1000, exp=int(time.time()) - 700), "expired"),
    (lambda pem, other: assertion(pem, iat=int(time.time()) + 600, exp=int(time.time()) + 900), "future"),
    (lambda pem, other: assertion(pem, exp=int(time.time()) + 3600), "lifetime"),
    (lambda pem, other: assertion(pem, email=None), "email"),
    (lambda pem, other: assertion(pem, email_verified=None), "email_verified"),
    (lambda pem, other: assertion(pem, iss=None), "iss"),
    (lambda pem, other: assertion(pem, iss="someone-else"), "organisation"),
    (lambda pem, other: assertion(pem, sub=None), "sub"),
    (lambda pem, other: assertion(pem, jti=None), "jti"),
    (lambda pem, other: jwt.encode({"aud": "autenti.com"}, "k" * 32, algorithm="HS256",
                                   headers={"kid": KID}), "RS256"),
])
def test_bad_assertions_are_refused(fake, pem, other_pem, make, words):
    response = token_call(fake, pem, assertion=make(pem, other_pem))
    assert response.status_code == 400 and words in response.text, response.text


def test_replayed_assertion_is_refused(fake, pem):
    same = assertion(pem)
    assert token_call(fake, pem, assertion=same).status_code == 200
    assert token_call(fake, pem, assertion=same).status_code == 400


def test_api_needs_a_live_token(fake, pem):
    assert requests.get(fake.api_url + "/applications/callbacks", timeout=2).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert requests.get(fake.api_url + "/applications/callbacks", headers=bad, timeout=2).status_code == 401
    live = {"Authorization": f"Bearer {token(fake, pem)}"}
    assert requests.get(fake.api_url + "/applications/callbacks", headers=live, timeout=2).status_code == 200
    fake.time_offset = fake.token_lifetime + 1
    assert requests.get(fake.api_url + "/applications/callbacks", headers=live, timeout=2).status_code == 401


# ------------------------------------------------------------------ bodies


@pytest.mark.parametrize("body, words", [
    ({}, "title"),
    ({"title": ""}, "title"),
    ({"title": "T", "processLanguage": "fr"}, "processLanguage"),
    ({"title": "T", "parties": {}}, "parties"),
    ({"title": "T", "parties": [party("a@x.example", role="OWNER")]}, "role"),
    ({"title": "T", "parties": [{"party": {"firstName": "A"}, "role": "SIGNER"}]}, "contacts"),
    ({"title": "T", "parties": [party("not-an-email")]}, "email"),
    ({"title": "T", "parties": [party("a@x.example", "1")]}, "priority"),
    ({"title": "T", "parties": [party("a@x.example", 1, role="VIEWER")]}, "PARTICIPATION_PRIORITY"),
    ({"title": "T", "parties": [party("a@x.example", constraints=[{"classifiers": ["X"]}])]}, "classifiers"),
    ({"title": "T", "parties": [party("a@x.example"), party("a@x.example")]}, "already a party"),
    ({"title": "T", "parties": [{"party": {"firstName": "A", "contacts": [{
        "type": "CONTACT-TYPE:EMAIL", "attributes": {"email": "a@x.example"}}], "relationships": [{
            "type": "PARTY_RELATIONSHIP-TYPE:MEMBER", "party": {"name": "ACME", "extIds": [
                {"identificationSpace": "NIP", "identifier": "1"}]}}]}, "role": "SIGNER"}]}, "TAXID"),
])
def test_create_process_rejects_bad_bodies(fake, pem, body, words):
    response = api(fake, pem, "POST", "/document-processes", json=body)
    assert response.status_code == 400 and words in response.json()["message"], response.text


def test_upload_rules(fake, pem):
    process_id = api(fake, pem, "POST", "/document-processes", json={"title": "T"}).json()["id"]
    path = f"/document-processes/{process_id}/files"
    assert api(fake, pem, "POST", path, data={"x": "1"}).status_code == 400  # not multipart
    not_pdf = api(fake, pem, "POST", path, files={"file": ("t.pdf", b"hello", "application/pdf")})
    assert not_pdf.status_code == 400 and "PDF" in not_pdf.text
    bad_purpose = api(fake, pem, "POST", path, files={"file": ("t.pdf", PDF, "application/pdf")},
                      data={"filePurpose": "SIGNED_CONTENT_FILE"})
    assert bad_purpose.status_code == 400
    meta = json.dumps({"filename": "m.pdf", "filePurpose": "SOURCE_FILE", "mimeType": "application/pdf"})
    good = api(fake, pem, "POST", path, files={"file": ("t.pdf", PDF, "application/octet-stream"),
                                               "fileMeta": (None, meta, "application/json")})
    assert good.status_code == 200 and good.json()["filename"] == "m.pdf" and good.json()["size"] == len(PDF)
    assert api(fake, pem, "GET", "/document-processes/DOCUMENT_PROCESS:nope").status_code == 404


def test_actions_need_valid_assertions(fake, pem):
    process_id = new_process(fake, pem)
    path = f"/document-processes/{process_id}/actions"
    missing = api(fake, pem, "POST", path)
    assert missing.status_code == 403 and missing.headers["X-Challenge"]
    garbage = api(fake, pem, "POST", path, headers={"X-ASSERTION": "!!!"})
    assert garbage.status_code == 400
    unknown = api(fake, pem, "POST", path, headers={"X-ASSERTION": x_assertion(
        "CHALLENGE_CLASSIFIER-UNIQUE_TYPE:ACTION_SELECTION", ["EVENT_CLASSIFIER-UNIQUE_TYPE:NOPE"])})
    assert unknown.status_code == 400
    assert fake.processes[process_id]["status"] == "DRAFT"


def test_send_needs_a_file_and_a_signer(fake, pem):
    process_id = api(fake, pem, "POST", "/document-processes", json={"title": "T", "parties": [
        party("a@x.example", 1)]}).json()["id"]
    response = api(fake, pem, "POST", f"/document-processes/{process_id}/actions", headers={"X-ASSERTION": SEND})
    assert response.status_code == 400 and "SOURCE_FILE" in response.text


def test_processes_of_another_client_are_invisible(fake, pem, other_pem):
    process_id = new_process(fake, pem)
    fake.register_client("other", "pw", keys.public_jwk(other_pem, KID), organisation=ORG)
    response = requests.post(fake.api_url + "/auth/token", data={
        "client_id": "other", "client_secret": "pw", "grant_type": GRANT, "assertion": assertion(other_pem)},
        timeout=2)
    headers = {"Authorization": "Bearer " + response.json()["access_token"]}
    assert requests.get(f"{fake.api_url}/document-processes/{process_id}", headers=headers,
                        timeout=2).status_code == 404


# ------------------------------------------------------------------ order, files, reminders


def test_signing_order_is_enforced(fake, pem):
    process_id = new_process(fake, pem)
    with pytest.raises(FakeAutentiError):
        fake.sign(process_id, "a@x.example")  # not sent yet
    start(fake, pem, process_id)
    with pytest.raises(FakeAutentiError):
        fake.sign(process_id, "b@x.example")
    with pytest.raises(FakeAutentiError):
        fake.reject(process_id, "b@x.example", "no")
    fake.sign(process_id, "a@x.example")
    with pytest.raises(FakeAutentiError):
        fake.sign(process_id, "a@x.example")  # twice
    fake.sign(process_id, "b@x.example")
    assert fake.processes[process_id]["status"] == "COMPLETED"


def test_priority_semantics_can_be_reversed(fake, pem):
    fake.priority_ascending = False  # [GUESS] point: the higher number signs first
    process_id = new_process(fake, pem)
    start(fake, pem, process_id)
    with pytest.raises(FakeAutentiError):
        fake.sign(process_id, "a@x.example")
    fake.sign(process_id, "b@x.example")


def test_files_list_is_ndjson_and_ids_need_encoding(fake, pem):
    process_id = new_process(fake, pem)
    start(fake, pem, process_id)
    fake.sign(process_id, "a@x.example")
    fake.sign(process_id, "b@x.example")
    listing = api(fake, pem, "GET", f"/document-processes/{process_id}/files")
    assert listing.headers["Content-Type"] == "application/stream+json"
    records = [json.loads(line) for line in listing.text.splitlines()]
    purposes = [r["filePurpose"] for r in records]
    assert purposes == ["SOURCE_FILE", "SIGNED_CONTENT_FILE", "SIGNATURE_CARD", "CONTENT_ARCHIVE"]
    signed = records[1]["id"]
    assert "/" in signed
    raw = api(fake, pem, "GET", f"/document-processes/{process_id}/files/{signed}/content")
    assert raw.status_code == 404  # an unencoded "/" does not reach the file
    encoded = requests.utils.quote(signed, safe="")
    content = api(fake, pem, "GET", f"/document-processes/{process_id}/files/{encoded}/content")
    assert content.status_code == 200 and content.content == PDF + fake.signed_marker


def test_reminder_challenge_accepts_two_header_lines(fake, pem):
    process_id = new_process(fake, pem)
    start(fake, pem, process_id)
    first = api(fake, pem, "POST", f"/document-processes/{process_id}/actions", headers={"X-ASSERTION": REMIND})
    assert first.status_code == 403
    challenge = json.loads(base64.urlsafe_b64decode(first.headers["X-Challenge"] + "=="))
    available = [o["id"] for o in challenge["attributes"]["options"] if o["availability"] == "AVAILABLE"]
    assert available == ["PARTY-EMAIL:a@x.example"]
    selection = x_assertion("CHALLENGE_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_REMINDER_PARTY_SELECTION", available)
    host, port = fake._httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=2)
    conn.putrequest("POST", f"/api/v2/document-processes/{process_id}/actions")
    conn.putheader("Authorization", f"Bearer {token(fake, pem)}")
    conn.putheader("X-ASSERTION", REMIND)
    conn.putheader("X-ASSERTION", selection)
    conn.putheader("Content-Length", "0")
    conn.endheaders()
    assert conn.getresponse().status == 200
    conn.close()
    assert fake.reminders == [(process_id, available)]
    wrong = x_assertion("CHALLENGE_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_REMINDER_PARTY_SELECTION",
                        ["PARTY-EMAIL:b@x.example"])
    refused = api(fake, pem, "POST", f"/document-processes/{process_id}/actions",
                  headers={"X-ASSERTION": f"{REMIND}, {wrong}"})
    assert refused.status_code == 400  # not their turn: nothing to remind


def test_callbacks_are_signed_detached_jws(fake, pem):
    api(fake, pem, "POST", "/applications/callbacks", json={
        "callbackAdapterId": "CALLBACK_ADAPTER:API_V2", "callbackParameters": {"callbackUrl": "http://x/hook"}})
    bad = api(fake, pem, "POST", "/applications/callbacks", json={"callbackParameters": {"callbackUrl": "x"}})
    assert bad.status_code == 400
    process_id = new_process(fake, pem)
    start(fake, pem, process_id)
    (url, body, headers), = fake.outbox
    head, empty, signature = headers["x-jws-signature"].split(".")
    assert url == "http://x/hook" and empty == ""
    assert json.loads(base64.urlsafe_b64decode(head + "=="))["alg"] == "RS256"
    event = json.loads(body)[0]
    assert event["object"]["id"] == process_id
    assert event["eventType"] == "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_SENT"
    jwks = requests.get(fake.jwks_url, timeout=2).json()
    public = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwks["keys"][0]))
    # Re-attaching the body gives an ordinary JWS, verified independently of our client.
    attached = f"{head}.{base64.urlsafe_b64encode(body).rstrip(b'=').decode()}.{signature}"
    assert jwt.api_jws.decode(attached, public, algorithms=["RS256"]) == body


# ------------------------------------------------------------------ configurable state rules


def test_title_is_kept_as_sent_and_its_length_can_be_limited(fake, pem):
    title = "Umowa [ref 0123abcd]"
    created = api(fake, pem, "POST", "/document-processes", json={"title": title})
    assert created.status_code == 201 and created.json()["title"] == title
    assert [p["id"] for p in fake.processes_with_reference("0123abcd")] == [created.json()["id"]]
    fake.max_title_length = 10  # [GUESS] point: Autenti publishes no limit
    refused = api(fake, pem, "POST", "/document-processes", json={"title": title})
    assert refused.status_code == 400 and "title" in refused.json()["message"]


def test_a_withdrawn_draft_cannot_be_sent_unless_configured(fake, pem):
    withdraw = x_assertion("CHALLENGE_CLASSIFIER-UNIQUE_TYPE:ACTION_SELECTION",
                           ["EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_WITHDRAWAL"])
    for revivable in (False, True):
        fake.allow_send_after_withdrawal = revivable
        process_id = new_process(fake, pem)
        path = f"/document-processes/{process_id}/actions"
        assert api(fake, pem, "POST", path, headers={"X-ASSERTION": withdraw}).status_code == 200
        sent = api(fake, pem, "POST", path, headers={"X-ASSERTION": SEND})
        assert sent.status_code == (200 if revivable else 409), sent.text
        assert fake.processes[process_id]["status"] == ("PROCESSING" if revivable else "WITHDRAWN")
    fake.sign(process_id, "a@x.example")  # a revived process is live again: the danger it models


def test_the_draft_status_name_is_configurable(fake, pem):
    fake.initial_status = "CREATED"  # [GUESS] point: NOTES §4.1
    process_id = new_process(fake, pem)
    assert fake.processes[process_id]["status"] == "CREATED"
    start(fake, pem, process_id)
    assert fake.processes[process_id]["status"] == "PROCESSING"


def test_fail_marks_the_process_and_the_party(fake, pem):
    process_id = new_process(fake, pem)
    with pytest.raises(FakeAutentiError):
        fake.fail(process_id, "too early")  # a draft is not running: nothing can fail yet
    start(fake, pem, process_id)
    fake.fail(process_id, "HSM down", email="a@x.example", status="ERROR")
    fetched = api(fake, pem, "GET", f"/document-processes/{process_id}").json()
    assert (fetched["status"], fetched["statusDescription"]) == ("ERROR", "HSM down")
    party_a = fetched["parties"][0]
    assert party_a["participationStatus"] == "FAILED"
    assert party_a["events"][-1]["attributes"] == {"comment": "HSM down"}
    with pytest.raises(FakeAutentiError):
        fake.sign(process_id, "b@x.example")
