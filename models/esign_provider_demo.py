# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The Demo provider: the whole flow with no account and no internet.

Its "server" is :mod:`.esign_demo_envelope`; its client below implements the same
:class:`~..api.base.ProviderClient` interface as the real connectors, and its notifications are
HMAC-signed and verified like theirs (:mod:`..api.demo`).

Like a remote service, the Demo "server" keeps its own transactions: every client call opens its
own cursor and commits, so the outbox can call it outside any transaction of ours and a rollback
on our side never undoes what the "provider" did.
"""
import base64
import contextlib
import json

from odoo import SUPERUSER_ID, fields, models

from ..api import demo as demo_wire
from ..api.base import Document, ProviderClient, ProviderError, SendResult, SignerStatus
from .esign_after_commit import new_environment


class DemoClient(ProviderClient):
    code = "demo"
    can_find_by_reference = True

    def __init__(self, provider, account):
        self.registry = provider.env.registry
        self.provider_id = provider.id
        self.base_url = provider.get_base_url()
        self.webhook_secret = provider.sudo().webhook_secret or ""
        self.account = account or {}

    @contextlib.contextmanager
    def _server(self):
        """The Demo "server": an environment on its own cursor, committed when the block ends."""
        with self.registry.cursor() as cr:
            yield new_environment(self.registry, cr, SUPERUSER_ID, {})

    def _envelope(self, env, provider_ref):
        envelope = env["esign.demo.envelope"].search(
            [("reference", "=", provider_ref), ("provider_id", "=", self.provider_id)], limit=1)
        if not envelope:
            raise ProviderError("not_found", f"no envelope {provider_ref}", status_code=404, provider="Demo")
        return envelope

    def _who(self):
        return self.account.get("email") or "Odoo"

    def _send_result(self, record):
        return SendResult(
            provider_ref=record.reference,
            signers=tuple(SignerStatus(
                state=s.state, key=s.key, email=s.email, provider_ref=s.ref,
                signing_url=f"{self.base_url}/esign/demo/sign/{s.token}",
            ) for s in record.signer_ids),
            raw={"reference": record.reference, "external_reference": record.external_reference},
        )

    def send(self, envelope):
        with self._server() as env:
            record = env["esign.demo.envelope"].create({
                "provider_id": self.provider_id,
                "external_reference": envelope.reference,
                "title": envelope.title,
                "message": envelope.message,
                "filename": envelope.document.filename,
                "document": base64.b64encode(envelope.document.content),
                "callback_url": envelope.callback_url,
                "signer_ids": [fields.Command.create({
                    "key": s.key, "name": s.name, "email": s.email, "sequence": s.sequence, "action": s.action,
                }) for s in envelope.ordered_signers()],
            })
            record._log(self._who(), "sent")
            record._refresh_turns()
            return self._send_result(record)

    def find_by_reference(self, reference):
        with self._server() as env:
            record = env["esign.demo.envelope"].search(
                [("external_reference", "=", reference), ("provider_id", "=", self.provider_id)], limit=1)
            return self._send_result(record) if record else None

    def get_status(self, provider_ref):
        with self._server() as env:
            payload = self._envelope(env, provider_ref)._status_payload("status")
        return demo_wire.parse(json.dumps(payload).encode())[0].status

    def download_signed(self, provider_ref, hints=None):
        with self._server() as env:
            envelope = self._envelope(env, provider_ref)
            if envelope.state != "signed":
                raise ProviderError("conflict", "not signed yet", status_code=409, provider="Demo")
            if not envelope.document:
                raise ProviderError("unavailable", "the signed file is not ready", status_code=503, provider="Demo")
            name = (envelope.filename or "document.pdf").rsplit(".", 1)[0]
            return Document(filename=f"{name} (signed).pdf", content=envelope._signed_pdf())

    def download_evidence(self, provider_ref, hints=None):
        with self._server() as env:
            envelope = self._envelope(env, provider_ref)
            return Document(filename=f"Audit trail {envelope.reference}.pdf", content=envelope._audit_trail_pdf())

    def cancel(self, provider_ref, reason=""):
        with self._server() as env:
            envelope = self._envelope(env, provider_ref)
            if envelope.state != "sent":
                raise ProviderError("conflict", f"envelope is {envelope.state}", status_code=409, provider="Demo")
            envelope.write({"state": "cancelled", "reason": reason, "completed_at": fields.Datetime.now()})
            envelope._log(self._who(), "cancelled")

    def remind(self, provider_ref):
        with self._server() as env:
            envelope = self._envelope(env, provider_ref)
            if envelope.state != "sent":
                raise ProviderError("conflict", f"envelope is {envelope.state}", status_code=409, provider="Demo")
            envelope.reminder_count += 1
            envelope._log(self._who(), "reminder sent")

    def verify_webhook(self, headers, body, query):
        demo_wire.verify(self.webhook_secret, headers.get(demo_wire.SIGNATURE_HEADER), body)

    def parse_webhook(self, headers, body, query):
        return demo_wire.parse(body)


class EsignProviderDemo(models.Model):
    _inherit = "esign.provider"

    def _esign_build_client(self, account):
        if self.code != "demo":
            return super()._esign_build_client(account)
        return DemoClient(self, account)

    def _esign_missing_settings(self):
        missing = super()._esign_missing_settings()
        if self.code == "demo" and not self.webhook_secret:
            missing.append(self.env._("Webhook secret (click Generate secret)"))
        return missing
