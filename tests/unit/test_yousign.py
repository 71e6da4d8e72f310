"""YousignClient against FakeYousign over real HTTP (no Odoo).

When Yousign's OpenAPI file is in ``shared/providers/yousign`` and openapi-core is installed, the fake
validates every request against it and each test checks that nothing was refused by the spec.
"""
import datetime
import json
import logging
import os

import pytest
import requests

from conftest import SHARED_PROVIDERS

from esign_connector.api import yousign as ys
from esign_connector.api.base import (Document, Envelope, Organisation, ProviderError, Signer,
                                      WebhookAuthError, WebhookMalformed)
from esign_connector.api.yousign import PRODUCTION_URL, SANDBOX_URL, YousignClient
from esign_connector.tests.fakes.yousign import FakeActionError, FakeYousign, SpecUnavailable, load_openapi, \
    spec_path_from

API_KEY = "ys-test-key-0123456789"
SECRET = "0123456789abcdef0123456789abcdef"  # 32 characters, like Yousign's secret_key
HOOK_URL = "https://odoo.example.com/esign/webhook/yousign"

SPEC_FILE = os.path.join(SHARED_PROVIDERS, "yousign", "openapi.json")
SPEC = spec_path_from(SHARED_PROVIDERS)  # None when the file is absent
try:
    load_openapi(SPEC or SPEC_FILE)
    SPEC_SKIP_REASON = ""
except SpecUnavailable as exc:
    SPEC_SKIP_REASON = f"Yousign spec validation skipped: {exc}"
needs_spec = pytest.mark.skipif(bool(SPEC_SKIP_REASON), reason=SPEC_SKIP_REASON or "spec available")

# A two-page PDF (the fake counts /Type /Page objects).
PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
       b"2 0 obj << /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >> endobj\n"
       b"3 0 obj << /Type /Page /Parent 2 0 R >> endobj\n4 0 obj << /Type /Page /Parent 2 0 R >> endobj\n%%EOF\n")

CLIENT = Signer(key="signer-1", name="Łukasz Żółć-Brzęczyszczykiewicz", email="lukasz@client.example",
                role="client", sequence=1)
# Individual mode: the company signer is the salesperson who sends.
SENDER = Signer(key="signer-2", name="Anna Nowak", email="anna.nowak@company.example", role="company",
                sequence=2)
# Central mode: the company's representative, signing for the organisation.
REPRESENTATIVE = Signer(key="signer-3", name="Dr. Jürgen Müller", email="board@company.example",
                        role="company", sequence=2, phone="+48 600 100 200",
                        organisation=Organisation("ACME Sp. z o.o.", "PL5250000000", "PL"),
                        representation_basis="KRS 0000123456, board member")


def envelope(company=SENDER, reference="5f1c2d3e4a5b6c7d8e9f00112233aabb", **kwargs):
    values = dict(reference=reference, title="Contract 2026/11/0042 – ACME", message="Please sign the contract.",
                  language="pl", document=Document("contract.pdf", PDF),
                  signers=(company, CLIENT),  # deliberately not in signing order
                  expires_at=datetime.datetime(2027, 1, 31, 12, 0))
    values.update(kwargs)
    return Envelope(**values)


ENVELOPES = {"individual": envelope(SENDER), "central": envelope(REPRESENTATIVE)}


@pytest.fixture
def fake():
    server = FakeYousign(api_key=API_KEY, spec_path=None if SPEC_SKIP_REASON else SPEC)
    server.check_answers = True
    server.received = []

    def sink(url, body, headers):
        server.received.append((url, body, {k.lower(): v for k, v in headers.items()}))
        return 200

    server.callback_sink = sink
    server.subscribe(HOOK_URL, SECRET)
    with server:
        yield server
    # Every request our client sent conformed to Yousign's OpenAPI document (when it is present), and
    # so did every JSON answer the fake gave it.
    assert server.spec_rejections == [], server.spec_rejections
    assert server.answer_violations == [], server.answer_violations


def make_client(fake, **kwargs):
    options = dict(base_url=fake.api_url, api_key=API_KEY, webhook_secret=SECRET, timeout=(1, 0.5),
                   max_retries=2, sleep=lambda s: None)
    options.update(kwargs)
    return YousignClient(**options)


