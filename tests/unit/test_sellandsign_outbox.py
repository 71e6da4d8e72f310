"""What the outbox needs from SellAndSignClient, against FakeSellAndSign over real HTTP: whether a
failed send may have left a contract (``outcome_unknown``), warnings for a contract that is out but
not set to close, our reference at SELL&SIGN, and no secret in any message or log line."""
import logging
import socket
import traceback

import pytest

from esign_connector.api import sellandsign
from esign_connector.api.base import ProviderError
from test_sellandsign import (CALLBACK, CLIENT_EMAIL, MODES, TOKEN, deliver, fake,  # noqa: F401
                              make_client, make_envelope)

SEND = ("POST", r"/selling/do$")
AUTO_CLOSE = ("POST", r"/model/contract/update$")
J_TOKEN = MODES["central"]["token"]


def send_error(client, envelope=None):
    with pytest.raises(ProviderError) as err:
        client.send(envelope or make_envelope())
    return err.value


def closed_port():
    """A local port nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ outcome of a failed send


def test_lost_answer_may_have_created_the_contract(fake):
    fake.lose_response_next(on=SEND)
    error = send_error(make_client(fake))
    assert error.outcome_unknown is True and error.kind == "unavailable"
    assert len(fake.requests_to(*SEND)) == 1  # never sent twice
    [contract] = fake.contracts.values()  # SELL&SIGN did act
    assert contract["customer_number"] == "REQ-0042"
    assert "unknown whether" in error.detail and "customer number REQ-0042" in error.detail


@pytest.mark.parametrize("fault", ["timeout", "5xx"])
def test_timeout_and_5xx_may_have_created_the_contract(fake, fault):
    client = make_client(fake, timeout=(1, 0.3))
    if fault == "timeout":
        fake.delay_next(0.8, on=SEND)
    else:
        fake.fail_next(502, on=SEND)
    error = send_error(client)
    assert error.outcome_unknown is True and error.kind == ("timeout" if fault == "timeout" else "unavailable")
    assert len(fake.requests_to(*SEND)) == 1


def test_refused_connection_created_nothing():
    sleeps = []
    client = sellandsign.SellAndSignClient(base_url=f"http://127.0.0.1:{closed_port()}", j_token=J_TOKEN,
                                           vendor_email=MODES["central"]["email"], contract_definition_id=4321,
                                           timeout=(1, 1), max_retries=2, sleep=sleeps.append)
    error = send_error(client)
    assert (error.kind, error.outcome_unknown) == ("unavailable", False)
    assert "unknown whether" not in error.detail
    assert len(sleeps) == 2  # a POST that never connected is safe to try again


@pytest.mark.parametrize("status, kind", [(400, "rejected"), (401, "auth"), (429, "rate_limited")])
def test_refused_by_sellandsign_created_nothing(fake, status, kind):
    fake.fail_next(status, b"refused", {"Content-Type": "text/plain"}, times=3, on=SEND)
    error = send_error(make_client(fake))
    assert (error.kind, error.status_code, error.outcome_unknown) == (kind, status, False)
    assert fake.contracts == {}


@pytest.mark.parametrize("body, ctype", [(b"<html>OK</html>", "text/html"),
                                         (b'{"contract_id": -1, "result": "KO"}', "application/json")])
def test_answer_without_contract_id_may_have_created_it(fake, body, ctype):
    fake.fail_next(200, body, {"Content-Type": ctype}, on=SEND)
    error = send_error(make_client(fake))
    assert (error.kind, error.outcome_unknown) == ("protocol", True)
    assert "customer number REQ-0042" in error.detail


def test_definition_lookup_failure_is_before_any_contract(fake):
    fake.fail_next(503, times=3, on=("GET", r"getPreferenceForLicense"))
    error = send_error(make_client(fake, contract_definition_id=None))
    assert (error.kind, error.outcome_unknown) == ("unavailable", False)
    assert fake.requests_to(*SEND) == [] and fake.contracts == {}


# ------------------------------------------------------------------ auto-close: the contract is out


def test_auto_close_failure_is_told_to_the_user(fake, caplog):
    fake.fail_next(500, times=3, on=AUTO_CLOSE)
    with caplog.at_level(logging.WARNING, logger="esign_connector"):
        result = make_client(fake).send(make_envelope())
    assert fake.contract(result.provider_ref)["state"] == "open"  # sent all the same
    [warning] = result.warnings
    assert f"contract {result.provider_ref}" in warning and "HTTP 500" in warning
    assert "close (validate) the contract in SELL&SIGN" in warning
    assert J_TOKEN not in warning and TOKEN not in warning
    assert f"SELL&SIGN contract {result.provider_ref}: auto-close could not be set" in caplog.text


def test_auto_close_lost_answer_is_set_again(fake):
    fake.lose_response_next(on=AUTO_CLOSE)
    result = make_client(fake).send(make_envelope())
    assert result.warnings == ()
    assert fake.contract(result.provider_ref)["auto_close"] == 1
    assert len(fake.requests_to(*AUTO_CLOSE)) == 2


# ------------------------------------------------------------------ our reference at SELL&SIGN


def test_reference_travels_as_customer_number_property_and_callback(fake):
    client = make_client(fake)
    ref = client.send(make_envelope(reference="ESR-77")).provider_ref
    contract = fake.contract(ref)
    assert contract["customer_number"] == "ESR-77"
    assert contract["properties"]["internal_contract_id"] == "ESR-77"
    assert "ref=ESR-77" in contract["callback"]
    fake.sign(ref, CLIENT_EMAIL)
    [note] = deliver(fake, client)
    assert (note.provider_ref, note.reference) == (ref, "ESR-77")


def test_no_lookup_by_reference(fake):
    client = make_client(fake)
    client.send(make_envelope())
    assert client.can_find_by_reference is False
    before = len(fake.requests)
    with pytest.raises(ProviderError) as err:
        client.find_by_reference("REQ-0042")
    assert err.value.kind == "config" and len(fake.requests) == before


def test_empty_reference_refused_before_any_call(fake):
    error = send_error(make_client(fake), make_envelope(reference=" "))
    assert (error.kind, error.outcome_unknown) == ("rejected", False)
    assert fake.requests == []


# ------------------------------------------------------------------ no secret in messages or logs

SIGNED_LINK = "https://cloud.sellandsign.com/calinda/hub/selling/do?m=getSignedContract&sig=Zm9vYmFy"


def secret_free(text):
    return J_TOKEN not in text and TOKEN not in text and "sig=Zm9vYmFy" not in text \
        and "RH/Ygw-ceo" not in text and "RH%2FYgw-ceo" not in text


def failures(fake, client):
    """Every failing path of the client once; returns the errors raised."""
    errors = []
    echo = f"bad token {J_TOKEN}, callback {CALLBACK}, see {SIGNED_LINK}".encode()
    fake.fail_next(400, echo, {"Content-Type": "text/plain"}, on=SEND)
    fake.lose_response_next(on=SEND)
    fake.fail_next(500, {"message": echo.decode(), "url": SIGNED_LINK}, times=3, on=AUTO_CLOSE)
    for _attempt in range(2):
        with pytest.raises(ProviderError) as err:
            client.send(make_envelope())
        errors.append(err.value)
    ref = client.send(make_envelope()).provider_ref  # auto-close fails: warning logged
    fake.evidence_method = None
    assert client.download_evidence(ref) is None  # unknown method: warning logged
    fake.fail_next(503, echo, times=3, on=("GET", r"/contract/read$"))
    with pytest.raises(ProviderError) as err:
        client.get_status(ref)
    errors.append(err.value)
    return errors


def assert_secret_free(errors):
    for error in errors:
        assert secret_free(str(error)) and secret_free(error.detail) and secret_free(repr(error.body))
        assert secret_free("".join(traceback.format_exception(error)))


def test_token_in_header_reaches_no_message_nor_any_log(fake, caplog):
    with caplog.at_level(logging.DEBUG):  # every logger, urllib3's request lines included
        errors = failures(fake, make_client(fake))
    assert_secret_free(errors)
    assert "[hidden]" in errors[0].detail and "/calinda/hub/selling/do?…" in errors[0].detail
    assert "auto-close could not be set" in caplog.text and "no evidence file" in caplog.text
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # request lines were captured
    assert secret_free(caplog.text)


def test_token_in_query_reaches_no_message_nor_our_logs(fake, caplog, monkeypatch):
    monkeypatch.setattr(sellandsign, "TOKEN_IN_HEADER", False)
    with caplog.at_level(logging.DEBUG, logger="esign_connector"):
        errors = failures(fake, make_client(fake))
        # requests words a refused connection with the whole URL, query string included
        errors.append(send_error(make_client(fake, base_url=f"http://127.0.0.1:{closed_port()}")))
    assert fake.requests[0].arg("j_token") == J_TOKEN  # it did travel in the URL
    assert_secret_free(errors)
    ours = [r for r in caplog.records if r.name.startswith("esign_connector")]
    assert ours and all(secret_free(r.getMessage()) for r in ours)
