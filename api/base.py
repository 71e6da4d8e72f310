"""Provider-neutral vocabulary shared by every e-signature client.

The Odoo models speak only these types; a provider client translates them to and from its own API.
Keeping this layer free of Odoo lets each client be tested against its fake server without a
database, the way ``payment`` keeps provider specifics out of ``payment.transaction``.
"""
import dataclasses
import datetime
import hashlib
from typing import Mapping, Optional, Sequence

# Our states. Providers map theirs onto these in one table per client.
REQUEST_STATES = ("draft", "sent", "signed", "refused", "cancelled", "expired", "error")
# ``error`` as a provider state means the provider itself failed the envelope (e.g. Autenti FAILED,
# Yousign expired drafts never activated): it is final, like the other outcomes.
REQUEST_FINAL_STATES = frozenset({"signed", "refused", "cancelled", "expired", "error"})
SIGNER_STATES = ("waiting", "pending", "signed", "refused")
SIGNER_FINAL_STATES = frozenset({"signed", "refused"})

SIGNER_ROLES = ("client", "company")
SIGNER_ACTIONS = ("sign", "approve", "view")


@dataclasses.dataclass(frozen=True)
class Document:
    """A file going to or coming from a provider."""

    filename: str
    content: bytes
    mimetype: str = "application/pdf"


@dataclasses.dataclass(frozen=True)
class Organisation:
    """The company a signer acts for (central mode: our company, with its tax id)."""

    name: str
    tax_id: str = ""
    country_code: str = ""


@dataclasses.dataclass(frozen=True)
class Signer:
    """One person who must act on the envelope.

    ``key`` is our stable identifier of the signer (it survives round trips where the provider lets us
    attach metadata); ``sequence`` orders signing: lower signs first, equal values may sign in parallel.
    """

    key: str
    name: str
    email: str
    role: str = "client"
    sequence: int = 1
    action: str = "sign"
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    organisation: Optional[Organisation] = None
    representation_basis: str = ""
    provider_user_id: str = ""

    def split_name(self):
        """First and last name, from the explicit fields or split from ``name``."""
        if self.first_name or self.last_name:
            return self.first_name, self.last_name
        first, _sep, last = (self.name or "").strip().partition(" ")
        return first, last.strip()


@dataclasses.dataclass(frozen=True)
class Envelope:
    """Everything a provider needs to start one signing: one document, ordered signers."""

    reference: str
    title: str
    document: Document
    signers: Sequence[Signer]
    message: str = ""
    language: str = "en"
    callback_url: str = ""
    expires_at: Optional[datetime.datetime] = None

    def ordered_signers(self):
        return sorted(self.signers, key=lambda s: (s.sequence, s.role != "client"))


@dataclasses.dataclass(frozen=True)
class SignerStatus:
    """A provider's view of one signer. ``key``, ``provider_ref`` or ``email`` identify it."""

    state: str
    key: str = ""
    provider_ref: str = ""
    email: str = ""
    changed_at: Optional[datetime.datetime] = None
    reason: str = ""
    signing_url: str = ""


@dataclasses.dataclass(frozen=True)
class EnvelopeStatus:
    """A provider's view of one envelope, already mapped onto our states."""

    provider_ref: str
    state: str
    signers: Sequence[SignerStatus] = ()
    provider_state: str = ""
    reason: str = ""
    raw: Optional[Mapping] = None
    completed_at: Optional[datetime.datetime] = None
    """When the provider completed the envelope (all signed, refused, …), as the provider says."""
    reference: str = ""
    """Our :attr:`Envelope.reference`, where the provider echoes it (external id, metadata)."""


@dataclasses.dataclass(frozen=True)
class SendResult:
    """What a successful send returns: the provider's reference and what it knows of the signers.

    ``warnings`` are things the user must be told although the envelope is out (e.g. SELL&SIGN's
    automatic closing could not be set): the core posts them on the contract.
    """

    provider_ref: str
    signers: Sequence[SignerStatus] = ()
    raw: Optional[Mapping] = None
    warnings: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class Notification:
    """One event a provider pushed to us, verified and parsed, not yet applied.

    ``dedup_key`` is unique per provider for one event: the provider's event id where it has one,
    otherwise a digest of the raw body. ``status`` is set when the event alone says where the
    envelope stands; when it is ``None`` the core reads the status from the provider instead.
    ``hints`` carries what must be used at once (e.g. a download link that expires).
    """

    dedup_key: str
    event_type: str
    provider_ref: str = ""
    occurred_at: Optional[datetime.datetime] = None
    status: Optional[EnvelopeStatus] = None
    payload: Optional[Mapping] = None
    hints: Optional[Mapping] = None
    reference: str = ""
    """Our :attr:`Envelope.reference`, where the provider echoes it: matches a notification that
    arrives before the send recorded the provider's reference."""


