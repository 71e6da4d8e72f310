"""YousignClient and the outbox: our reference at Yousign, the look-up by it, and what a failed send
promises with ``outcome_unknown``. Real HTTP to FakeYousign (fixtures from ``test_yousign``)."""
import json

import pytest
import requests

from esign_connector.api import yousign as ys
from esign_connector.api.base import ProviderError, SendResult

from test_yousign import API_KEY, CLIENT, SENDER, client, envelope, fake  # noqa: F401 (fixtures)

REQUEST = r"^/v3/signature_requests/[^/]+$"  # base-level faults see the full path
CREATE = ("POST", r"^/v3/signature_requests$")
LIST = ("GET", r"^/v3/signature_requests$")
STEPS = {
    "upload": ("POST", r"/documents$"),
    "client signer": ("POST", r"/signers$"),
    "company signer": ("POST", r"/signers$"),
    "activate": ("POST", r"/activate$"),
}
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def inject(fake, step, fault):
    """Make ``step`` of a send fail with ``fault``: an HTTP status, or "lose" (Yousign acts, the answer
    is lost). The company signer is the second POST …/signers: a zero delay takes the first one."""
    on = STEPS[step]
    if step == "company signer":
        fake.delay_next(0, on=on)
    if fault == "lose":
        fake.lose_response_next(on=on)
    else:
        body = {"message": "slow down"} if fault == 429 else {"type": "invalid_request_error", "detail": "no"}
        fake.fail_next(fault, body, times=3 if fault == 429 else 1, on=on)


def live(fake):
    """Requests that are not gone for good at the fake, by status."""
    return sorted(r["status"] for r in fake.signature_requests.values() if not r.get("purged"))


def draft_via_api(fake, external_id, name="left behind"):
    """A draft created by someone else's (or an earlier) call, straight through the API."""
    answer = requests.post(fake.api_url + "/signature_requests", headers=HEADERS, timeout=5,
                           data=json.dumps({"name": name, "delivery_mode": "email", "external_id": external_id}))
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


# --- 1. our reference travels as external_id ---------------------------------------------------------


def test_send_stores_our_reference_as_external_id(fake, client):
    env = envelope(reference="a1b2c3d4e5f60718293a4b5c6d7e8f90")
    result = client.send(env)
    assert fake.requests_to("POST", r"^/signature_requests$")[0].json()["external_id"] == env.reference
    assert fake.signature_requests[result.provider_ref]["external_id"] == env.reference


def test_reference_yousign_cannot_keep_is_refused_before_any_call(fake, client):
    # An altered external_id would match no webhook and no look-up: refuse instead of rewriting it.
    for reference in ("SO/2026/001", "", "x" * 256):
        with pytest.raises(ProviderError) as info:
            client.send(envelope(reference=reference))
        assert info.value.kind == "config" and not info.value.outcome_unknown
        with pytest.raises(ProviderError):
            client.find_by_reference(reference)
    assert fake.requests == []


# --- 2. find_by_reference -------------------------------------------------------------------------------


def test_can_find_by_reference():
    assert ys.YousignClient.can_find_by_reference is True


def test_find_returns_the_activated_request_with_its_signers(fake, client):
    env = envelope()
    sent = client.send(env)
    client.send(envelope(reference="someone-else"))
    found = client.find_by_reference(env.reference)
    assert isinstance(found, SendResult) and found.provider_ref == sent.provider_ref
    assert [(s.provider_ref, s.email, s.state) for s in found.signers] == [
        (sent.signers[0].provider_ref, CLIENT.email, "pending"),
        (sent.signers[1].provider_ref, SENDER.email, "waiting")]
    (listing,) = fake.requests_to("GET", r"^/signature_requests$")
    assert listing.arg("external_id[eq]") == env.reference and listing.arg("limit") == "100"
    assert not fake.requests_to("DELETE", ".")


def test_find_returns_none_when_yousign_has_nothing(fake, client):
    client.send(envelope(reference="other-reference"))
    assert client.find_by_reference("5f1c2d3e4a5b6c7d8e9f00112233aabb") is None
    assert client.find_by_reference("other-referenc") is None  # eq, not a prefix