@pytest.fixture
def client(fake):
    return make_client(fake)


def delivered(fake, client):
    """Flush the fake's webhooks; verify and parse each like the controller would."""
    fake.flush_callbacks()
    out = []
    for _url, body, headers in fake.received:
        client.verify_webhook(headers, body, {})
        out.extend(client.parse_webhook(headers, body, {}))
    fake.received.clear()
    return out


def signer_states(status):
    return {s.email: s.state for s in status.signers}


# --- send and the whole flow ------------------------------------------------------------------------


def test_constants_and_code():
    assert SANDBOX_URL == "https://api-sandbox.yousign.app/v3"
    assert PRODUCTION_URL == "https://api.yousign.app/v3"
    assert YousignClient.code == "yousign"


@pytest.mark.parametrize("mode", sorted(ENVELOPES))
def test_whole_flow(fake, client, mode):
    env = ENVELOPES[mode]
    company = env.ordered_signers()[1]
    result = client.send(env)

    # What Yousign received: one draft, document, client then company, activated.
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.requests]
    assert calls == [("POST", "signature_requests"), ("POST", "documents"), ("POST", "signers"),
                     ("POST", "signers"), ("POST", "activate")]
    assert all(r.headers["Authorization"] == f"Bearer {API_KEY}" for r in fake.requests)
    created = fake.requests[0].json()
    assert created["delivery_mode"] == "email" and created["ordered_signers"] is True
    assert created["external_id"] == env.reference
    assert created["signers_allowed_to_decline"] is True
    assert created["expiration_date"] == "2027-01-31"
    assert created["email_notification"] == {"custom_note": "Please sign the contract."}
    upload = fake.requests[1].multipart()
    assert upload["nature"][2] == b"signable_document" and upload["file"][2] == PDF
    first, second = (r.json() for r in fake.requests[2:4])
    assert first["info"]["email"] == CLIENT.email and second["info"]["email"] == company.email
    assert first["info"]["first_name"] == "Łukasz" and first["info"]["last_name"] == "Żółć-Brzęczyszczykiewicz"
    assert first["info"]["locale"] == "pl"
    for body in (first, second):
        assert body["signature_level"] == "electronic_signature"
        assert body["signature_authentication_mode"] == "otp_email"
        (field,) = body["fields"]
        assert field["type"] == "signature" and field["page"] == 2  # the last page

    req = fake.signature_requests[result.provider_ref]
    assert req["status"] == "ongoing"
    assert [(s.key, s.state) for s in result.signers] == [("signer-1", "pending"), (company.key, "waiting")]
    assert [s.provider_ref for s in result.signers] == [s["id"] for s in req["signers"]]

    # The company signer cannot go first.
    with pytest.raises(FakeActionError):
        fake.sign(result.provider_ref, company.email)

    fake.sign(result.provider_ref, CLIENT.email)
    status = client.get_status(result.provider_ref)
    assert status.state == "sent" and status.provider_state == "ongoing"
    assert signer_states(status) == {CLIENT.email: "signed", company.email: "pending"}

    fake.sign(result.provider_ref, company.email)
    status = client.get_status(result.provider_ref)
    assert status.state == "signed" and status.provider_state == "done"
    assert signer_states(status) == {CLIENT.email: "signed", company.email: "signed"}

    signed = client.download_signed(result.provider_ref)
    assert signed.mimetype == "application/pdf" and signed.content.startswith(PDF)
    assert company.email.encode() in signed.content and signed.filename == "contract-signed.pdf"
    evidence = client.download_evidence(result.provider_ref)
    assert evidence.mimetype == "application/pdf" and evidence.content.startswith(b"%PDF")
    assert CLIENT.email.encode() in evidence.content and company.email.encode() in evidence.content
    download = fake.requests_to("GET", r"/documents/download$")[-1]
    assert download.arg("version") == "completed"

    # Webhooks tell the same story, verified with the subscription's secret.
    notes = delivered(fake, client)
    assert [n.event_type for n in notes] == [
        "signature_request.activated", "signer.notified", "signer.done", "signer.notified", "signer.done",
        "signature_request.done"]
    assert all(n.provider_ref == result.provider_ref and n.dedup_key.startswith("yousign:") for n in notes)
    assert len({n.dedup_key for n in notes}) == len(notes)
    done = notes[-1]
    assert done.status.state == "signed" and done.occurred_at is not None
    assert notes[2].status.state == "sent"
    assert {s.email: s.state for s in notes[2].status.signers if s.email} == {CLIENT.email: "signed"}


