# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The Demo provider: the whole flow with no account and no internet.

Its "server" is :mod:`.esign_demo_envelope`; its client below implements the same
:class:`~..api.base.ProviderClient` interface as the real connectors, and its notifications are
HMAC-signed and verified like theirs (:mod:`..api.demo`).
"""
import base64
import json

from odoo import fields, models

from ..api import demo as demo_wire
from ..api.base import Document, ProviderClient, ProviderError, SendResult, SignerStatus


class DemoClient(ProviderClient):
    code = "demo"

    def __init__(self, provider, account):
        self.provider = provider.sudo()
        self.env = self.provider.env
        self.account = account or {}

    def _envelope(self, provider_ref):
        envelope = self.env["esign.demo.envelope"].search(
            [("reference", "=", provider_ref), ("provider_id", "=", self.provider.id)], limit=1)
        if not envelope:
            raise ProviderError("not_found", f"no envelope {provider_ref}", status_code=404, provider="Demo")
        return envelope

    def send(self, envelope):
        base_url = self.provider.get_base_url()
        record = self.env["esign.demo.envelope"].create({
            "provider_id": self.provider.id,
            "title": envelope.title,
            "message": envelope.message,
            "filename": envelope.document.filename,
            "document": base64.b64encode(envelope.document.content),
            "callback_url": envelope.callback_url,
            "signer_ids": [fields.Command.create({
                "key": s.key, "name": s.name, "email": s.email, "sequence": s.sequence, "action": s.action,
            }) for s in envelope.ordered_signers()],
        })
        record._log(self.account.get("email") or "Odoo", "sent")
        record._refresh_turns()
        return SendResult(
            provider_ref=record.reference,
            signers=tuple(SignerStatus(
                state=s.state, key=s.key, email=s.email, provider_ref=s.token,
                signing_url=f"{base_url}/esign/demo/sign/{s.token}",
            ) for s in record.signer_ids),
            raw={"reference": record.reference},
        )

    def get_status(self, provider_ref):
        envelope = self._envelope(provider_ref)
        payload = envelope._status_payload("status")
        return demo_wire.parse(json.dumps(payload).encode())[0].status

    def download_signed(self, provider_ref, hints=None):
        envelope = self._envelope(provider_ref)
        if envelope.state != "signed":
            raise ProviderError("conflict", "not signed yet", status_code=409, provider="Demo")
        if not envelope.document:
            raise ProviderError("unavailable", "the signed file is not ready", status_code=503, provider="Demo")
        name = (envelope.filename or "document.pdf").rsplit(".", 1)[0]
        return Document(filename=f"{name} (signed).pdf", content=envelope._signed_pdf())

    def download_evidence(self, provider_ref, hints=None):
        envelope = self._envelope(provider_ref)
        return Document(filename=f"Audit trail {envelope.reference}.pdf", content=envelope._audit_trail_pdf())

    def cancel(self, provider_ref, reason=""):
        envelope = self._envelope(provider_ref)
        if envelope.state != "sent":
            raise ProviderError("conflict", f"envelope is {envelope.state}", status_code=409, provider="Demo")
        envelope.write({"state": "cancelled", "reason": reason})
        envelope._log(self.account.get("email") or "Odoo", "cancelled")

    def remind(self, provider_ref):
        envelope = self._envelope(provider_ref)
        if envelope.state != "sent":
            raise ProviderError("conflict", f"envelope is {envelope.state}", status_code=409, provider="Demo")
        envelope.reminder_count += 1
        envelope._log(self.account.get("email") or "Odoo", "reminder sent")

    def verify_webhook(self, headers, body, query):
        demo_wire.verify(self.provider.webhook_secret, headers.get(demo_wire.SIGNATURE_HEADER), body)

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
            missing.append(self.env._("Webhook secret"))
        return missing