def body_digest(body: bytes) -> str:
    """Stable de-duplication key for an event that carries no id of its own."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


# --- errors ---------------------------------------------------------------------------------------


class ProviderError(Exception):
    """A provider call failed. ``kind`` says why, so the Odoo layer can word it for the user.

    kinds: ``config`` (our settings are incomplete), ``auth`` (credentials refused), ``rejected``
    (4xx: the provider refused our data), ``not_found``, ``conflict`` (not possible in the current
    state), ``rate_limited`` (429), ``unavailable`` (5xx or connection refused), ``timeout``,
    ``protocol`` (an answer we cannot understand). ``detail`` is the provider's own message.

    ``outcome_unknown`` is the one fact the outbox needs after a failed call that changes something
    (create, send, cancel): True when the provider may have acted although we got no answer (a
    POST that timed out or got a 5xx, a lost response, a clean-up that failed after a draft was
    created). False promises that nothing is left at the provider, so trying again cannot make a
    second envelope.
    """

    KINDS = ("config", "auth", "rejected", "not_found", "conflict", "rate_limited", "unavailable",
             "timeout", "protocol")

    def __init__(self, kind, detail="", status_code=None, provider="", retry_after=None, body=None,
                 outcome_unknown=False):
        assert kind in self.KINDS, kind
        self.kind = kind
        self.detail = detail or ""
        self.status_code = status_code
        self.provider = provider
        self.retry_after = retry_after
        self.body = body
        self.outcome_unknown = bool(outcome_unknown)
        super().__init__(self.__str__())

    @property
    def transient(self):
        """True when trying the same call later may succeed."""
        return self.kind in ("rate_limited", "unavailable", "timeout")

    def __str__(self):
        code = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{self.provider or 'provider'} {self.kind}{code}: {self.detail}".strip()


class WebhookError(Exception):
    """A pushed notification cannot be accepted. The controller answers ``http_status``."""

    http_status = 400


class WebhookAuthError(WebhookError):
    """The notification is not proven to come from the provider (bad or missing signature)."""

    http_status = 403


class WebhookMalformed(WebhookError):
    """The notification is authentic (or unauthenticated by design) but cannot be parsed."""

    http_status = 400


# --- the client interface -------------------------------------------------------------------------


class ProviderClient:
    """What every provider client offers. Clients raise :class:`ProviderError` and nothing else.

    One instance acts for one account: in individual mode the sender's, in central mode the
    company representative's. Instances are cheap; anything worth caching (tokens) is cached by the
    client at module level, keyed by account.
    """

    code = ""

    can_find_by_reference = False
    """True when :meth:`find_by_reference` can tell whether an envelope exists for our reference."""

    calls_per_send = 1
    """API calls one :meth:`send` makes, for the rate limit (an estimate: tokens are cached)."""

    def supports(self, operation):
        """True when this client implements ``operation`` (``cancel``, ``remind``) instead of refusing it.

        Lets the user be told at once that a provider has no such call, rather than after the
        command was queued.
        """
        return getattr(type(self), operation) is not getattr(ProviderClient, operation)

    def send(self, envelope: Envelope) -> SendResult:
        """Create the envelope at the provider and start it; return its reference.

        Sends :attr:`Envelope.reference` to the provider wherever its API keeps such a value
        (external id, metadata, custom field), so that :meth:`find_by_reference` and notifications
        can name it. A :class:`ProviderError` raised here says with ``outcome_unknown`` whether
        anything may be left at the provider (clients clean up what they created midway).
        """
        raise NotImplementedError

    def find_by_reference(self, reference: str) -> Optional[SendResult]:
        """The envelope sent for our ``reference``, or ``None`` when the provider certainly has none.

        Used by the outbox after a send whose outcome is unknown, before it tries again. Only an
        envelope that was *started* (out for signature or beyond) counts: a draft left behind is
        cleaned up (or ignored) and ``None`` returned, so the send can be made again. Raises
        :class:`ProviderError` when the provider cannot tell now.
        """
        raise ProviderError("config", "this provider cannot look up an envelope by our reference",
                            provider=self.code)

    def get_status(self, provider_ref: str) -> EnvelopeStatus:
        """Read where the envelope stands, mapped onto our states."""
        raise NotImplementedError

    def download_signed(self, provider_ref: str, hints: Optional[Mapping] = None) -> Document:
        """The signed document, once the envelope is signed."""
        raise NotImplementedError

    def download_evidence(self, provider_ref: str, hints: Optional[Mapping] = None) -> Optional[Document]:
        """The provider's audit trail / evidence file, or ``None`` if it has none."""
        return None

    def cancel(self, provider_ref: str, reason: str = "") -> None:
        """Withdraw the envelope so nobody can sign it any more."""
        raise ProviderError("conflict", "this provider cannot cancel a sent document", provider=self.code)

    def remind(self, provider_ref: str) -> None:
        """Ask the provider to remind the signer whose turn it is."""
        raise ProviderError("conflict", "this provider cannot send reminders", provider=self.code)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> None:
        """Raise :class:`WebhookAuthError` unless the raw request is proven to come from the provider.

        ``headers`` keys are lower-case. Runs before anything is parsed or stored.
        """
        raise WebhookAuthError("this provider does not accept notifications")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes,
                      query: Mapping[str, str]) -> Sequence[Notification]:
        """Turn a verified raw request into notifications; raise :class:`WebhookMalformed` if it can't."""
        raise WebhookMalformed("this provider does not accept notifications")


# --- (de)serialisation, so stored events can be processed again later ----------------------------


def _dt_to_str(value):
    return value.isoformat() if isinstance(value, datetime.datetime) else value


def _dt_from_str(value):
    if not value:
        return None
    return datetime.datetime.fromisoformat(value)


def status_to_dict(status: EnvelopeStatus) -> dict:
    return {
        "provider_ref": status.provider_ref,
        "state": status.state,
        "provider_state": status.provider_state,
        "reason": status.reason,
        "completed_at": _dt_to_str(status.completed_at),
        "reference": status.reference,
        "signers": [
            {**dataclasses.asdict(s), "changed_at": _dt_to_str(s.changed_at)} for s in status.signers
        ],
    }


def status_from_dict(data: Mapping) -> EnvelopeStatus:
    return EnvelopeStatus(
        provider_ref=data.get("provider_ref", ""),
        state=data["state"],
        provider_state=data.get("provider_state", ""),
        reason=data.get("reason", ""),
        completed_at=_dt_from_str(data.get("completed_at")),
        reference=data.get("reference", ""),
        signers=tuple(
            SignerStatus(**{**s, "changed_at": _dt_from_str(s.get("changed_at"))})
            for s in data.get("signers", ())
        ),
    )