def test_send_cleans_names_for_yousigns_pattern(fake, client):
    odd = Signer(key="signer-9", name="Mr. José-María O'Neil (Jr.)", email="jm@client.example", role="client",
                 sequence=1)
    mononym = Signer(key="signer-8", name="Madonna", email="m@company.example", role="company", sequence=2)
    client.send(envelope(signers=(odd, mononym)))
    first, second = (r.json()["info"] for r in fake.requests_to("POST", r"/signers$"))
    assert (first["first_name"], first["last_name"]) == ("Mr", "José-María O'Neil (Jr)")
    assert (second["first_name"], second["last_name"]) == ("Madonna", ys.MISSING_NAME_PART)


def test_send_refuses_non_signing_roles_before_any_call(fake, client):
    viewer = Signer(key="signer-5", name="Eve Viewer", email="eve@example.com", role="company", sequence=2,
                    action="view")
    with pytest.raises(ProviderError) as info:
        client.send(envelope(signers=(CLIENT, viewer)))
    assert info.value.kind == "config" and not fake.requests


# --- refusal, cancel, remind -----------------------------------------------------------------------


def test_refusal(fake, client):
    result = client.send(envelope())
    fake.decline(result.provider_ref, CLIENT.email, "Wrong price in section 3")
    status = client.get_status(result.provider_ref)
    assert status.state == "refused" and status.reason == "Wrong price in section 3"
    refused = next(s for s in status.signers if s.email == CLIENT.email)
    assert refused.state == "refused" and refused.reason == "Wrong price in section 3"
    assert refused.changed_at is not None
    notes = delivered(fake, client)
    assert [n.event_type for n in notes][-2:] == ["signer.declined", "signature_request.declined"]
    assert all(n.status.state == "refused" for n in notes[-2:])
    with pytest.raises(FakeActionError):
        fake.sign(result.provider_ref, SENDER.email)
    with pytest.raises(ProviderError) as info:
        client.download_signed(result.provider_ref)
    assert info.value.kind == "rejected" and "done" in info.value.detail


def test_cancel_with_our_words_and_with_a_yousign_reason(fake, client):
    first = client.send(envelope())
    client.cancel(first.provider_ref, "Cancelled by Anna Nowak")
    assert fake.signature_requests[first.provider_ref]["cancel"] == {
        "reason": "other", "custom_note": "Cancelled by Anna Nowak"}
    status = client.get_status(first.provider_ref)
    assert status.state == "cancelled" and status.provider_state == "canceled"
    assert delivered(fake, client)[-1].status.state == "cancelled"

    second = client.send(envelope(reference="second-ref"))
    client.cancel(second.provider_ref, "errors_in_document")
    assert fake.signature_requests[second.provider_ref]["cancel"]["reason"] == "errors_in_document"
    third = client.send(envelope(reference="third-ref"))
    client.cancel(third.provider_ref)
    assert fake.signature_requests[third.provider_ref]["cancel"] == {
        "reason": ys.DEFAULT_CANCEL_REASON, "custom_note": None}

    with pytest.raises(ProviderError) as info:
        client.cancel(first.provider_ref, "again")
    assert info.value.kind == "rejected" and info.value.status_code == 400
    assert "cannot be canceled" in info.value.detail


def test_remind_targets_the_signer_whose_turn_it_is(fake, client):
    result = client.send(envelope())
    ids = [s.provider_ref for s in result.signers]
    client.remind(result.provider_ref)
    fake.sign(result.provider_ref, CLIENT.email)
    client.remind(result.provider_ref)
    assert fake.reminders == [(result.provider_ref, ids[0]), (result.provider_ref, ids[1])]
    assert fake.requests_to("POST", r"/signers/[^/]+/send_reminder$")[0].body == b""
    fake.sign(result.provider_ref, SENDER.email)
    with pytest.raises(ProviderError) as info:
        client.remind(result.provider_ref)
    assert info.value.kind == "conflict"


