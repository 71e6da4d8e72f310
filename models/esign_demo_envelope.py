# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The Demo provider's own side: what a real provider keeps on its servers.

Kept apart from ``esign.request`` on purpose: the request is our view, the envelope is the
"provider's". A lost notification therefore really leaves the two apart until a refresh reads the
envelope, exactly as with a real service.
"""
import base64
import io
import json
import secrets
import uuid

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from odoo import _, fields, models
from odoo.exceptions import UserError
from odoo.tools.pdf import PdfFileReader, PdfFileWriter

from ..api import demo as demo_wire

MAX_REASON_LENGTH = 500  # what a signer types on the public page: bounded


class EsignDemoEnvelope(models.Model):
    _name = "esign.demo.envelope"
    _description = "Demo Provider Envelope"
    _order = "id desc"

    reference = fields.Char(required=True, index=True, default=lambda self: f"DEMO-{uuid.uuid4().hex[:12]}")
    external_reference = fields.Char(index=True, help="The sender's own reference (our esign.request).")
    provider_id = fields.Many2one("esign.provider", required=True, ondelete="cascade", index=True)
    title = fields.Char(required=True)
    message = fields.Text()
    filename = fields.Char()
    document = fields.Binary(attachment=True)
    callback_url = fields.Char()
    state = fields.Selection(
        [("sent", "Sent"), ("signed", "Signed"), ("refused", "Refused"), ("cancelled", "Cancelled")],
        default="sent", required=True)
    reason = fields.Char()
    completed_at = fields.Datetime()
    reminder_count = fields.Integer()
    signer_ids = fields.One2many("esign.demo.envelope.signer", "envelope_id")
    log = fields.Text(default="[]", help="Audit trail: JSON list of [when, who, what].")

    _sql_constraints = [("reference_uniq", "unique(reference)", "Envelope references are unique.")]

    def _log(self, who, what):
        entries = json.loads(self.log or "[]")
        entries.append([fields.Datetime.now().isoformat(), who, what])
        self.log = json.dumps(entries)

    def _status_payload(self, event_type):
        self.ensure_one()
        return {
            "id": uuid.uuid4().hex,
            "type": event_type,
            "envelope": self.reference,
            "reference": self.external_reference or "",
            "envelope_state": self.state,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "reason": self.reason or "",
            "occurred_at": fields.Datetime.now().isoformat(),
            "signers": [{
                "key": s.key, "email": s.email, "ref": s.ref, "state": s.state,
                "acted_at": s.acted_at.isoformat() if s.acted_at else None, "reason": s.reason or "",
            } for s in self.signer_ids],
        }

    def _refresh_turns(self):
        """Whoever has the lowest open sequence may act now."""
        open_signers = self.signer_ids.filtered(lambda s: s.state in ("waiting", "pending"))
        if not open_signers:
            return
        first = min(open_signers.mapped("sequence"))
        open_signers.filtered(lambda s: s.sequence == first and s.state == "waiting").state = "pending"

    def _act(self, signer, decision, reason=""):
        """A signer signs or refuses on the demo page; returns the notification body (bytes)."""
        self.ensure_one()
        if self.state != "sent":
            raise UserError(_("This document is no longer open for signature."))
        if signer.state != "pending":
            raise UserError(_("It is not your turn to sign yet: earlier signers must sign first."))
        reason = (reason or "")[:MAX_REASON_LENGTH]
        signer.write({"state": decision, "acted_at": fields.Datetime.now(), "reason": reason or False})
        self._log(f"{signer.name} <{signer.email}>", "refused" if decision == "refused" else "signed")
        if decision == "refused":
            self.write({"state": "refused", "reason": reason or False, "completed_at": fields.Datetime.now()})
        elif all(s.state == "signed" for s in self.signer_ids):
            self.write({"state": "signed", "completed_at": fields.Datetime.now()})
            self._log("Demo", "completed")
        else:
            self._refresh_turns()
        event = f"signer.{decision}" if self.state == "sent" else f"envelope.{self.state}"
        return json.dumps(self._status_payload(event)).encode()

    def _signed_pdf(self):
        """The original document with a visible signature stamp on its last page."""
        self.ensure_one()
        original = PdfFileReader(io.BytesIO(base64.b64decode(self.document)), strict=False)
        last = original.getPage(original.getNumPages() - 1)
        width, height = float(last.mediaBox.getWidth()), float(last.mediaBox.getHeight())
        packet = io.BytesIO()
        can = canvas.Canvas(packet, pagesize=(width, height))
        lines = [_("Signed electronically with the Demo provider (no legal value)")]
        for signer in self.signer_ids.sorted("sequence"):
            lines.append(f"{signer.name} <{signer.email}> — {signer.acted_at} UTC")
        box_h = 14 * len(lines) + 10
        can.setStrokeColorRGB(0.1, 0.4, 0.7)
        can.setFillColorRGB(0.93, 0.96, 1)
        can.rect(30, 30, width - 60, box_h, fill=1)
        can.setFillColorRGB(0.1, 0.2, 0.5)
        for index, line in enumerate(lines):
            can.setFont("Helvetica-Bold" if index == 0 else "Helvetica", 9)
            can.drawString(38, 30 + box_h - 16 - 14 * index, line)
        can.save()
        stamp = PdfFileReader(packet)
        writer = PdfFileWriter()
        for index in range(original.getNumPages()):
            page = original.getPage(index)
            if index == original.getNumPages() - 1:
                page.mergePage(stamp.getPage(0))
            writer.addPage(page)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    def _audit_trail_pdf(self):
        self.ensure_one()
        packet = io.BytesIO()
        can = canvas.Canvas(packet, pagesize=A4)
        y = A4[1] - 50
        can.setFont("Helvetica-Bold", 13)
        can.drawString(40, y, _("Audit trail — %s", self.reference))
        can.setFont("Helvetica", 9)
        y -= 18
        can.drawString(40, y, _("Document: %(title)s (%(file)s)", title=self.title, file=self.filename))
        for when, who, what in json.loads(self.log or "[]"):
            y -= 14
            can.drawString(40, y, f"{when} UTC  {who}: {what}")
        can.save()
        return packet.getvalue()


class EsignDemoEnvelopeSigner(models.Model):
    _name = "esign.demo.envelope.signer"
    _description = "Demo Provider Signer"
    _order = "envelope_id, sequence, id"

    envelope_id = fields.Many2one("esign.demo.envelope", required=True, ondelete="cascade", index=True)
    key = fields.Char()
    name = fields.Char(required=True)
    email = fields.Char(required=True)
    sequence = fields.Integer(default=1)
    action = fields.Selection([("sign", "Sign"), ("approve", "Approve"), ("view", "View only")], default="sign")
    token = fields.Char(required=True, index=True, default=lambda self: secrets.token_urlsafe(24),
                        help="The secret of the signing link: whoever has it signs as this person.")
    ref = fields.Char(required=True, index=True, default=lambda self: f"signer-{uuid.uuid4().hex[:12]}",
                      help="The signer's public id, as a provider returns it (never the token).")
    state = fields.Selection(
        [("waiting", "Waiting"), ("pending", "To sign"), ("signed", "Signed"), ("refused", "Refused")],
        default="waiting", required=True)
    acted_at = fields.Datetime()
    reason = fields.Char()

    _sql_constraints = [("token_uniq", "unique(token)", "Signing tokens are unique.")]

    def _notify(self, body):
        """Sign the notification and hand it to the same handler the HTTP controller uses."""
        provider = self.envelope_id.provider_id.sudo()
        headers = {demo_wire.SIGNATURE_HEADER: demo_wire.sign(provider.webhook_secret or "", body)}
        return self.env["esign.request.event"].sudo()._esign_receive_webhook("demo", headers, body, {})
