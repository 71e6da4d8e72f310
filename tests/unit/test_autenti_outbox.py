"""What the outbox may rely on from AutentiClient: our reference at Autenti, and ``outcome_unknown``.

Each step of a send (token, create, upload, DOCUMENT_SENT, the clean-up withdrawal, the status read)
is failed, refused or has its answer lost at the fake, over real HTTP. ``outcome_unknown=False``
must mean that nothing anybody could sign is left at Autenti, so the outbox may send again.
"""
import base64
import json
import time

import pytest

from esign_connector.api import autenti
from esign_connector.api.base import ProviderError

# The module's fixtures (fake, pem and what they need) and helpers, shared rather than copied.
from test_autenti import _fresh_caches, fake, jwk, make_client, make_envelope, pem  # noqa: F401

TOKEN = ("POST", r"/auth/token$")
CREATE = ("POST", r"/document-processes$")
UPLOAD = ("POST", r"/files$")
ACTION = ("POST", r"/actions$")
READ = ("GET", r"/document-processes/[^/]+$")
SENT = "EVENT_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_SENT"


def send_error(client, **overrides):
    with pytest.raises(ProviderError) as info:
        client.send(make_envelope(**overrides))
    return info.value


def only_process(fake):
    (process,) = fake.processes.values()
    return process


def actions_selected(fake):
    """The event each ``POST …/actions`` selected, in order (DOCUMENT_SENT, DOCUMENT_WITHDRAWAL…)."""
    selected = []
    for request in fake.requests_to(*ACTION):
        first = request.headers["X-ASSERTION"].split(",")[0]
        selected.append(json.loads(base64.b64decode(first))["attributes"]["selectedIds"][0].rsplit(":", 1)[1])
    return selected


# ------------------------------------------------------------------ our reference at Autenti


def test_reference_travels_in_the_title_and_comes_back_in_the_status(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope(reference="7f3a9c0d2e")).provider_ref
    assert fake.processes[ref]["title"] == "Umowa 1/2025 [ref 7f3a9c0d2e]"
    assert [p["id"] for p in fake.processes_with_reference("7f3a9c0d2e")] == [ref]
    assert client.get_status(ref).reference == "7f3a9c0d2e"


def test_a_long_title_is_cut_but_keeps_the_whole_reference(fake, pem):
    fake.max_title_length = autenti.TITLE_MAX_LENGTH
    reference = "0123456789abcdef0123456789abcdef"  # what esign.request uses: a uuid4 hex
    client = make_client(fake, pem)
    ref = client.send(make_envelope(title="Umowa " + "bardzo długa " * 40, reference=reference)).provider_ref
    title = fake.processes[ref]["title"]
    assert len(title) <= autenti.TITLE_MAX_LENGTH and title.startswith("Umowa bardzo długa")
    assert title.endswith(f" [ref {reference}]")
    assert client.get_status(ref).reference == reference


def test_a_process_made_elsewhere_has_no_reference(fake, pem):
    client = make_client(fake, pem)
    ref = client.send(make_envelope()).provider_ref
    fake.processes[ref]["title"] = "Umowa [draft 2]"  # e.g. renamed in Autenti's web application
    assert client.get_status(ref).reference == ""


def test_autenti_cannot_look_a_process_up_by_our_reference(fake, pem):
    client = make_client(fake, pem)
    assert client.can_find_by_reference is False
    with pytest.raises(ProviderError) as info:
        client.find_by_reference("REQ-0001")
    assert info.value.kind == "config"
    assert fake.requests == []  # it does not pretend to search


# ------------------------------------------------------------------ before anything exists


@pytest.mark.parametrize("fault", ["fail_503", "lose"])
def test_token_failure_is_certain_nothing_was_created(fake, pem, fault):
    if fault == "lose":
        fake.lose_response_next(on=TOKEN)
    else:
        fake.fail_next(503, times=3, on=TOKEN)
    error = send_error(make_client(fake, pem))
    assert not error.outcome_unknown, "a token request creates no envelope"
    assert fake.processes == {}


@pytest.mark.parametrize("status", [400, 402, 409])
def test_refused_create_leaves_nothing(fake, pem, status):
    fake.fail_next(status, on=CREATE)
    error = send_error(make_client(fake, pem))
    assert error.status_code == status and not error.outcome_unknown
    assert fake.processes == {}