def test_expired_request(fake, client):
    result = client.send(envelope())
    fake.expire(result.provider_ref)
    assert client.get_status(result.provider_ref).state == "expired"


# --- lost webhooks, duplicates ----------------------------------------------------------------------


def test_lost_webhooks_then_get_status(fake, client):
    result = client.send(envelope())
    fake.sign(result.provider_ref, CLIENT.email)
    fake.sign(result.provider_ref, SENDER.email)
    fake.drop_callbacks = 100
    assert set(fake.flush_callbacks()) == {None}
    assert fake.received == []
    status = client.get_status(result.provider_ref)
    assert status.state == "signed"
    assert client.download_signed(result.provider_ref).content.startswith(PDF)


def test_redelivered_event_has_the_same_dedup_key(fake, client):
    result = client.send(envelope())
    fake.sign(result.provider_ref, CLIENT.email)
    fake.retry_event(-1)  # Yousign retries the last delivery (same body)
    notes = delivered(fake, client)
    assert notes[-1].dedup_key == notes[-2].dedup_key
    assert fake.received == []
    assert fake.delivered[-1][2]["X-Yousign-Retry"] == "1"


# --- outages and unsafe retries ---------------------------------------------------------------------


def test_server_errors_are_retried_on_reads_then_reported(fake, client):
    result = client.send(envelope())
    fake.fail_next(503, times=1)
    assert client.get_status(result.provider_ref).state == "sent"
    before = len(fake.requests)
    fake.fail_next(500, {"type": "internal_error", "detail": "Something went wrong"}, times=3)
    with pytest.raises(ProviderError) as info:
        client.get_status(result.provider_ref)
    assert info.value.kind == "unavailable" and info.value.transient
    assert info.value.detail == "Something went wrong [internal_error]"
    assert len(fake.requests) - before == 3  # 1 + max_retries


def test_rate_limit_message_and_retry_after(fake, client):
    result = client.send(envelope())
    fake.fail_next(429, {"message": "API rate limit exceeded"}, headers={"Retry-After": "7"}, times=3)
    with pytest.raises(ProviderError) as info:
        client.get_status(result.provider_ref)
    assert info.value.kind == "rate_limited" and info.value.detail == "API rate limit exceeded"
    assert info.value.retry_after == 7


def test_rate_limited_post_is_retried_because_it_was_not_executed(fake, client):
    fake.fail_when("POST", r"^/signature_requests$", 429, times=1)
    result = client.send(envelope())
    assert len(fake.requests_to("POST", r"^/signature_requests$")) == 2
    assert len(fake.signature_requests) == 1 and result.provider_ref in fake.signature_requests


def test_read_timeout_is_retried(fake, client):
    result = client.send(envelope())
    fake.delay_next(0.8)
    assert client.get_status(result.provider_ref).state == "sent"


def test_dropped_connection_on_a_read_is_retried_but_not_on_a_post(fake, client):
    result = client.send(envelope(reference="first"))
    fake.drop_next()
    assert client.get_status(result.provider_ref).state == "sent"
    count = len(fake.signature_requests)
    fake.drop_next()
    with pytest.raises(ProviderError) as info:
        client.send(envelope(reference="second"))
    assert info.value.kind == "unavailable" and "external_id second" in info.value.detail
    assert len(fake.signature_requests) == count  # the dropped POST never reached a handler, and was not re-sent
    assert len(fake.requests_to("POST", r"^/signature_requests$")) == 1


def test_create_timeout_is_not_resent(fake, client):
    fake.delay_next(0.8)
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    assert info.value.kind == "timeout"
    assert "external_id 5f1c2d3e4a5b6c7d8e9f00112233aabb" in info.value.detail
    assert len(fake.requests_to("POST", r"^/signature_requests$")) == 1


def test_upload_5xx_is_not_resent_and_the_draft_is_deleted(fake, client):
    fake.fail_when("POST", r"/documents$", 502)
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    error = info.value
    (request_id,) = fake.signature_requests
    assert error.kind == "unavailable" and error.status_code == 502
    assert "could not upload the document" in error.detail
    assert f"draft signature request {request_id} was deleted" in error.detail
    assert len(fake.requests_to("POST", r"/documents$")) == 1
    assert fake.signature_requests[request_id]["status"] == "deleted"
    assert len(fake.requests_to("DELETE", r"^/signature_requests/[^/]+$")) == 1


