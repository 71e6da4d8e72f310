"""The shared transport: what is retried, what is not, and how failures are reported."""
import pytest

from esign_connector.api.base import ProviderError
from esign_connector.api.http import HttpTransport
from esign_connector.tests.fakes.base import FakeProviderServer, json_response


class EchoServer(FakeProviderServer):
    name = "echo"

    def register_routes(self):
        self.route("GET", "/things/{id}", lambda r: json_response(200, {"id": r.params["id"]}))
        self.route("POST", "/things", lambda r: json_response(201, {"created": r.json()}))
        self.route("POST", "/bad", lambda r: json_response(422, {"message": "title is required",
                                                                 "errorCode": "MISSING_TITLE"}))


@pytest.fixture
def server():
    with EchoServer() as srv:
        yield srv


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def transport(server, sleeps):
    return HttpTransport(server.base_url, "Echo", timeout=(1, 0.5), max_retries=2, sleep=sleeps.append)


def test_get_is_retried_after_5xx_then_succeeds(server, transport, sleeps):
    server.fail_next(503, times=2)
    assert transport.json("GET", "/things/7") == {"id": "7"}
    assert len(server.requests_to("GET", "/things/7")) == 3
    assert sleeps == [0.5, 1.0]


def test_get_gives_up_after_max_retries(server, transport):
    server.fail_next(502, times=3)
    with pytest.raises(ProviderError) as info:
        transport.json("GET", "/things/7")
    assert info.value.kind == "unavailable" and info.value.status_code == 502
    assert info.value.transient


def test_post_is_not_retried_after_5xx(server, transport):
    server.fail_next(500)
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things", json={"a": 1})
    assert info.value.kind == "unavailable"
    assert len(server.requests_to("POST", "/things")) == 1


def test_post_is_retried_after_429_honouring_retry_after(server, transport, sleeps):
    server.fail_next(429, body={"message": "slow down"}, headers={"Retry-After": "3"})
    assert transport.json("POST", "/things", json={"a": 1}) == {"created": {"a": 1}}
    assert sleeps == [3.0]
    assert len(server.requests_to("POST", "/things")) == 2


def test_retry_after_is_capped(server, sleeps):
    transport = HttpTransport(server.base_url, "Echo", max_retries=1, max_wait=2, sleep=sleeps.append)
    server.fail_next(429, headers={"Retry-After": "3600"})
    transport.json("GET", "/things/1")
    assert sleeps == [2]


def test_post_timeout_is_reported_not_retried(server, transport):
    server.delay_next(1.5)
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things", json={})
    assert info.value.kind == "timeout"
    assert len(server.requests_to("POST", "/things")) == 1


def test_get_timeout_is_retried(server, transport):
    server.delay_next(1.5)
    assert transport.json("GET", "/things/2") == {"id": "2"}


def test_connection_refused_is_unavailable():
    transport = HttpTransport("http://127.0.0.1:9", "Echo", max_retries=1, sleep=lambda s: None)
    with pytest.raises(ProviderError) as info:
        transport.json("GET", "/x")
    assert info.value.kind == "unavailable"


def test_dropped_connection_on_post_is_not_retried(server, transport):
    server.drop_next()
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things", json={})
    assert info.value.kind == "unavailable"


def test_error_body_message_and_code_are_kept(server, transport):
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/bad", json={})
    err = info.value
    assert err.kind == "rejected" and err.status_code == 422
    assert err.detail == "title is required [MISSING_TITLE]"
    assert err.body == {"message": "title is required", "errorCode": "MISSING_TITLE"}


def test_missing_base_url_is_a_config_error():
    with pytest.raises(ProviderError) as info:
        HttpTransport("", "Echo")
    assert info.value.kind == "config"


def test_unknown_route_is_not_found(transport):
    with pytest.raises(ProviderError) as info:
        transport.json("GET", "/nothing")
    assert info.value.kind == "not_found"


# --- what the outbox needs to know: may the provider have acted? ---------------------------------


def test_post_timeout_outcome_is_unknown(server, transport):
    server.delay_next(1.5)
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things", json={})
    assert info.value.outcome_unknown, "the provider received the POST: it may have acted"


def test_post_5xx_outcome_is_unknown_but_4xx_and_429_are_not(server, transport):
    server.fail_next(502)
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things", json={})
    assert info.value.outcome_unknown
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/bad", json={})
    assert not info.value.outcome_unknown
    server.fail_next(429, times=3)
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things", json={})
    assert info.value.kind == "rate_limited" and not info.value.outcome_unknown


def test_post_whose_answer_is_lost_after_acting_is_unknown_and_not_retried(server, transport):
    server.lose_response_next(on=("POST", "/things$"))
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things", json={"a": 1})
    assert info.value.kind == "unavailable" and info.value.outcome_unknown
    assert len(server.requests_to("POST", "/things")) == 1, "a POST that may have acted is never repeated"


def test_post_refused_before_connecting_is_retried_and_known_not_delivered(sleeps):
    transport = HttpTransport("http://127.0.0.1:9", "Echo", max_retries=2, sleep=sleeps.append)
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things", json={})
    assert info.value.kind == "unavailable"
    assert not info.value.outcome_unknown, "a refused connection never reached the provider"
    assert len(sleeps) == 2, "safe to retry: nothing was delivered"


def test_get_failures_never_leave_an_unknown_outcome(server, transport):
    server.fail_next(503, times=3)
    with pytest.raises(ProviderError) as info:
        transport.json("GET", "/things/1")
    assert not info.value.outcome_unknown


def test_unreadable_success_answer_to_a_post_is_unknown(server, transport):
    server.route("POST", "/garbled", lambda r: (201, b"{not json", {"Content-Type": "application/json"}))
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/garbled", json={})
    assert info.value.kind == "protocol" and info.value.outcome_unknown


def test_fault_targets_only_the_matching_call(server, transport):
    server.fail_next(503, on=("POST", "/things$"))
    assert transport.json("GET", "/things/3") == {"id": "3"}
    with pytest.raises(ProviderError):
        transport.json("POST", "/things", json={})


# --- nothing secret in messages --------------------------------------------------------------------


def test_error_details_never_carry_the_query_string(server, transport):
    server.delay_next(1.5)
    with pytest.raises(ProviderError) as info:
        transport.json("POST", "/things?token=s3cr3t&X-Amz-Signature=abc", json={})
    text = str(info.value)
    assert "s3cr3t" not in text and "abc" not in text
    assert "/things?…" in text


def test_redact_url_drops_query_fragment_and_credentials():
    from esign_connector.api.http import redact_url
    assert redact_url("https://user:pw@files.example.com/a/b.pdf?sig=1#x") == "https://files.example.com/a/b.pdf?…"
    assert redact_url("https://api.example.com/v1/things") == "https://api.example.com/v1/things"


def test_garbage_retry_after_falls_back_to_backoff(server, transport, sleeps):
    server.fail_next(429, headers={"Retry-After": "soon, maybe"})
    assert transport.json("GET", "/things/4") == {"id": "4"}
    assert sleeps == [0.5]