def test_create_5xx_may_have_left_a_draft(fake, pem):
    fake.fail_next(500, on=CREATE)
    error = send_error(make_client(fake, pem))
    assert error.kind == "unavailable" and error.outcome_unknown
    assert "unknown whether a draft was created" in error.detail


def test_lost_create_answer_leaves_an_unsent_draft_and_says_so(fake, pem):
    fake.lose_response_next(on=CREATE)
    error = send_error(make_client(fake, pem))
    assert error.outcome_unknown
    assert only_process(fake)["status"] == "DRAFT"  # we never learnt its id: nothing more was done
    assert fake.requests_to(*UPLOAD) == [] and fake.requests_to(*ACTION) == []


def test_create_answer_without_id_is_unknown(fake, pem):
    fake.fail_next(201, body={"title": "no id"}, on=CREATE)
    error = send_error(make_client(fake, pem))
    assert error.kind == "protocol" and error.outcome_unknown


# ------------------------------------------------------------------ upload


@pytest.mark.parametrize("fault", ["fail_500", "fail_400", "lose"])
def test_upload_failure_is_withdrawn_and_certain(fake, pem, fault):
    if fault == "lose":
        fake.lose_response_next(on=UPLOAD)
    else:
        fake.fail_next(int(fault[-3:]), on=UPLOAD)
    error = send_error(make_client(fake, pem))
    process = only_process(fake)
    assert not error.outcome_unknown
    assert process["status"] == "WITHDRAWN" and process["id"] in error.detail
    assert "was withdrawn, so nobody can sign it" in error.detail
    assert actions_selected(fake) == ["DOCUMENT_WITHDRAWAL"]


def test_upload_failure_when_autenti_refuses_to_withdraw_a_draft_is_unknown(fake, pem):
    fake.allow_withdraw_draft = False
    fake.fail_next(500, on=UPLOAD)
    error = send_error(make_client(fake, pem))
    assert error.outcome_unknown and "could NOT be withdrawn" in error.detail
    assert "draft that was never sent" in error.detail
    assert only_process(fake)["status"] == "DRAFT"


def test_upload_failure_when_the_withdrawal_fails_too_is_unknown(fake, pem):
    fake.fail_next(500, on=UPLOAD)
    fake.fail_next(503, on=ACTION)
    error = send_error(make_client(fake, pem))
    assert error.outcome_unknown and "could NOT be withdrawn" in error.detail
    assert only_process(fake)["status"] == "DRAFT"


def test_a_withdrawal_whose_answer_is_lost_counts_once_the_status_shows_it(fake, pem):
    fake.fail_next(500, on=UPLOAD)
    fake.lose_response_next(on=ACTION)
    error = send_error(make_client(fake, pem))
    assert not error.outcome_unknown and "was withdrawn" in error.detail
    assert only_process(fake)["status"] == "WITHDRAWN"


# ------------------------------------------------------------------ the DOCUMENT_SENT action


def test_lost_send_answer_of_a_process_that_went_out_is_a_success(fake, pem):
    fake.lose_response_next(on=ACTION)
    result = make_client(fake, pem).send(make_envelope())
    assert fake.processes[result.provider_ref]["status"] == "PROCESSING"
    assert {s.key for s in result.signers} == {"signer-1", "signer-2"}
    assert actions_selected(fake) == ["DOCUMENT_SENT"]  # read, not withdrawn, not sent again


def test_send_5xx_that_did_not_act_is_withdrawn_and_certain(fake, pem):
    fake.fail_next(503, on=ACTION)
    error = send_error(make_client(fake, pem))
    assert error.kind == "unavailable" and not error.outcome_unknown
    assert "showed it as DRAFT" in error.detail and "was withdrawn" in error.detail
    assert only_process(fake)["status"] == "WITHDRAWN"
    assert actions_selected(fake) == ["DOCUMENT_SENT", "DOCUMENT_WITHDRAWAL"]


@pytest.mark.parametrize("status", [400, 402, 409])
def test_refused_send_is_withdrawn_and_certain(fake, pem, status):
    fake.fail_next(status, on=ACTION)
    error = send_error(make_client(fake, pem))
    assert error.status_code == status and not error.outcome_unknown
    assert only_process(fake)["status"] == "WITHDRAWN"