def test_rejected_signer_deletes_the_draft_with_a_readable_reason(fake, client):
    sms = make_client(fake, authentication_mode="otp_sms")  # needs a phone; the client has none
    with pytest.raises(ProviderError) as info:
        sms.send(envelope())
    assert info.value.kind == "rejected"
    assert f"could not add signer {CLIENT.email}" in info.value.detail
    assert "phone_number" in info.value.detail and "was deleted" in info.value.detail
    assert [r["status"] for r in fake.signature_requests.values()] == ["deleted"]


def test_cleanup_failure_says_what_is_left(fake, client):
    fake.fail_when("POST", r"/documents$", 400, {"type": "invalid_request", "detail": "file: corrupted PDF"})
    fake.fail_when("DELETE", r"^/signature_requests/", 503, times=3)
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    (request_id,) = fake.signature_requests
    assert info.value.kind == "rejected"
    assert "file: corrupted PDF [invalid_request]" in info.value.detail
    assert f"draft signature request {request_id} is still at Yousign" in info.value.detail
    assert fake.signature_requests[request_id]["status"] == "draft"


def test_lost_activation_answer_is_a_success_when_yousign_activated(fake, client):
    fake.delay_when("POST", r"/activate$", 0.8)
    result = client.send(envelope())
    assert len(fake.requests_to("POST", r"/activate$")) == 1
    assert fake.signature_requests[result.provider_ref]["status"] == "ongoing"
    assert [s.key for s in result.signers] == ["signer-1", "signer-2"]
    assert not fake.requests_to("DELETE", r".")


# --- our reference, provider failures, completion dates -------------------------------------------


def test_notifications_and_status_name_our_reference(fake, client):
    env = envelope()
    result = client.send(env)
    fake.sign(result.provider_ref, CLIENT.email)
    notes = delivered(fake, client)
    assert [n.event_type for n in notes] == ["signature_request.activated", "signer.notified", "signer.done",
                                             "signer.notified"]
    assert {n.reference for n in notes} == {env.reference} == {n.status.reference for n in notes}
    assert client.get_status(result.provider_ref).reference == env.reference


def test_events_of_a_draft_we_deleted_name_no_reference(fake, client):
    """The "deleted" event of a clean-up must not reach the request that is sent again."""
    fake.fail_when("POST", r"/documents$", 400, {"type": "invalid_request_error", "detail": "bad PDF"})
    with pytest.raises(ProviderError):
        client.send(envelope())
    (note,) = delivered(fake, client)
    assert note.event_type == "signature_request.deleted" and note.provider_ref
    assert note.payload["data"]["signature_request"]["external_id"] == envelope().reference
    assert note.reference == "" and note.status.reference == ""


def test_yousign_failing_a_signature_is_our_error_with_its_reason(fake, client):
    result = client.send(envelope())
    fake.sign(result.provider_ref, CLIENT.email)
    fake.fail_signature(result.provider_ref, SENDER.email)
    status = client.get_status(result.provider_ref)
    assert status.state == "error" and status.provider_state == "canceled"
    assert status.reason == ys.SIGNER_ERROR_REASON.format(who=SENDER.email)
    failed = next(s for s in status.signers if s.email == SENDER.email)
    assert failed.state == "pending" and failed.reason == status.reason
    assert signer_states(status)[CLIENT.email] == "signed"

    notes = delivered(fake, client)
    error_event, cancel_event = notes[-2:]
    assert (error_event.event_type, cancel_event.event_type) == ("signer.error", "signature_request.canceled")
    assert error_event.status.state == cancel_event.status.state == "error"
    assert error_event.status.reason == status.reason
    assert "internal error" in cancel_event.status.reason  # no signer details in that event
    assert cancel_event.status.completed_at == cancel_event.occurred_at