def test_find_deletes_a_draft_left_by_a_lost_creation_then_the_send_works(fake, client):
    fake.reject_duplicate_external_id = True  # even if Yousign kept external_id unique
    env = envelope()
    fake.lose_response_next(on=CREATE)
    with pytest.raises(ProviderError) as info:
        client.send(env)
    assert info.value.outcome_unknown and f"external_id {env.reference} may exist" in info.value.detail
    assert live(fake) == ["draft"]

    assert client.find_by_reference(env.reference) is None
    assert live(fake) == []  # deleted for good, not merely soft-deleted
    (delete,) = fake.requests_to("DELETE", r"^/signature_requests/[^/]+$")
    assert delete.arg("permanent_delete") == "true"

    result = client.send(env)
    assert client.find_by_reference(env.reference).provider_ref == result.provider_ref


def test_find_ignores_a_deleted_draft_but_not_a_finished_request_deleted_later(fake, client):
    env = envelope()
    stale = draft_via_api(fake, env.reference)
    requests.delete(f"{fake.api_url}/signature_requests/{stale}", headers=HEADERS, timeout=5)  # soft delete
    assert client.find_by_reference(env.reference) is None

    result = client.send(env)
    fake.sign(result.provider_ref, CLIENT.email)
    fake.sign(result.provider_ref, SENDER.email)
    answer = requests.delete(f"{fake.api_url}/signature_requests/{result.provider_ref}", headers=HEADERS,
                             timeout=5)
    assert answer.status_code == 204 and fake.signature_requests[result.provider_ref]["status"] == "deleted"
    found = client.find_by_reference(env.reference)
    assert found.provider_ref == result.provider_ref  # it was sent: sending again would duplicate it
    assert {s.state for s in found.signers} == {"signed"}


def test_find_pages_through_the_listing_and_cleans_every_draft(fake, client):
    fake.max_page_size = 1
    env = envelope()
    first = draft_via_api(fake, env.reference)
    result = client.send(env)
    second = draft_via_api(fake, env.reference)
    assert client.find_by_reference(env.reference).provider_ref == result.provider_ref
    listings = fake.requests_to("GET", r"^/signature_requests$")
    assert len(listings) == 3 and listings[0].arg("after") is None and listings[1].arg("after")
    assert fake.signature_requests[first]["purged"] and fake.signature_requests[second]["purged"]
    assert fake.signature_requests[result.provider_ref]["status"] == "ongoing"


def test_find_gives_up_on_an_endless_listing(fake, client, monkeypatch):
    fake.max_page_size = 1
    env = envelope()
    for _i in range(3):
        client.send(env)
    monkeypatch.setattr(ys, "LOOKUP_MAX_PAGES", 2)
    with pytest.raises(ProviderError) as info:
        client.find_by_reference(env.reference)
    assert info.value.kind == "protocol" and "cannot tell" in info.value.detail


def test_find_cannot_tell_when_the_listing_fails(fake, client):
    fake.fail_next(503, times=3, on=LIST)
    with pytest.raises(ProviderError) as info:
        client.find_by_reference("5f1c2d3e4a5b6c7d8e9f00112233aabb")
    assert info.value.kind == "unavailable" and info.value.transient


def test_find_cannot_tell_when_a_draft_cannot_be_deleted(fake, client):
    env = envelope()
    draft = draft_via_api(fake, env.reference)
    fake.fail_next(503, times=3, on=("DELETE", REQUEST))
    with pytest.raises(ProviderError) as info:
        client.find_by_reference(env.reference)
    assert info.value.transient and f"draft signature request {draft}" in info.value.detail
    assert fake.signature_requests[draft]["status"] == "draft"
    assert client.find_by_reference(env.reference) is None  # later, Yousign is back


def test_find_returns_a_draft_that_got_activated_meanwhile(fake, client):
    """A late activation wins the race with the clean-up: Yousign refuses to delete an ongoing
    request, and the look-up reports it instead of letting the outbox send again."""
    env = envelope()
    draft = draft_via_api(fake, env.reference)

    def activated_right_after_the_listing(request, _answer):
        if request.method == "GET" and fake.api_path(request) == "/signature_requests":
            fake.signature_requests[draft]["status"] = "ongoing"

    fake.after_answer = activated_right_after_the_listing
    found = client.find_by_reference(env.reference)
    assert found is not None and found.provider_ref == draft
    assert fake.signature_requests[draft]["status"] == "ongoing"
    assert fake.requests_to("DELETE", r"^/signature_requests/[^/]+$")  # tried, and refused


