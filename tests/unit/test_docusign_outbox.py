"""DocuSign and the outbox: our reference at DocuSign, finding the envelope again, ``outcome_unknown``.

Everything runs over real HTTP against the strict fake; faults are injected on the exact call
(``on=(METHOD, path)``) so each test says which step failed.
"""
import datetime
import logging
import socket
import time

import pytest
import requests

from esign_connector.api import docusign as ds
from esign_connector.api.base import ProviderError
from esign_connector.tests.fakes.docusign import SwaggerBodyValidator

# Shared fixtures and helpers of the DocuSign client suite (one fake per module).
from test_docusign import (SECRET, SPEC, _clear_caches, fake, fake_server, make_client,  # noqa: F401
                           make_envelope, private_pem, sleeps, warm_up)

ENVELOPES = ("POST", r"/envelopes$")
LISTING = ("GET", r"/envelopes$")
TOKEN = ("POST", r"/oauth/token$")
USERINFO = ("GET", r"/oauth/userinfo$")


def rest(fake, path):
    return f"{fake.rest_url}/v2.1/accounts/{fake.account_id}{path}"


def bearer(client):
    return {"Authorization": f"Bearer {client._token()}"}


def post_draft(fake, client, envelope):
    """An envelope DocuSign created but never sent (``status: created``), made through the API."""
    body = client.build_envelope_definition(envelope)
    body["status"] = "created"
    response = requests.post(rest(fake, "/envelopes"), json=body, headers=bearer(client), timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["envelopeId"]


def send_error(client, envelope=None):
    with pytest.raises(ProviderError) as info:
        client.send(envelope or make_envelope())
    return info.value


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- 1. our reference at DocuSign


def test_reference_is_stored_and_shown_to_nobody(fake, make_client):
    envelope_id = make_client().send(make_envelope(reference="4f2a9c0e" * 4)).provider_ref
    fields = fake.envelopes[envelope_id]["customFields"]["textCustomFields"]
    assert fields == [{"name": ds.REFERENCE_FIELD, "value": "4f2a9c0e" * 4, "show": "false",
                       "required": "false"}]


def test_unusable_reference_is_refused_before_calling(fake, make_client):
    client = make_client()
    too_long = send_error(client, make_envelope(reference="R" * (ds.REFERENCE_MAX + 1)))
    assert too_long.kind == "rejected" and "100 characters" in too_long.detail
    assert not too_long.outcome_unknown
    assert send_error(client, make_envelope(reference=" ")).kind == "config"
    assert not fake.requests_to(*ENVELOPES)
    # Exactly the maximum is fine.
    assert client.send(make_envelope(reference="R" * ds.REFERENCE_MAX)).provider_ref in fake.envelopes


@pytest.mark.parametrize("fields, words", [
    ([{"name": "esign_reference", "value": "x" * 101}], "exceeds 100"),
    ([{"name": "", "value": "x"}], "missing or repeated"),
    ([{"name": "a", "value": "1"}, {"name": "a", "value": "2"}], "missing or repeated"),
])
def test_fake_refuses_bad_text_custom_fields(fake, make_client, fields, words):
    client = make_client()
    body = client.build_envelope_definition(make_envelope())
    body["customFields"]["textCustomFields"] = fields
    response = requests.post(rest(fake, "/envelopes"), json=body, headers=bearer(client), timeout=5)
    assert response.status_code == 400 and words in response.json()["message"]
    assert not fake.envelopes


def test_status_read_asks_for_the_custom_fields(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    plain = requests.get(rest(fake, f"/envelopes/{envelope_id}"), headers=bearer(client), timeout=5).json()
    assert "customFields" not in plain and plain["customFieldsUri"]  # DocuSign's default answer
    assert client.get_status(envelope_id).reference == "SO/2026/0001"
    assert fake.requests_to("GET", envelope_id + "$")[-1].arg("include") == ds.STATUS_INCLUDE


# --------------------------------------------------------------------------- 2. find_by_reference


def test_lost_answer_then_lookup_adopts_the_envelope_without_sending_twice(fake, make_client):
    client = make_client()
    assert client.can_find_by_reference
    warm_up(client)
    fake.lose_response_next(on=ENVELOPES)
    error = send_error(client)
    assert error.outcome_unknown and error.kind == "unavailable"
    [envelope_id] = fake.envelopes  # DocuSign did create and send it
    found = make_client().find_by_reference("SO/2026/0001")
    assert found.provider_ref == envelope_id and not found.warnings
    assert {s.key: s.state for s in found.signers} == {"signer-1": "pending", "signer-2": "waiting"}
    assert {s.provider_ref for s in found.signers} == {"1", "2"}
    listing = fake.requests_to(*LISTING)[-1]
    assert listing.arg("custom_field") == "esign_reference=SO/2026/0001"
    assert listing.arg("include") == "custom_fields" and listing.arg("user_filter") == "sender"
    since = ds.parse_datetime(listing.arg("from_date"))
    lookback = datetime.datetime.utcnow() - since
    assert datetime.timedelta(days=ds.FIND_LOOKBACK_DAYS - 1) < lookback <= datetime.timedelta(
        days=ds.FIND_LOOKBACK_DAYS, seconds=5)
    assert len(fake.requests_to(*ENVELOPES)) == 1


def test_nothing_created_means_none_and_the_send_can_be_repeated(fake, make_client):
    client = make_client()
    warm_up(client)
    fake.fail_next(503, {"errorCode": "UNSPECIFIED_ERROR", "message": "busy"}, on=ENVELOPES)
    assert send_error(client).outcome_unknown
    assert not fake.envelopes
    assert client.find_by_reference("SO/2026/0001") is None
    assert client.send(make_envelope()).provider_ref in fake.envelopes and len(fake.envelopes) == 1


def test_timeout_then_lookup_finds_what_docusign_made_meanwhile(fake, make_client):
    client = make_client()
    warm_up(client)
    fake.delay_next(1.0, on=ENVELOPES)
    error = send_error(client)
    assert (error.kind, error.outcome_unknown) == ("timeout", True)
    deadline = time.time() + 5
    while not fake.envelopes and time.time() < deadline:  # the fake finishes the slow request
        time.sleep(0.05)
    assert client.find_by_reference("SO/2026/0001").provider_ref in fake.envelopes


def test_old_draft_is_ignored_young_draft_cannot_be_judged_yet(fake, make_client, caplog):
    client = make_client()
    draft = post_draft(fake, client, make_envelope())
    with pytest.raises(ProviderError) as info:
        client.find_by_reference("SO/2026/0001")
    error = info.value
    assert error.kind == "unavailable" and error.transient and draft in error.detail
    assert 0 < error.retry_after <= ds.DRAFT_SETTLE_SECONDS
    fake.backdate(draft, ds.DRAFT_SETTLE_SECONDS + 1)
    with caplog.at_level(logging.INFO, logger=ds.__name__):
        assert client.find_by_reference("SO/2026/0001") is None
    assert draft in caplog.text and "never went out" in caplog.text
    assert fake.envelopes[draft]["status"] == "created"  # no call deletes a draft: left alone


def test_deleted_draft_is_ignored_but_a_deleted_sent_envelope_counts(fake, make_client):
    client = make_client()
    draft = post_draft(fake, client, make_envelope())
    fake.delete(draft)
    assert client.find_by_reference("SO/2026/0001") is None
    sent = client.send(make_envelope()).provider_ref
    client.cancel(sent, "wrong contract")
    fake.delete(sent)
    assert client.find_by_reference("SO/2026/0001").provider_ref == sent


@pytest.mark.parametrize("finish", ["void", "decline", "complete"])
def test_an_envelope_that_went_on_is_still_found(fake, make_client, finish):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    if finish == "void":
        client.cancel(envelope_id)
    elif finish == "decline":
        fake.decline(envelope_id, "carla@client.example")
    else:
        fake.sign(envelope_id, "carla@client.example")
        fake.sign(envelope_id, "sales@acme.example")
    assert client.find_by_reference("SO/2026/0001").provider_ref == envelope_id


def test_only_the_exact_reference_counts_even_when_docusign_matches_loosely(fake, make_client):
    fake.custom_field_match = "contains"
    client = make_client()
    near_miss = client.send(make_envelope(reference="SO/2026/00012")).provider_ref
    assert client.find_by_reference("SO/2026/0001") is None
    listing = requests.get(rest(fake, "/envelopes"), headers=bearer(client), timeout=5, params={
        "from_date": "2020-01-01T00:00Z", "custom_field": "esign_reference=SO/2026/0001",
        "include": "custom_fields"}).json()
    assert [e["envelopeId"] for e in listing["envelopes"]] == [near_miss]  # DocuSign served it


def test_only_envelopes_this_user_sent_count(fake, make_client):
    # The representative sends an envelope with the same reference, the salesperson signing it.
    make_client(user_id=fake.representative).send(make_envelope())
    assert make_client().find_by_reference("SO/2026/0001") is None
    assert make_client(user_id=fake.representative).find_by_reference("SO/2026/0001")


def test_envelopes_older_than_the_lookback_are_not_seen(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    fake.backdate(envelope_id, (ds.FIND_LOOKBACK_DAYS + 1) * 86400)
    assert client.find_by_reference("SO/2026/0001") is None
    fake.backdate(envelope_id, -2 * 86400)
    assert client.find_by_reference("SO/2026/0001").provider_ref == envelope_id


def test_several_started_envelopes_give_the_latest_with_a_warning_across_pages(fake, make_client,
                                                                               monkeypatch):
    monkeypatch.setattr(ds, "FIND_PAGE_SIZE", 1)
    client = make_client()
    first, second, third = (client.send(make_envelope()).provider_ref for _i in range(3))
    fake.backdate(first, 120)
    fake.backdate(second, 60)
    found = client.find_by_reference("SO/2026/0001")
    assert found.provider_ref == third
    [warning] = found.warnings
    assert "3 envelopes" in warning and first in warning and second in warning
    assert [r.arg("start_position") for r in fake.requests_to(*LISTING)] == ["0", "1", "2"]
    monkeypatch.setattr(ds, "FIND_MAX_PAGES", 2)
    with pytest.raises(ProviderError) as info:
        client.find_by_reference("SO/2026/0001")
    assert info.value.kind == "protocol" and "cannot tell" in info.value.detail


def test_lookup_raises_when_docusign_cannot_tell(fake, make_client):
    client = make_client()
    envelope_id = client.send(make_envelope()).provider_ref
    fake.fail_next(503, {"errorCode": "UNSPECIFIED_ERROR", "message": "down"}, times=3, on=LISTING)
    with pytest.raises(ProviderError) as info:
        client.find_by_reference("SO/2026/0001")
    assert info.value.kind == "unavailable" and info.value.transient
    # An answer that lists envelopes without their custom fields (include ignored) proves nothing.
    fake.fail_next(200, {"resultSetSize": "1", "totalSetSize": "1", "envelopes": [
        {"envelopeId": envelope_id, "status": "sent"}]}, on=LISTING)
    with pytest.raises(ProviderError) as info:
        client.find_by_reference("SO/2026/0001")
    assert info.value.kind == "protocol" and envelope_id in info.value.detail
    fake.fail_next(200, {"unexpected": True}, on=LISTING)
    with pytest.raises(ProviderError) as info:
        client.find_by_reference("SO/2026/0001")
    assert info.value.kind == "protocol"
    with pytest.raises(ProviderError) as info:
        client.find_by_reference("")
    assert info.value.kind == "config"


@pytest.mark.parametrize("params, words", [
    ({}, "from_date, envelope_ids or transaction_ids"),
    ({"from_date": "yesterday"}, "not a valid date"),
    ({"from_date": "2026-01-01T00:00Z", "custom_field": "esign_reference"}, "custom_field must be"),
    ({"from_date": "2026-01-01T00:00Z", "status": "sent,lost"}, "lost"),
    ({"from_date": "2026-01-01T00:00Z", "user_filter": "me"}, "user_filter"),
    ({"from_date": "2026-01-01T00:00Z", "include": "custom_fields,secrets"}, "secrets"),
    ({"from_date": "2026-01-01T00:00Z", "count": "0"}, "count"),
])
def test_fake_listing_refuses_what_the_spec_does_not_allow(fake, make_client, params, words):
    response = requests.get(rest(fake, "/envelopes"), headers=bearer(make_client()), params=params, timeout=5)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "INVALID_REQUEST_PARAMETER" and words in response.json()["message"]


def test_fake_listing_filters_and_answers_per_the_spec(fake, make_client):
    client = make_client()
    sent = client.send(make_envelope()).provider_ref
    other = client.send(make_envelope(reference="SO/2026/0002")).provider_ref

    def listing(**params):
        response = requests.get(rest(fake, "/envelopes"), headers=bearer(client), params=params, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    everything = listing(from_date="2026-01-01T00:00:00+02:00")
    assert [e["envelopeId"] for e in everything["envelopes"]] == [sent, other]
    assert "customFields" not in everything["envelopes"][0]
    assert listing(envelope_ids=other)["envelopes"][0]["envelopeId"] == other
    empty = listing(from_date=(datetime.datetime.utcnow() + datetime.timedelta(hours=1)).isoformat() + "Z")
    assert empty["resultSetSize"] == "0" and "envelopes" not in empty
    assert listing(from_date="2026-01-01T00:00Z", status="completed")["totalSetSize"] == "0"
    one = listing(from_date="2026-01-01T00:00Z", custom_field="esign_reference=SO/2026/0002",
                  include="custom_fields")
    assert [e["envelopeId"] for e in one["envelopes"]] == [other]
    assert ds.envelope_reference(one["envelopes"][0]) == "SO/2026/0002"
    if SPEC is None:
        pytest.skip("DocuSign swagger not found under shared/providers/docusign; answer shape not checked")
    validator = SwaggerBodyValidator(SPEC)
    assert validator.errors("envelopesInformation", one) == []


# --------------------------------------------------------------------------- 3. outcome_unknown of send()


@pytest.mark.parametrize("fault", ["token 503", "token lost", "token timeout", "userinfo 503", "consent"])
def test_failures_before_the_envelope_post_promise_nothing_was_sent(fake, make_client, fault):
    inject, kind = {
        "token 503": (lambda: fake.fail_next(503, times=3, on=TOKEN), "unavailable"),
        "token lost": (lambda: fake.lose_response_next(times=3, on=TOKEN), "unavailable"),
        "token timeout": (lambda: fake.delay_next(0.8, times=3, on=TOKEN), "timeout"),
        "userinfo 503": (lambda: fake.fail_next(503, times=3, on=USERINFO), "unavailable"),
        "consent": (lambda: fake.users[fake.salesperson].update(consented=False), "auth"),
    }[fault]
    inject()
    error = send_error(make_client())
    assert (error.kind, error.outcome_unknown) == (kind, False)
    assert "unknown whether" not in error.detail
    assert not fake.requests_to(*ENVELOPES) and not fake.envelopes
    if fault == "token timeout":
        time.sleep(0.4)  # let the fake finish the slow token requests before the next test


@pytest.mark.parametrize("fault, kind", [
    (lambda fake: fake.lose_response_next(on=ENVELOPES), "unavailable"),
    (lambda fake: fake.fail_next(500, {"errorCode": "UNSPECIFIED_ERROR", "message": "boom"}, on=ENVELOPES),
     "unavailable"),
    (lambda fake: fake.fail_next(201, b"<html>proxy</html>", on=ENVELOPES), "protocol"),
    (lambda fake: fake.fail_next(201, {"status": "sent"}, on=ENVELOPES), "protocol"),
], ids=["lost answer", "500", "201 not JSON", "201 without id"])
def test_envelope_post_that_may_have_acted_says_so(fake, make_client, fault, kind):
    client = make_client()
    warm_up(client)
    fault(fake)
    error = send_error(client)
    assert (error.kind, error.outcome_unknown) == (kind, True)
    assert len(fake.requests_to(*ENVELOPES)) == 1  # never re-sent blindly


@pytest.mark.parametrize("fault, kind", [
    (lambda fake: fake.fail_next(400, {"errorCode": "INVALID_REQUEST_BODY", "message": "no"}, on=ENVELOPES),
     "rejected"),
    (lambda fake: fake.fail_next(429, {"errorCode": "HOURLY_APIINVOCATION_LIMIT_EXCEEDED", "message": "wait"},
                                 times=3, on=ENVELOPES), "rate_limited"),
    (lambda fake: fake.fail_next(401, times=2, on=ENVELOPES), "auth"),
], ids=["400", "429", "401 twice"])
def test_envelope_post_refused_promises_nothing_was_sent(fake, make_client, fault, kind):
    client = make_client()
    warm_up(client)
    fault(fake)
    error = send_error(client)
    assert (error.kind, error.outcome_unknown) == (kind, False)
    assert not fake.envelopes


def test_refused_connection_on_the_envelope_post_promises_nothing_was_sent(fake, make_client):
    client = make_client(account_id=fake.account_id, base_url=f"http://127.0.0.1:{closed_port()}/restapi")
    error = send_error(client)
    assert (error.kind, error.outcome_unknown) == ("unavailable", False)
    assert fake.token_requests == 1 and not fake.envelopes


# --------------------------------------------------------------------------- 6. nothing secret in messages


def test_no_token_key_or_secret_in_errors_or_logs(fake, make_client, private_pem, caplog):
    client = make_client()
    errors = []
    with caplog.at_level(logging.DEBUG, logger="esign_connector"):
        warm_up(client)
        fake.lose_response_next(on=ENVELOPES)
        errors.append(send_error(client))
        fake.fail_next(503, times=3, on=LISTING)
        with pytest.raises(ProviderError) as info:
            client.find_by_reference("SO/2026/0001")
        errors.append(info.value)
        post_draft(fake, client, make_envelope(reference="SO/2026/0009"))
        with pytest.raises(ProviderError) as info:
            client.find_by_reference("SO/2026/0009")
        errors.append(info.value)
        issued = list(fake.tokens)
        fake.expire_tokens()
        fake.token_lifetime = -1
        with pytest.raises(ProviderError) as info:
            client.get_status("x")
        errors.append(info.value)
    assert [(e.kind, e.outcome_unknown) for e in errors] == [
        ("unavailable", True), ("unavailable", False), ("unavailable", False), ("auth", False)]
    text = "\n".join([str(e) for e in errors] + [r.getMessage() for r in caplog.records])
    secrets = issued + list(fake.tokens) + [SECRET, private_pem.splitlines()[1], "eyJ"]  # "eyJ": any JWT
    assert text.count("DocuSign") >= len(errors)
    assert not [s for s in secrets if s in text]
    assert "custom_field" not in text and "from_date" not in text  # the listing's query string