def test_a_signer_error_seen_before_the_cancellation_is_already_our_error(client):
    body = json.dumps({"event_id": "e-1", "event_name": "signer.error", "event_time": "1767225600",
                       "data": {"signature_request": {"id": "r-1", "status": "ongoing", "external_id": "ref-1",
                                                      "signers": [{"id": "s-1", "status": "error"}]},
                                "signer": {"id": "s-1", "status": "error",
                                           "info": {"email": "jan@client.example"}}}}).encode()
    (note,) = client.parse_webhook({}, body, {})
    assert note.status.state == "error" and "jan@client.example" in note.status.reason
    assert note.reference == "ref-1"
    assert note.status.completed_at == datetime.datetime(2026, 1, 1)


def test_a_failed_signer_does_not_override_an_outcome():
    done = {"id": "r", "status": "done",
            "signers": [{"id": "a", "status": "error"}, {"id": "b", "status": "signed"}]}
    assert ys.build_status("r", done).state == "signed"


def test_completion_date_of_a_signed_request(fake, client):
    result = client.send(envelope())
    assert client.get_status(result.provider_ref).completed_at is None
    fake.sign(result.provider_ref, CLIENT.email)
    assert client.get_status(result.provider_ref).completed_at is None
    assert not fake.requests_to("GET", r"/audit_trails$")  # only a done request has a completion date
    fake.sign(result.provider_ref, SENDER.email)
    last = fake.signature_requests[result.provider_ref]["signers"][-1]
    status = client.get_status(result.provider_ref)
    assert status.completed_at == last["signed_at"].replace(tzinfo=None, microsecond=0)
    (trail,) = fake.requests_to("GET", r"/audit_trails$")
    assert trail.path.endswith(f"/signers/{last['id']}/audit_trails")
    done = delivered(fake, client)[-1]
    assert done.event_type == "signature_request.done" and done.status.completed_at == done.occurred_at


def test_completion_date_is_a_detail_the_status_survives_without(fake, client):
    result = client.send(envelope())
    fake.sign(result.provider_ref, CLIENT.email)
    fake.sign(result.provider_ref, SENDER.email)
    fake.fail_next(500, times=3, on=("GET", r"/audit_trails$"))
    status = client.get_status(result.provider_ref)
    assert status.state == "signed" and status.completed_at is None


def test_completion_date_of_a_refusal_and_an_expiry(fake, client):
    refused = client.send(envelope())
    fake.decline(refused.provider_ref, CLIENT.email, "No")
    declined_at = fake.signature_requests[refused.provider_ref]["decline_information"]["declined_at"]
    assert client.get_status(refused.provider_ref).completed_at == ys.parse_datetime(declined_at)
    expired = client.send(envelope(reference="second-ref"))
    fake.expire(expired.provider_ref)
    assert client.get_status(expired.provider_ref).completed_at == datetime.datetime(2027, 1, 31, 23, 59, 59)


def test_no_api_key_or_signing_link_in_errors_or_logs(fake, client, caplog):
    """Error details and log lines of the failure paths carry ids and redacted URLs only."""
    caplog.set_level(logging.DEBUG)
    one_request = r"^/v3/signature_requests/[^/]+$"
    cases = (
        # activation answer lost, no read gets through: the "still at Yousign" message
        lambda: (fake.lose_response_next(on=("POST", r"/activate$")),
                 fake.fail_next(503, times=6, on=("GET", one_request))),
        lambda: fake.fail_next(502, on=("POST", r"/documents$")),  # the draft is deleted
        lambda: fake.lose_response_next(on=("POST", r"^/v3/signature_requests$")),  # a draft is left
    )
    errors = []
    for inject in cases:
        inject()
        with pytest.raises(ProviderError) as info:
            client.send(envelope())
        errors.append(info.value)
    assert not fake.faults
    ongoing = client.find_by_reference(envelope().reference)  # deletes the draft left behind
    fake.fail_next(404, on=("GET", r"/documents/download$"))
    with pytest.raises(ProviderError) as info:
        client.download_signed(ongoing.provider_ref)
    errors.append(info.value)

    links = [s["signature_link"] for r in fake.signature_requests.values() for s in r["signers"]
             if s["signature_link"]]
    assert links and all("?" in link for link in links)
    text = " ".join([str(e) for e in errors] + [r.getMessage() for r in caplog.records])
    assert "deleted a draft left behind" in text and "is still at Yousign" in text
    assert API_KEY not in text
    assert not any(link in text or link.split("?", 1)[1] in text for link in links)