@pytest.mark.parametrize("query", [
    {"external_id": "x"},  # no operator
    {"external_id[in]": "x,y"},  # the spec allows eq only
    {"limit": "0"},
    {"after": "not-a-cursor"},
    {"externalid[eq]": "x"},  # not a filter of this endpoint
])
def test_fake_listing_refuses_what_yousign_would(fake, query):
    answer = requests.get(fake.api_url + "/signature_requests", params=query, headers=HEADERS, timeout=5)
    assert answer.status_code == 400 and set(answer.json()) == {"type", "detail"}
    fake.spec_rejections.clear()  # limit=0 is refused by the spec itself


# --- 3. outcome_unknown of a failed send ----------------------------------------------------------------


@pytest.mark.parametrize("fault, unknown", [(400, False), (429, False), (503, True), ("lose", True)])
def test_failed_creation(fake, client, fault, unknown):
    if fault == "lose":
        fake.lose_response_next(on=CREATE)
    else:
        fake.fail_next(fault, {"type": "invalid_request_error", "detail": "no"}, times=3 if fault == 429 else 1,
                       on=CREATE)
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    assert info.value.outcome_unknown is unknown
    assert live(fake) == (["draft"] if fault == "lose" else [])
    assert not fake.requests_to("POST", r"/activate$")


@pytest.mark.parametrize("fault", [400, 429, 503, "lose"])
@pytest.mark.parametrize("step", ["upload", "client signer", "company signer"])
def test_failure_before_activation_deletes_the_draft_and_promises_nothing_left(fake, client, step, fault):
    inject(fake, step, fault)
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    error = info.value
    assert error.outcome_unknown is False, error.detail
    assert "was deleted at Yousign" in error.detail
    assert live(fake) == [] and not fake.requests_to("POST", r"/activate$")


@pytest.mark.parametrize("fault", [400, 429, 503])
def test_activation_that_did_not_happen_deletes_the_draft(fake, client, fault):
    inject(fake, "activate", fault)
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    assert info.value.outcome_unknown is False
    assert "could not activate the signature request" in info.value.detail
    assert live(fake) == []


def test_lost_activation_answer_settled_by_a_status_read_is_a_success(fake, client):
    inject(fake, "activate", "lose")
    result = client.send(envelope())
    assert fake.signature_requests[result.provider_ref]["status"] == "ongoing"
    assert [s.email for s in result.signers] == [CLIENT.email, SENDER.email]
    assert not fake.requests_to("DELETE", ".")


def test_lost_activation_answer_and_no_status_read_is_unknown(fake, client):
    inject(fake, "activate", "lose")  # Yousign activated it
    fake.fail_next(503, times=6, on=("GET", REQUEST))  # neither read after the loss gets through
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    error = info.value
    assert error.outcome_unknown is True
    assert "is still at Yousign" in error.detail
    assert live(fake) == ["ongoing"]  # the DELETE was refused: it may well be out


def test_unsettled_activation_that_did_not_happen_is_proven_by_the_deletion(fake, client):
    """5xx before Yousign acted and no status read: a successful DELETE proves nothing is out
    (Yousign deletes drafts, never ongoing requests)."""
    inject(fake, "activate", 503)
    fake.fail_next(503, times=3, on=("GET", REQUEST))
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    assert info.value.outcome_unknown is False and live(fake) == []


def test_failed_cleanup_is_unknown(fake, client):
    inject(fake, "upload", 400)
    fake.fail_next(503, times=3, on=("DELETE", REQUEST))
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    assert info.value.outcome_unknown is True and info.value.kind == "rejected"
    assert live(fake) == ["draft"]


def test_lost_answer_of_the_cleanup_is_confirmed_by_reading(fake, client):
    inject(fake, "upload", 400)
    fake.lose_response_next(on=("DELETE", REQUEST))  # deleted, answer lost; the retry meets a 404
    with pytest.raises(ProviderError) as info:
        client.send(envelope())
    assert info.value.outcome_unknown is False and live(fake) == []
    assert len(fake.requests_to("DELETE", r"^/signature_requests/[^/]+$")) == 2