def test_send_answered_by_a_challenge_is_withdrawn_and_certain(fake, pem):
    challenge = {"classifiers": ["CHALLENGE_CLASSIFIER-UNIQUE_TYPE:DOCUMENT_ACCESS_UNLOCK"], "attributes": {}}
    encoded = base64.urlsafe_b64encode(json.dumps(challenge).encode()).decode()
    fake.fail_next(403, headers={"X-Challenge": encoded}, on=ACTION)
    error = send_error(make_client(fake, pem))
    assert error.kind == "conflict" and "locked" in error.detail and not error.outcome_unknown
    assert only_process(fake)["status"] == "WITHDRAWN"


def test_unclear_send_with_an_unreadable_status_is_withdrawn_but_unknown(fake, pem):
    fake.fail_next(503, on=ACTION)
    fake.fail_next(503, times=3, on=READ)  # the transport retries a GET twice
    error = send_error(make_client(fake, pem))
    assert error.outcome_unknown and "may have reached the signers" in error.detail
    assert only_process(fake)["status"] == "WITHDRAWN"


def test_unclear_send_whose_withdrawal_fails_is_unknown(fake, pem):
    fake.fail_next(503, on=ACTION)
    fake.fail_next(503, on=ACTION)
    error = send_error(make_client(fake, pem))
    assert error.outcome_unknown and "could NOT be withdrawn" in error.detail
    assert only_process(fake)["status"] == "DRAFT"


def test_send_accepted_without_confirmation_and_still_a_draft_is_withdrawn(fake, pem):
    fake.fail_next(200, body=[], on=ACTION)  # a 2xx that did not send (S6: not confirmed)
    error = send_error(make_client(fake, pem))
    assert error.kind == "protocol" and not error.outcome_unknown
    assert "without confirming it" in error.detail
    assert only_process(fake)["status"] == "WITHDRAWN"


def test_send_accepted_without_confirmation_and_unreadable_is_unknown(fake, pem):
    fake.fail_next(200, body=[], on=ACTION)
    fake.fail_next(503, times=3, on=READ)
    error = send_error(make_client(fake, pem))
    assert error.outcome_unknown
    assert only_process(fake)["status"] == "WITHDRAWN"


def test_a_status_we_do_not_know_is_not_taken_for_a_draft(fake, pem):
    fake.initial_status = "CREATED"  # NOTES §4.1: the draft's status name is a [GUESS]
    fake.fail_next(503, on=ACTION)
    error = send_error(make_client(fake, pem))
    assert error.outcome_unknown and "showed it as CREATED" in error.detail
    assert only_process(fake)["status"] == "WITHDRAWN"


def test_when_withdrawal_is_not_final_an_unclear_send_stays_unknown(fake, pem, monkeypatch):
    monkeypatch.setattr(autenti, "WITHDRAWAL_IS_FINAL", False)  # the [GUESS] constant of NOTES §6
    fake.fail_next(503, on=ACTION)
    error = send_error(make_client(fake, pem))
    assert error.outcome_unknown
    assert only_process(fake)["status"] == "WITHDRAWN"


def test_a_send_still_running_after_our_timeout_never_stays_live_unnoticed(fake, pem):
    fake.delay_next(1.0, on=ACTION)  # longer than the client's 0.5 s read timeout
    started = time.monotonic()
    try:
        result = make_client(fake, pem).send(make_envelope())
    except ProviderError as error:
        result = None
        assert not error.outcome_unknown and "was withdrawn" in error.detail
    time.sleep(max(0.0, 1.3 - (time.monotonic() - started)))  # let the slow send finish at the fake
    process = only_process(fake)
    if result is None:
        assert process["status"] == "WITHDRAWN", "a withdrawn draft must not be sent by the late call"
    else:
        assert process["status"] == "PROCESSING" and result.provider_ref == process["id"]


def test_a_send_that_worked_needs_no_clean_up(fake, pem):
    make_client(fake, pem).send(make_envelope())
    assert actions_selected(fake) == ["DOCUMENT_SENT"]
    assert fake.requests_to(*READ) == []  # the DOCUMENT_SENT event in the answer is enough (S6)