# --- authentication and error bodies ------------------------------------------------------------------


def test_wrong_or_missing_api_key(fake):
    with pytest.raises(ProviderError) as info:
        make_client(fake, api_key="wrong").send(envelope())
    assert info.value.kind == "auth" and info.value.status_code == 401
    assert "API key" in info.value.detail and "[unauthorized]" in info.value.detail
    assert requests.get(fake.api_url + "/signature_requests/x", timeout=2).status_code == 401
    with pytest.raises(ProviderError) as info:
        make_client(fake, api_key="").get_status("x")
    assert info.value.kind == "config"


def test_unknown_request_is_not_found(fake, client):
    with pytest.raises(ProviderError) as info:
        client.get_status("0b1c6b8e-2a6c-4f1e-9c7c-1a2b3c4d5e6f")
    assert info.value.kind == "not_found" and "not found" in info.value.detail


# --- webhooks -----------------------------------------------------------------------------------------


def _one_event(fake, client):
    result = client.send(envelope())
    fake.flush_callbacks()
    _url, body, headers = fake.received[0]
    return result, body, headers


def test_webhook_hmac_good_wrong_missing_changed(fake, client):
    _result, body, headers = _one_event(fake, client)
    assert headers["x-yousign-signature-256"].startswith("sha256=")
    client.verify_webhook(headers, body, {})
    with pytest.raises(WebhookAuthError):
        make_client(fake, webhook_secret="f" * 32).verify_webhook(headers, body, {})
    with pytest.raises(WebhookAuthError):
        client.verify_webhook({k: v for k, v in headers.items() if k != "x-yousign-signature-256"}, body, {})
    with pytest.raises(WebhookAuthError):
        client.verify_webhook(headers, body.replace(b'"ongoing"', b'"done"', 1) + b" ", {})
    with pytest.raises(WebhookAuthError):
        client.verify_webhook({**headers, "x-yousign-signature-256": "sha256="}, body, {})
    with pytest.raises(WebhookAuthError):
        make_client(fake, webhook_secret=None).verify_webhook(headers, body, {})
    # secret rotation: either secret is accepted
    make_client(fake, webhook_secret=["f" * 32, SECRET]).verify_webhook(headers, body, {})


def test_webhook_malformed(client):
    for body in (b"not json", b"[1, 2]", b'{"event_name": "signer.done"}',
                 b'{"event_id": "e1", "event_name": "signer.done", "data": "x"}'):
        with pytest.raises(WebhookMalformed):
            client.parse_webhook({}, body, {})


def test_webhook_without_status_leaves_it_to_get_status(client):
    body = json.dumps({"event_id": "e-42", "event_name": "contact.created", "event_time": "1670855889",
                       "data": {"contact": {"id": "c"}}}).encode()
    (note,) = client.parse_webhook({}, body, {})
    assert note.dedup_key == "yousign:e-42" and note.status is None and note.provider_ref == ""
    assert note.occurred_at == datetime.datetime(2022, 12, 12, 14, 38, 9)


def test_register_webhook(fake, client):
    sub_id, secret = client.register_webhook("https://odoo.example.com/esign/webhook/yousign/2", SECRET)
    assert secret == SECRET and fake.subscriptions[sub_id]["secret_key"] == SECRET
    body = fake.requests_to("POST", r"^/webhooks$")[0].json()
    assert body["sandbox"] is True and body["auto_retry"] is True and body["enabled"] is True
    assert "signature_request.done" in body["subscribed_events"]
    generated_id, generated = client.register_webhook("https://odoo.example.com/other")
    assert len(generated) == 32 and fake.subscriptions[generated_id]["secret_key"] == generated
    with pytest.raises(ProviderError) as info:
        client.register_webhook("http://odoo.example.com/insecure")
    assert info.value.kind == "rejected" and "https" in info.value.detail
    with pytest.raises(ProviderError) as info:
        client.register_webhook("https://odoo.example.com/x", "short")
    assert info.value.kind == "config"
    assert len(YousignClient.new_webhook_secret()) == 32


