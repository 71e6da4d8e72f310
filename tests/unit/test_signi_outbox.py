"""What the outbox needs from SigniClient, against FakeSigni over real HTTP: our reference travels
with the contract and comes back in notifications, a failed send says truthfully whether Signi may
have created the contract, and the client admits that it cannot look a contract up by reference."""
import json
import socket

import pytest
from test_signi import CLIENT_EMAIL, MODES, deliver, make_client, make_envelope, query_of, running_fake

from esign_connector.api import callbacks, signi
from esign_connector.api.base import ProviderError

CREATE = ("POST", r"/contract/$")


@pytest.fixture
def fake():
    with running_fake() as srv:
        yield srv


def created_contracts(fake):
    return [c for c in fake.contracts.values() if not c.get("deleted")]


# ------------------------------------------------------------------ our reference


def test_reference_is_the_contract_number_and_stored(fake):
    client = make_client(fake)
    ref = client.send(make_envelope(reference="REQ-0042")).provider_ref
    [data] = fake.create_requests()
    assert data["number"] == "REQ-0042"
    assert fake.contract(ref)["number"] == "REQ-0042"
    assert {query_of(h["url"])["ref"] for h in data["webhooks"]} == {"REQ-0042"}


@pytest.mark.parametrize("outcome", ["completed", "rejected", "expired"])
def test_every_notification_names_our_reference(fake, outcome):
    """Signi's callback body has no field of ours; the URL we registered carries it back."""
    client = make_client(fake)
    ref = client.send(make_envelope(reference="REQ/2025 & co")).provider_ref
    if outcome == "completed":
        fake.sign(ref, CLIENT_EMAIL)
        fake.sign(ref, MODES["central"]["email"])
    elif outcome == "rejected":
        fake.reject(ref, CLIENT_EMAIL, "ne")
    else:
        fake.expire(ref)
    [note] = deliver(fake, client)
    assert (note.event_type, note.provider_ref, note.reference) == (outcome, ref, "REQ/2025 & co")
    assert "REQ/2025" not in json.dumps(note.payload)  # it came from the URL, not from the body


def test_status_echoes_reference_only_where_the_detail_has_it(fake):
    client = make_client(fake)
    ref = client.send(make_envelope(reference="REQ-0043")).provider_ref
    assert client.get_status(ref).reference == ""  # the proxy's detail shows no number
    fake.detail_includes_number = True  # should Signi's own detail echo it
    assert client.get_status(ref).reference == "REQ-0043"


def test_overlong_callback_reference_is_not_ours():
    body = json.dumps({"contract_id": 5, "state": "expired"}).encode()
    query = {"token": "t" * 43, "event": "expired", "ref": "x" * (callbacks.REFERENCE_MAX_LENGTH + 1)}
    [note] = signi.SigniClient().parse_webhook({}, body, query)
    assert note.reference == ""


def test_cannot_find_by_reference(fake):
    """No Signi call lists or searches contracts: the outbox must not believe "none found"."""
    client = make_client(fake)
    client.send(make_envelope(reference="REQ-0044"))
    assert client.can_find_by_reference is False
    with pytest.raises(ProviderError) as err:
        client.find_by_reference("REQ-0044")
    assert err.value.kind == "config" and not err.value.transient
    assert len(fake.requests) == 1  # only the create: the look-up asked nothing


# ------------------------------------------------------------------ outcome_unknown of send()


def test_lost_answer_may_have_created_the_contract(fake):
    client = make_client(fake)
    fake.lose_response_next(on=CREATE)  # Signi creates and e-mails, then the answer is lost
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope(reference="REQ-0050"))
    assert err.value.outcome_unknown is True and err.value.kind == "unavailable"
    assert "unknown whether" in err.value.detail and "REQ-0050" in err.value.detail
    assert len(fake.requests_to(*CREATE)) == 1  # never re-sent by the client
    [contract] = created_contracts(fake)
    assert contract["number"] == "REQ-0050"  # what a person finds in the workspace


def test_refused_connection_left_nothing(fake):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(fake, base_url=f"http://127.0.0.1:{port}/api/v1")
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope())
    assert (err.value.kind, err.value.outcome_unknown) == ("unavailable", False)
    assert "unknown whether" not in err.value.detail


@pytest.mark.parametrize("fault, kind", [
    (lambda fake: fake.fail_next(500, on=CREATE), "unavailable"),
    (lambda fake: fake.fail_next(502, on=CREATE), "unavailable"),
    (lambda fake: fake.delay_next(0.8, on=CREATE), "timeout"),
    (lambda fake: fake.drop_next(on=CREATE), "unavailable"),  # closed after connecting: can't tell
    (lambda fake: fake.fail_next(200, body={"state": "pending"}, on=CREATE), "protocol"),  # no id
    (lambda fake: fake.fail_next(201, body=b"<html>ok</html>", headers={"Content-Type": "text/html"},
                                 on=CREATE), "protocol"),
])
def test_send_outcome_unknown(fake, fault, kind):
    client = make_client(fake, timeout=(1, 0.3))
    fault(fake)
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope())
    assert (err.value.kind, err.value.outcome_unknown) == (kind, True)
    assert len(fake.requests_to(*CREATE)) <= 1  # a create that may have arrived is never repeated


@pytest.mark.parametrize("fault, kind", [
    (lambda fake: fake.fail_next(422, body={"message": "The given data was invalid."}, on=CREATE), "rejected"),
    (lambda fake: fake.fail_next(401, on=CREATE), "auth"),
    (lambda fake: fake.fail_next(429, times=3, on=CREATE), "rate_limited"),  # 1 try + 2 retries
])
def test_send_refused_by_signi_left_nothing(fake, fault, kind):
    client = make_client(fake)
    fault(fake)
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope())
    assert (err.value.kind, err.value.outcome_unknown) == (kind, False)
    assert created_contracts(fake) == [] and "unknown whether" not in err.value.detail


def test_fake_refuses_an_overlong_number(fake):
    client = make_client(fake)
    with pytest.raises(ProviderError) as err:
        client.send(make_envelope(reference="R" * (fake.number_max_length + 1)))
    assert (err.value.kind, err.value.status_code, err.value.outcome_unknown) == ("rejected", 422, False)
    assert "number" in err.value.detail and created_contracts(fake) == []


def test_checks_before_the_call_promise_nothing_was_sent(fake):
    with pytest.raises(ProviderError) as err:
        make_client(fake, proposer_email="").send(make_envelope())
    assert (err.value.kind, err.value.outcome_unknown) == ("config", False) and fake.requests == []
