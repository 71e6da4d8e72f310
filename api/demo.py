"""The Demo provider's wire format: signed notifications, as a real provider would send them.

The Demo provider lives inside Odoo (its signing page is served by the module), but its
notifications take the same road as any provider's: a raw body, an HMAC-SHA256 signature header,
verification with a constant-time compare and a timestamp tolerance, then parsing into
:class:`~.base.Notification`. Header format, Stripe-like::

    X-Esign-Demo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
"""
import datetime
import hashlib
import hmac
import json
import time

from .base import (REQUEST_STATES, SIGNER_STATES, EnvelopeStatus, Notification, SignerStatus, WebhookAuthError,
                   WebhookMalformed)

SIGNATURE_HEADER = "x-esign-demo-signature"
TOLERANCE_SECONDS = 300


def sign(secret, body, timestamp=None):
    """The signature header value for ``body``."""
    timestamp = int(time.time() if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret, header_value, body, now=None, tolerance=TOLERANCE_SECONDS):
    """Raise :class:`WebhookAuthError` unless ``header_value`` signs ``body`` with ``secret``, recently."""
    if not secret:
        raise WebhookAuthError("no webhook secret is configured")
    if not header_value:
        raise WebhookAuthError("missing signature header")
    parts = dict(item.split("=", 1) for item in header_value.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
        received = parts["v1"]
    except (KeyError, ValueError) as exc:
        raise WebhookAuthError("malformed signature header") from exc
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise WebhookAuthError("signature timestamp outside the tolerance")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received):
        raise WebhookAuthError("signature mismatch")


def _parse_dt(value):
    if not value:
        return None
    if not isinstance(value, str):
        raise WebhookMalformed(f"bad date {value!r}")
    try:
        return datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise WebhookMalformed(f"bad date {value!r}") from exc


def parse(body):
    """One notification per body: the event plus the whole envelope status."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookMalformed("body is not JSON") from exc
    if not isinstance(data, dict):
        raise WebhookMalformed("body is not a JSON object")
    try:
        event_id, event_type, envelope = data["id"], data["type"], data["envelope"]
        state = data["envelope_state"]
        signers = data["signers"]
    except KeyError as exc:
        raise WebhookMalformed(f"missing field {exc}") from exc
    if state not in REQUEST_STATES or not isinstance(signers, list):
        raise WebhookMalformed("unknown envelope state")
    statuses = []
    for signer in signers:
        if not isinstance(signer, dict) or signer.get("state") not in SIGNER_STATES:
            raise WebhookMalformed("bad signer entry")
        texts = {name: signer.get(name) or "" for name in ("key", "email", "ref", "reason")}
        if not all(isinstance(value, str) for value in texts.values()):
            raise WebhookMalformed("bad signer entry")
        statuses.append(SignerStatus(
            state=signer["state"], key=texts["key"], email=texts["email"], provider_ref=texts["ref"],
            changed_at=_parse_dt(signer.get("acted_at")), reason=texts["reason"],
        ))
    reference = data.get("reference") or ""
    if not isinstance(envelope, str) or not isinstance(reference, str) or not isinstance(event_id, (str, int)):
        raise WebhookMalformed("bad envelope, reference or id")
    status = EnvelopeStatus(provider_ref=envelope, state=state, signers=tuple(statuses),
                            provider_state=state, reason=str(data.get("reason") or ""), raw=data,
                            completed_at=_parse_dt(data.get("completed_at")), reference=reference)
    return [Notification(dedup_key=f"demo:{event_id}", event_type=str(event_type)[:200], provider_ref=envelope,
                         occurred_at=_parse_dt(data.get("occurred_at")), status=status, payload=data,
                         reference=reference)]