# --- spec validation is real --------------------------------------------------------------------------


@needs_spec
def test_fake_rejects_bodies_that_violate_the_spec(fake):
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    # Passes the fake's hand-written checks, but interval_in_days must be 1, 2, 7 or 14.
    bad = {"name": "x", "delivery_mode": "email", "reminder_settings": {"interval_in_days": 3, "max_occurrences": 1}}
    answer = requests.post(fake.api_url + "/signature_requests", data=json.dumps(bad), headers=headers, timeout=5)
    assert answer.status_code == 400
    assert set(answer.json()) == {"type", "detail"} and "interval_in_days" in answer.json()["detail"]
    assert not fake.signature_requests
    good = requests.post(fake.api_url + "/signature_requests", headers=headers, timeout=5,
                         data=json.dumps({"name": "x", "delivery_mode": "email"}))
    assert good.status_code == 201
    request_id = good.json()["id"]
    # A name the spec's Latin-script pattern refuses (why the client cleans names).
    signer = {"info": {"first_name": "Jan.", "last_name": "Kowalski", "email": "jan@example.com", "locale": "pl"},
              "signature_level": "electronic_signature", "signature_authentication_mode": "otp_email"}
    answer = requests.post(f"{fake.api_url}/signature_requests/{request_id}/signers", data=json.dumps(signer),
                           headers=headers, timeout=5)
    assert answer.status_code == 400 and "first_name" in answer.json()["detail"]
    # Path parameters too: the id must be a UUID.
    answer = requests.post(f"{fake.api_url}/signature_requests/not-a-uuid/activate", headers=headers, timeout=5)
    assert answer.status_code == 400
    assert len(fake.spec_rejections) == 3
    fake.spec_rejections.clear()


@needs_spec
def test_status_table_covers_the_specs_enums():
    import json as _json

    with open(SPEC, encoding="utf-8") as handle:
        schemas = _json.load(handle)["components"]["schemas"]
    assert set(schemas["SignatureRequestStatus"]["enum"]) == set(ys.STATUS_MAP["signature_request"])
    assert set(schemas["Signer"]["properties"]["status"]["enum"]) == set(ys.STATUS_MAP["signer"])
    assert set(schemas["post_signature_requests_signatureRequestId_cancel_request"]["properties"]["reason"]["enum"]) \
        == set(ys.CANCEL_REASONS)


def test_fake_without_spec_still_enforces_its_own_rules():
    with FakeYousign(api_key=API_KEY, spec_path=None) as server:
        server.callback_sink = lambda url, body, headers: 200
        client = make_client(server)
        assert server.openapi is None
        result = client.send(envelope())
        server.sign(result.provider_ref, CLIENT.email)
        server.sign(result.provider_ref, SENDER.email)
        assert client.get_status(result.provider_ref).state == "signed"
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        answer = requests.post(server.api_url + "/signature_requests", data=json.dumps({"name": "x"}),
                               headers=headers, timeout=5)
        assert answer.status_code == 400 and "delivery_mode" in answer.json()["detail"]
        # state rules: no signers after activation, no activation without document and signers
        answer = requests.post(f"{server.api_url}/signature_requests/{result.provider_ref}/signers",
                               data=json.dumps({"info": {}}), headers=headers, timeout=5)
        assert answer.status_code == 400 and "draft" in answer.json()["detail"]
        empty = requests.post(server.api_url + "/signature_requests", headers=headers, timeout=5,
                              data=json.dumps({"name": "x", "delivery_mode": "email"})).json()
        answer = requests.post(f"{server.api_url}/signature_requests/{empty['id']}/activate", headers=headers,
                               timeout=5)
        assert answer.status_code == 400 and "signable document" in answer.json()["detail"]


def test_status_mapping_helpers():
    assert ys.map_request_state("DONE") == "signed"
    assert ys.map_request_state("something_new") == ys.UNKNOWN_REQUEST_STATE == "sent"
    assert ys.map_signer_state("consent_given") == "pending"
    assert ys.map_signer_state("brand_new") == "waiting"
    assert ys.clean_external_id("SO/2026/001") == "SO-2026-001"
    assert ys.locale_for("pl_PL") == "pl" and ys.locale_for("cs_CZ") == "en"
