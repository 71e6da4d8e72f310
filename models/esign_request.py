# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""One sending of one contract to an e-signature provider, and its state machine.

States only move forward (``STATE_RANK``); final states never change. That one rule makes
duplicated, replayed and out-of-order notifications harmless, and lets callbacks and status reads
(refresh button, cron) go through the same :meth:`_esign_apply_status`.
"""
import json
import logging
import secrets
import threading
import uuid

from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..api.base import (REQUEST_FINAL_STATES, Document, Envelope, EnvelopeStatus, Organisation,
                        ProviderError, Signer)

_logger = logging.getLogger(__name__)

STATE_RANK = {"draft": 0, "error": 0, "sent": 1, "signed": 2, "refused": 2, "cancelled": 2, "expired": 2}
OPEN_STATES = ("sent",)


class EsignRequest(models.Model):
    _name = "esign.request"
    _description = "E-Signature Request"
    _inherit = ["mail.thread"]
    _order = "id desc"
    _check_company_auto = True

    name = fields.Char(required=True, readonly=True, copy=False, default=lambda self: _("New"))
    reference = fields.Char(
        required=True, readonly=True, copy=False, index=True,
        default=lambda self: uuid.uuid4().hex,
        help="Our reference, sent to the provider with the document.",
    )
    agreement_id = fields.Many2one("agreement", string="Contract", required=True, ondelete="restrict",
                                   index=True, check_company=True)
    partner_id = fields.Many2one(related="agreement_id.partner_id")
    provider_id = fields.Many2one("esign.provider", required=True, ondelete="restrict", index=True,
                                  check_company=True)
    provider_code = fields.Selection(related="provider_id.code")
    company_id = fields.Many2one("res.company", required=True, index=True,
                                 default=lambda self: self.env.company)
    user_id = fields.Many2one("res.users", string="Sender", required=True,
                              default=lambda self: self.env.user, index=True)
    account_mode = fields.Selection(
        [("individual", "Individual accounts"), ("central", "Central representative")], readonly=True)
    acting_account_json = fields.Text(readonly=True, copy=False,
                                      help="The provider account the request was sent with.")
    state = fields.Selection(
        [("draft", "Draft"), ("sent", "Sent"), ("signed", "Signed"), ("refused", "Refused"),
         ("cancelled", "Cancelled"), ("expired", "Expired"), ("error", "Error")],
        default="draft", required=True, readonly=True, copy=False, tracking=True, index=True,
    )
    provider_ref = fields.Char(string="Provider Reference", readonly=True, copy=False, index=True)
    provider_state = fields.Char(string="Provider Status", readonly=True, copy=False)
    subject = fields.Char()
    message = fields.Text()
    signer_ids = fields.One2many("esign.request.signer", "request_id", string="Signers", copy=True)
    event_ids = fields.One2many("esign.request.event", "request_id", string="Events", readonly=True)
    event_count = fields.Integer(compute="_compute_event_count")
    document_id = fields.Many2one("ir.attachment", string="Sent Document", readonly=True, copy=False)
    signed_document_id = fields.Many2one("ir.attachment", string="Signed Document", readonly=True,
                                         copy=False)
    evidence_document_id = fields.Many2one("ir.attachment", string="Audit Trail", readonly=True,
                                           copy=False)
    documents_pending = fields.Boolean(
        readonly=True, copy=False,
        help="Signed, but the signed document could not be downloaded yet; the cron retries.")
    last_error = fields.Text(readonly=True, copy=False)
    reason = fields.Char(string="Refusal / Cancellation Reason", readonly=True, copy=False)
    sent_at = fields.Datetime(readonly=True, copy=False)
    completed_at = fields.Datetime(readonly=True, copy=False)
    last_checked_at = fields.Datetime(readonly=True, copy=False)
    callback_token = fields.Char(readonly=True, copy=False, groups="base.group_system", index=True,
                                 default=lambda self: secrets.token_urlsafe(32),
                                 help="Secret part of this request's notification URL, for providers "
                                      "whose notifications are not signed.")

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("name", _("New")) == _("New"):
                vals["name"] = self.env["ir.sequence"].next_by_code("esign.request") or _("New")
        return super().create(vals_list)

    def _compute_event_count(self):
        groups = self.env["esign.request.event"]._read_group(
            [("request_id", "in", self.ids)], ["request_id"], ["__count"])
        counts = {request.id: count for request, count in groups}
        for request in self:
            request.event_count = counts.get(request.id, 0)

    # ------------------------------------------------------------------ helpers

    def _esign_acting_account(self):
        self.ensure_one()
        if self.acting_account_json:
            return json.loads(self.acting_account_json)
        return self.provider_id._esign_acting_account(self.user_id)

    def _esign_client(self):
        self.ensure_one()
        return self.provider_id._esign_get_client(account=self._esign_acting_account())

    def _esign_lock(self):
        """Serialise concurrent notifications for this request (row lock until commit)."""
        self.env.cr.execute("SELECT id FROM esign_request WHERE id IN %s FOR UPDATE", [tuple(self.ids)])
        self.invalidate_recordset()
        self.signer_ids.invalidate_recordset()

    def _esign_post(self, body, message_type="notification"):
        """Log on the contract and on the request (sudo: posting needs write access on the contract)."""
        for request in self:
            request.agreement_id.sudo().message_post(body=body, message_type=message_type,
                                                     subtype_xmlid="mail.mt_note")
            request.sudo().message_post(body=body, message_type=message_type, subtype_xmlid="mail.mt_note")

    # ------------------------------------------------------------------ sending

    def _esign_build_envelope(self):
        self.ensure_one()
        company = self.company_id
        organisation = Organisation(name=company.name, tax_id=company.vat or "",
                                    country_code=company.country_id.code or "")
        signers = []
        for line in self.signer_ids.sorted("sequence"):
            signers.append(Signer(
                key=line._esign_key(), name=line.name, email=line.email, role=line.role,
                sequence=line.sequence, action=line.action, phone=line.phone or "",
                first_name=line.first_name or "", last_name=line.last_name or "",
                organisation=organisation if line.role == "company" else None,
                representation_basis=line.representation_basis or "",
                provider_user_id=line.provider_user_id or "",
            ))
        attachment = self.document_id.sudo()
        return Envelope(
            reference=self.reference,
            title=self.subject or self.agreement_id.name,
            message=self.message or "",
            language=(self.user_id.lang or "en")[:2],
            document=Document(filename=attachment.name, content=attachment.raw,
                              mimetype=attachment.mimetype or "application/pdf"),
            signers=tuple(signers),
            callback_url=self.provider_id._esign_callback_url(self),
        )

    def _esign_check_sendable(self):
        """Everything that can be checked before the first call to the provider."""
        for request in self:
            agreement = request.agreement_id
            if agreement.agreement_type_id.esign_disabled:
                raise UserError(_("E-signature is disabled for contracts of type %s.",
                                  agreement.agreement_type_id.name))
            if request.state != "draft":
                raise UserError(_("The request %s was already sent.", request.name))
            request.provider_id._esign_check_ready(request.user_id)
            if not request.document_id or not request.document_id.sudo().raw:
                raise UserError(_("There is no document to sign."))
            if not request.document_id.sudo().raw.startswith(b"%PDF"):
                raise UserError(_("The document %s is not a PDF.", request.document_id.name))
            if not request.signer_ids:
                raise UserError(_("Add at least one signer."))
            if "client" not in request.signer_ids.mapped("role"):
                raise UserError(_("Add the client as a signer."))
            for signer in request.signer_ids:
                signer._esign_check_complete()

    def _esign_send(self):
        """Send draft requests. A provider failure leaves the request in ``error`` with its message."""
        self._esign_check_sendable()
        for request in self:
            account = request.provider_id._esign_acting_account(request.user_id)
            request.write({
                "account_mode": request.provider_id.account_mode,
                "acting_account_json": json.dumps(account),
            })
            try:
                envelope = request._esign_build_envelope()
                result = request.provider_id._esign_get_client(account=account).send(envelope)
            except ProviderError as error:
                request._esign_set_error(request.provider_id._esign_error_message(error), error)
                continue
            request.write({
                "state": "sent",
                "provider_ref": result.provider_ref,
                "sent_at": fields.Datetime.now(),
                "last_error": False,
            })
            request.signer_ids._esign_update_from_provider(result.signers, initial=True)
            self.env["esign.request.event"].sudo().create({
                "provider_id": request.provider_id.id,
                "request_id": request.id,
                "source": "send",
                "event_type": "sent",
                "dedup_key": f"send:{request.reference}",
                "provider_ref": result.provider_ref,
                "payload": json.dumps(result.raw or {"provider_ref": result.provider_ref}, default=str),
                "state": "processed",
                "processed_at": fields.Datetime.now(),
                "result": _("Sent"),
            })
            request._esign_post(Markup("%s<br/>%s") % (
                _("Sent for e-signature with %(provider)s (%(ref)s).",
                  provider=request.provider_id.name, ref=result.provider_ref),
                _("Signers: %s", ", ".join(request.signer_ids.sorted("sequence").mapped(
                    lambda s: f"{s.sequence}. {s.name} <{s.email}>"))),
            ))
        return True

    def _esign_set_error(self, message, error=None):
        self.ensure_one()
        if error is not None:
            _logger.warning("E-signature request %s failed: %s", self.name, error)
        self.write({"state": "error" if self.state in ("draft", "error") else self.state,
                    "last_error": message})
        self._esign_post(_("E-signature with %(provider)s failed: %(message)s",
                           provider=self.provider_id.name, message=message))

    # ------------------------------------------------------------------ applying provider states

    def _esign_apply_status(self, status, hints=None):
        """Apply a provider's view of this request. Idempotent, never moves backwards.

        Returns a short description of what changed (stored on the event).
        """
        self.ensure_one()
        self._esign_lock()
        changes = self.signer_ids._esign_update_from_provider(status.signers)
        vals = {"last_checked_at": fields.Datetime.now()}
        if status.provider_state:
            vals["provider_state"] = status.provider_state
        new_state = status.state
        if new_state == "draft":
            new_state = "sent"  # a provider-side draft is still "sent" for us once we sent it
        moved = self.state not in REQUEST_FINAL_STATES and STATE_RANK.get(new_state, -1) > STATE_RANK[self.state]
        if moved:
            vals["state"] = new_state
            if new_state in REQUEST_FINAL_STATES:
                vals["completed_at"] = fields.Datetime.now()
                if status.reason:
                    vals["reason"] = status.reason[:250]
        self.write(vals)
        for signer, old_state in changes:
            signer._esign_log_change(old_state)
        if moved:
            self._esign_on_state_change(new_state, hints)
        if moved:
            changes_text = _("state %s", new_state)
        elif changes:
            changes_text = _("%s signer change(s)", len(changes))
        else:
            changes_text = _("no change")
        return changes_text

    def _esign_on_state_change(self, new_state, hints=None):
        self.ensure_one()
        provider = self.provider_id.name
        labels = {
            "sent": _("The contract is out for signature with %s.", provider),
            "signed": _("The contract was signed by all parties with %s.", provider),
            "refused": _("The contract was refused with %s.", provider),
            "cancelled": _("The e-signature with %s was cancelled.", provider),
            "expired": _("The e-signature with %s expired before everyone signed.", provider),
        }
        body = labels.get(new_state, new_state)
        if self.reason and new_state in ("refused", "cancelled"):
            body = f"{body} {_('Reason: %s', self.reason)}"
        self._esign_post(body)
        if new_state == "signed":
            self.agreement_id.sudo().signature_date = fields.Date.context_today(self)
            self._esign_fetch_documents(hints)
        if new_state in ("signed", "refused"):
            self._esign_notify_responsible(new_state)

    def _esign_notify_responsible(self, new_state):
        self.ensure_one()
        if new_state == "signed":
            summary = _("Contract signed: %s", self.agreement_id.name)
        else:
            summary = _("Contract refused: %s", self.agreement_id.name)
        self.agreement_id.sudo().activity_schedule(
            "esign_connector.mail_activity_esign_followup",
            summary=summary,
            note=self.reason or "",
            user_id=self.user_id.id,
        )

    def _esign_fetch_documents(self, hints=None):
        """Download and attach the signed document and the evidence. On failure, retried by cron."""
        self.ensure_one()
        try:
            client = self._esign_client()
            signed = client.download_signed(self.provider_ref, hints=hints)
            evidence = client.download_evidence(self.provider_ref, hints=hints)
        except ProviderError as error:
            message = self.provider_id._esign_error_message(error)
            self.write({"documents_pending": True, "last_error": message})
            self._esign_post(_("The signed document could not be downloaded yet (%s). "
                               "It will be retried automatically.", message))
            return False
        vals = {"documents_pending": False, "last_error": False}
        attachments = self.env["ir.attachment"]
        if signed:
            vals["signed_document_id"] = self._esign_attach(signed).id
            attachments |= self.env["ir.attachment"].browse(vals["signed_document_id"])
        if evidence:
            vals["evidence_document_id"] = self._esign_attach(evidence).id
            attachments |= self.env["ir.attachment"].browse(vals["evidence_document_id"])
        self.write(vals)
        if attachments:
            self.agreement_id.sudo().message_post(
                body=_("Signed document and audit trail from %s.", self.provider_id.name),
                attachment_ids=attachments.ids, subtype_xmlid="mail.mt_note")
        return True

    def _esign_attach(self, document):
        return self.env["ir.attachment"].sudo().create({
            "name": document.filename,
            "raw": document.content,
            "mimetype": document.mimetype,
            "res_model": "agreement",
            "res_id": self.agreement_id.id,
            "company_id": self.company_id.id,
        })

    # ------------------------------------------------------------------ user actions

    def action_esign_refresh(self):
        """Read the status from the provider and apply it, like a notification."""
        for request in self:
            if not request.provider_ref:
                continue
            request._esign_refresh(raise_errors=True)
        return True

    def _esign_refresh(self, raise_errors=False):
        self.ensure_one()
        event_model = self.env["esign.request.event"].sudo()
        try:
            status = self._esign_client().get_status(self.provider_ref)
        except ProviderError as error:
            message = self.provider_id._esign_error_message(error)
            self.sudo().write({"last_error": message, "last_checked_at": fields.Datetime.now()})
            if raise_errors:
                raise UserError(message) from error
            return False
        event = event_model._esign_store_status_read(self, status)
        event._esign_process()
        if self.state == "signed" and self.documents_pending:
            self._esign_fetch_documents()
        if raise_errors and event.state == "failed":
            raise UserError(event.result)
        return True

    def action_esign_cancel(self):
        for request in self:
            if request.state != "sent":
                raise UserError(_("Only a request waiting for signatures can be cancelled."))
            try:
                request._esign_client().cancel(request.provider_ref, _("Cancelled by %s", self.env.user.name))
            except ProviderError as error:
                raise UserError(request.provider_id._esign_error_message(error)) from error
            request.sudo().write({"reason": _("Cancelled by %s", self.env.user.name)})
            request.sudo()._esign_apply_status_state("cancelled")
        return True

    def _esign_apply_status_state(self, state):
        """Move to ``state`` after an action we did ourselves (same rules as provider states)."""
        return self._esign_apply_status(EnvelopeStatus(provider_ref=self.provider_ref, state=state))

    def action_esign_remind(self):
        for request in self:
            if request.state != "sent":
                raise UserError(_("Only a request waiting for signatures can be reminded."))
            try:
                request._esign_client().remind(request.provider_ref)
            except ProviderError as error:
                raise UserError(request.provider_id._esign_error_message(error)) from error
            request._esign_post(_("Reminder sent by %s to the signer whose turn it is.", self.env.user.name))
        return {
            "type": "ir.actions.client", "tag": "display_notification",
            "params": {"type": "success", "message": _("Reminder sent.")},
        }

    def action_view_events(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_request_event_action")
        action["domain"] = [("request_id", "=", self.id)]
        action["context"] = {"create": False}
        return action

    # ------------------------------------------------------------------ cron

    @api.model
    def _cron_esign_refresh(self, batch_size=50):
        """Pull the status of open requests (missed callbacks), retry stored events and downloads."""
        self.env["esign.request.event"]._esign_retry_failed(limit=batch_size)
        requests = self.search(
            ["|", ("state", "in", OPEN_STATES), "&", ("state", "=", "signed"), ("documents_pending", "=", True)],
            order="last_checked_at asc nulls first, id", limit=batch_size)
        for request in requests:
            try:
                with self.env.cr.savepoint():
                    request._esign_refresh()
            except Exception:  # one broken request must not stop the batch
                _logger.exception("E-signature refresh of %s failed", request.name)
            if not getattr(threading.current_thread(), "testing", False):
                self.env.cr.commit()  # keep each request's progress, like any batch cron
        return len(requests)
