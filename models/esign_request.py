# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""One sending of one contract to an e-signature provider, and its state machine.

States only move forward along :data:`TRANSITIONS`; final states never change. That one rule makes
duplicated, replayed and out-of-order notifications harmless, and lets callbacks and status reads
(refresh button, cron) go through the same :meth:`_esign_apply_status`.

Nobody writes a request directly: the model ACLs grant no write access, :meth:`write` refuses the
technical fields outside superuser mode and refuses any state change the machine does not allow,
even in superuser mode. Sending is an outbox (:mod:`.esign_request_outbox`): the request is
committed in ``sending`` before the provider is called, once.
"""
import contextlib
import datetime
import json
import logging
import threading
import uuid

from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError

from ..api.base import Document, ProviderError
from .esign_access import GROUP_MANAGER, check_esign_right
from .esign_after_commit import new_environment

_logger = logging.getLogger(__name__)

STATES = [
    ("sending", "Sending"), ("sent", "Sent"), ("signed", "Signed"), ("refused", "Refused"),
    ("cancelled", "Cancelled"), ("expired", "Expired"), ("error", "Error"),
]
FINAL_STATES = frozenset({"signed", "refused", "cancelled", "expired", "error"})
# A contract has at most one request in these states (a partial unique index says so).
LIVE_STATES = ("sending", "sent", "signed")
OPEN_STATES = ("sent",)
TRANSITIONS = {
    "sending": {"sent", "error"},
    "sent": {"signed", "refused", "cancelled", "expired", "error"},
}
# What the provider says, as a rank: a status read that ranks lower than where we are is ignored.
STATE_RANK = {"sending": 0, "sent": 1, "signed": 2, "refused": 2, "cancelled": 2, "expired": 2, "error": 2}

# Written only by the module's own code (superuser), never by a user, not even an administrator.
PROTECTED_FIELDS = frozenset({
    "state", "reference", "provider_ref", "provider_state", "provider_id", "agreement_id",
    "company_id", "user_id", "account_mode", "acting_account_json", "document_id", "signed_document_id",
    "evidence_document_id", "documents_pending", "last_error", "reason", "sent_at", "completed_at",
    "last_checked_at", "callback_token", "signer_ids", "send_attempts", "send_claimed_at",
    "send_next_attempt_at", "send_outcome_unknown", "subject", "message", "last_error_code",
})


class EsignRequest(models.Model):
    _name = "esign.request"
    _description = "E-Signature Request"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _order = "id desc"
    _check_company_auto = True
    _mail_post_access = "read"  # salespeople may comment on the requests they can see

    name = fields.Char(required=True, readonly=True, copy=False, default=lambda self: _("New"))
    reference = fields.Char(
        required=True, readonly=True, copy=False, index=True,
        default=lambda self: uuid.uuid4().hex,
        help="Our reference, sent to the provider with the document.",
    )
    agreement_id = fields.Many2one("agreement", string="Contract", required=True, ondelete="restrict",
                                   index=True, check_company=True, readonly=True)
    partner_id = fields.Many2one(related="agreement_id.partner_id")
    provider_id = fields.Many2one("esign.provider", required=True, ondelete="restrict", index=True,
                                  check_company=True, readonly=True)
    provider_code = fields.Selection(related="provider_id.code")
    company_id = fields.Many2one("res.company", required=True, index=True, readonly=True,
                                 default=lambda self: self.env.company)
    user_id = fields.Many2one("res.users", string="Sender", required=True, readonly=True,
                              default=lambda self: self.env.user, index=True)
    account_mode = fields.Selection(
        [("individual", "Individual accounts"), ("central", "Central representative")], readonly=True)
    acting_account_json = fields.Text(readonly=True, copy=False, groups=GROUP_MANAGER,
                                      help="The provider account the request was sent with.")
    state = fields.Selection(STATES, default="sending", required=True, readonly=True, copy=False,
                             tracking=True, index=True)
    provider_ref = fields.Char(string="Provider Reference", readonly=True, copy=False, index=True)
    provider_state = fields.Char(string="Provider Status", readonly=True, copy=False)
    subject = fields.Char(readonly=True)
    message = fields.Text(readonly=True)
    signer_ids = fields.One2many("esign.request.signer", "request_id", string="Signers", readonly=True)
    event_ids = fields.One2many("esign.request.event", "request_id", string="Events", readonly=True,
                                groups=GROUP_MANAGER)
    event_count = fields.Integer(compute="_compute_event_count", groups=GROUP_MANAGER)
    document_id = fields.Many2one("ir.attachment", string="Sent Document", readonly=True, copy=False)
    signed_document_id = fields.Many2one("ir.attachment", string="Signed Document", readonly=True,
                                         copy=False)
    evidence_document_id = fields.Many2one("ir.attachment", string="Audit Trail", readonly=True,
                                           copy=False)
    documents_pending = fields.Boolean(
        readonly=True, copy=False,
        help="Signed, but the signed document could not be downloaded yet; the cron retries.")
    last_error = fields.Text(readonly=True, copy=False)
    last_error_code = fields.Char(
        string="Error Code", readonly=True, copy=False,
        help="Why the request failed or waits, as a stable code (see the README): the provider refused it, "
        "is unavailable, reports a failure, or did not confirm a send.")
    reason = fields.Char(string="Refusal / Cancellation Reason", readonly=True, copy=False)
    sent_at = fields.Datetime(readonly=True, copy=False)
    completed_at = fields.Datetime(readonly=True, copy=False)
    last_checked_at = fields.Datetime(readonly=True, copy=False, index=True)
    callback_token = fields.Char(readonly=True, copy=False, groups="base.group_system", index=True,
                                 help="Secret part of this request's notification URL, for providers "
                                      "whose notifications are not signed.")
    # Outbox (see esign_request_outbox.py)
    send_attempts = fields.Integer(readonly=True, copy=False)
    send_claimed_at = fields.Datetime(
        readonly=True, copy=False,
        help="Set while a worker calls the provider for this request; cleared when the answer is "
        "recorded. A claim that stays means the worker died during the call.")
    send_next_attempt_at = fields.Datetime(readonly=True, copy=False, index=True)
    send_outcome_unknown = fields.Boolean(
        string="Sending Unclear", readonly=True, copy=False,
        help="The provider may have received the contract although it did not confirm it. The "
        "request is looked up at the provider before anything is sent again.")

    def init(self):
        # One live request per contract, enforced by the database (two wizards in two tabs, two
        # users, a retried RPC: the second insert fails instead of making a second envelope).
        self.env.cr.execute("""
            CREATE UNIQUE INDEX IF NOT EXISTS esign_request_one_live_per_agreement
                ON esign_request (agreement_id) WHERE state IN %s
        """, [LIVE_STATES])

    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su:
            raise AccessError(_("E-signature requests are created by sending a contract, not directly."))
        for vals in vals_list:
            if vals.get("name", _("New")) == _("New"):
                vals["name"] = self.env["ir.sequence"].next_by_code("esign.request") or _("New")
        return super().create(vals_list)

    def write(self, vals):
        protected = PROTECTED_FIELDS.intersection(vals)
        if protected and not self.env.su:
            raise AccessError(_("E-signature requests change only through their actions (send, refresh, "
                                "cancel); these fields cannot be written: %s", ", ".join(sorted(protected))))
        if "state" in vals:
            for request in self:
                request._esign_check_transition(vals["state"])
        return super().write(vals)

    def _esign_check_transition(self, new_state):
        self.ensure_one()
        if new_state != self.state and new_state not in TRANSITIONS.get(self.state, ()):
            raise ValidationError(_("The e-signature request %(name)s cannot go from %(old)s to %(new)s.",
                                    name=self.name, old=self.state, new=new_state))

    def unlink(self):
        self.check_access("unlink")
        if not self.env.su and any(request.state in ("sending", "sent") for request in self):
            raise UserError(_("A request that is being sent or waiting for signatures cannot be deleted: "
                              "cancel it first."))
        return super().unlink()

    def _compute_event_count(self):
        groups = self.env["esign.request.event"]._read_group(
            [("request_id", "in", self.ids)], ["request_id"], ["__count"])
        counts = {request.id: count for request, count in groups}
        for request in self:
            request.event_count = counts.get(request.id, 0)

    # ------------------------------------------------------------------ helpers

    def _esign_acting_account(self):
        self.ensure_one()
        if self.sudo().acting_account_json:
            return json.loads(self.sudo().acting_account_json)
        return self.provider_id._esign_acting_account(self.user_id)

    def _esign_client(self):
        """A client acting for the account this request was sent with, in the sender's environment
        (language, time zone), whoever runs it (a cron, a job, a callback)."""
        self.ensure_one()
        provider = self.provider_id.with_user(self.user_id).sudo()
        return provider._esign_get_client(account=self._esign_acting_account())

    def _esign_lock(self):
        """Serialise concurrent processing of this request (row lock until commit)."""
        self.env.cr.execute("SELECT id FROM esign_request WHERE id IN %s FOR UPDATE", [tuple(self.ids)])
        self.invalidate_recordset()
        self.signer_ids.invalidate_recordset()

    @contextlib.contextmanager
    def _esign_own_transaction(self):
        """An environment on a new cursor, committed on exit: for facts that must outlive a rollback
        of the caller's transaction (an outbox claim, the answer of a provider call)."""
        registry = self.env.registry
        with registry.cursor() as cr:
            yield new_environment(registry, cr, self.env.uid, self.env.context, su=True)
        self.invalidate_recordset()

    def _esign_post(self, body, by_provider=True, attachment_ids=None, author=None):
        """Log on the contract and on the request.

        What the provider tells us is authored by OdooBot (a callback arrives as the public user,
        a cron as whoever runs it); what a user does is authored by that user (``author``, or the
        current user).
        """
        author = author or (self.env.ref("base.partner_root") if by_provider else self.env.user.partner_id)
        for request in self:
            for record in (request.agreement_id.sudo(), request.sudo()):
                record.message_post(body=body, message_type="notification", subtype_xmlid="mail.mt_note",
                                    author_id=author.id, attachment_ids=attachment_ids or [])
                attachment_ids = None  # attached once, on the contract

    def message_post(self, **kwargs):
        """Users comment as themselves: OdooBot's notes are the provider's (see :meth:`_esign_post`)."""
        author_id = kwargs.get("author_id")
        if author_id and not self.env.su and author_id != self.env.user.partner_id.id:
            raise AccessError(_("You can post on e-signature requests only in your own name."))
        return super().message_post(**kwargs)

    def _esign_is_testing(self):
        return getattr(threading.current_thread(), "testing", False)

    # ------------------------------------------------------------------ applying provider states

    def _esign_set_state(self, new_state, vals=None):
        """The only place a request changes state (``write`` checks the transition too)."""
        self.ensure_one()
        vals = dict(vals or {}, state=new_state)
        if new_state in FINAL_STATES and not self.completed_at and "completed_at" not in vals:
            vals["completed_at"] = fields.Datetime.now()
        self.sudo().write(vals)
        if new_state == "error":  # what a following automation rule reads on the contract
            self.agreement_id.sudo().write({"esign_error_code": self.last_error_code,
                                            "esign_error_message": self.last_error})
        elif new_state == "sent":
            self.agreement_id.sudo().write({"esign_error_code": False, "esign_error_message": False})

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
        new_state = "sent" if status.state == "draft" else status.state  # a provider draft we sent
        moved = self.state not in FINAL_STATES and STATE_RANK.get(new_state, -1) > STATE_RANK[self.state] \
            and new_state in TRANSITIONS.get(self.state, ())
        self.sudo().write(vals)
        if moved:
            final_vals = {}
            if new_state in FINAL_STATES:
                final_vals["completed_at"] = status.completed_at.replace(tzinfo=None) if status.completed_at \
                    else fields.Datetime.now()
                if status.reason:
                    final_vals["reason"] = status.reason[:250]
            if new_state == "error":
                final_vals["last_error_code"] = "ESIGN_PROVIDER_FAILED"
                final_vals["last_error"] = _("%(provider)s reports that the signature failed: %(reason)s",
                                             provider=self.provider_id.name,
                                             reason=status.reason or status.provider_state or _("no detail"))
            self._esign_set_state(new_state, final_vals)
        for signer, old_state in changes:
            signer._esign_log_change(old_state)
        if moved:
            self._esign_on_state_change(new_state, status, hints)
            return _("state %s", new_state)
        if changes:
            return _("%s signer change(s)", len(changes))
        return _("no change")

    def _esign_on_state_change(self, new_state, status=None, hints=None):
        self.ensure_one()
        provider = self.provider_id.name
        labels = {
            "sent": _("The contract is out for signature with %s.", provider),
            "signed": _("The contract was signed by all parties with %s.", provider),
            "refused": _("The contract was refused with %s.", provider),
            "cancelled": _("The e-signature with %s was cancelled.", provider),
            "expired": _("The e-signature with %s expired before everyone signed.", provider),
            "error": self.last_error or _("The e-signature with %s failed.", provider),
        }
        body = labels.get(new_state, new_state)
        if self.reason and new_state in ("refused", "cancelled"):
            body = f"{body} {_('Reason: %s', self.reason)}"
        self._esign_post(body)
        if new_state == "signed":
            self.agreement_id.sudo().signature_date = self._esign_signature_date(status)
            self._esign_fetch_documents(hints)
        if new_state in ("signed", "refused", "expired", "error"):
            self._esign_notify_responsible(new_state)
        self.agreement_id.sudo()._esign_on_signature_outcome(new_state, self)

    def _esign_signature_date(self, status=None):
        """The day the provider completed the signature, in the sender's time zone; today if unknown."""
        when = (status.completed_at if status else None) or self.completed_at \
            or max(self.signer_ids.mapped("state_date") or [False]) or fields.Datetime.now()
        if when.tzinfo is not None:
            when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return fields.Date.context_today(self.with_user(self.user_id), timestamp=when)

    def _esign_notify_responsible(self, new_state):
        """Tell the sender of the outcome: an activity, an e-mail or both (the company's setting)."""
        self.ensure_one()
        summaries = {
            "signed": _("Contract signed: %s", self.agreement_id.name),
            "refused": _("Contract refused: %s", self.agreement_id.name),
            "expired": _("E-signature expired: %s", self.agreement_id.name),
            "error": _("E-signature failed: %s", self.agreement_id.name),
        }
        summary, note = summaries[new_state], self.reason or self.last_error or ""
        mode = self.company_id.esign_notify_mode or "activity"
        if mode in ("activity", "both"):
            self.agreement_id.sudo().activity_schedule(
                "esign_connector.mail_activity_esign_followup", summary=summary, note=note, user_id=self.user_id.id)
        if mode in ("email", "both") and self.user_id.email:
            url = f"{self.get_base_url()}/odoo/action-esign_connector.esign_request_action/{self.id}"
            body = Markup("<p>%s</p><p>%s</p><p><a href='%s'>%s</a></p>") % (
                summary, note, url, _("Open the request %s", self.name))
            self.env["mail.mail"].sudo().create({
                "subject": summary, "body_html": body, "email_to": self.user_id.email_formatted,
                "email_from": self.company_id.email_formatted or self.env.ref("base.partner_root").email_formatted,
                "model": "agreement", "res_id": self.agreement_id.id, "auto_delete": True,
            })

    def _esign_fetch_documents(self, hints=None):
        """Download and attach the signed document and the evidence. On failure, retried by cron."""
        self.ensure_one()
        try:
            client = self._esign_client()
            signed = client.download_signed(self.provider_ref, hints=hints)
            evidence = client.download_evidence(self.provider_ref, hints=hints)
        except ProviderError as error:
            message = self.provider_id._esign_error_message(error)
            first_time = not self.documents_pending
            self.sudo().write({"documents_pending": True, "last_error": message})
            if first_time:
                self._esign_post(_("The signed document could not be downloaded yet (%s). "
                                   "It will be retried automatically.", message))
            return False
        vals = {"documents_pending": False, "last_error": False}
        attachments = self.env["ir.attachment"]
        if signed and not self.signed_document_id:
            attachments |= self._esign_attach(signed)
            vals["signed_document_id"] = attachments[-1:].id
        if evidence and not self.evidence_document_id:
            attachments |= self._esign_attach(evidence)
            vals["evidence_document_id"] = attachments[-1:].id
        self.sudo().write(vals)
        if attachments:
            self._esign_post(_("Signed document and audit trail from %s.", self.provider_id.name),
                             attachment_ids=attachments.ids)
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

    # ------------------------------------------------------------------ reading the status

    def _esign_refresh(self):
        """Read the status from the provider and apply it like a notification.

        Returns ``(ok, message)``. The read is stored as an event before it is applied; a failed
        read or a failed application is recorded on the request (``last_error``, and the event),
        never only raised, so that the caller's rollback cannot erase it.
        """
        self.ensure_one()
        request = self.sudo()
        try:
            status = request._esign_client().get_status(request.provider_ref)
        except ProviderError as error:
            message = request.provider_id._esign_error_message(error)
            request.write({"last_error": message, "last_checked_at": fields.Datetime.now()})
            return False, message
        event = self.env["esign.request.event"].sudo()._esign_store_status_read(request, status)
        event._esign_process()
        if request.state == "signed" and request.documents_pending:
            request._esign_fetch_documents()
        if event.state == "failed":
            return False, event.result
        return True, event.result

    def action_esign_refresh(self):
        """Refresh status: read where each request stands at the provider.

        Errors are not raised (a raise would roll back what was recorded): they are stored on the
        request and shown in a notification.
        """
        check_esign_right(self.env, "refresh")
        self.check_access("read")
        problems = []
        for request in self:
            if request.state == "sending":
                problems.append(request._esign_sending_message())
                continue
            if not request.provider_ref:
                continue
            ok, message = request._esign_refresh()
            if not ok:
                problems.append(message)
        if problems:
            return {"type": "ir.actions.client", "tag": "display_notification",
                    "params": {"type": "warning", "sticky": True, "message": "\n".join(problems),
                               "next": {"type": "ir.actions.client", "tag": "soft_reload"}}}
        return {"type": "ir.actions.client", "tag": "display_notification",
                "params": {"type": "success", "message": _("Status read from the provider."),
                           "next": {"type": "ir.actions.client", "tag": "soft_reload"}}}

    def action_esign_cancel(self):
        """Withdraw the document at the provider (managers). The call runs once, after commit."""
        check_esign_right(self.env, "cancel")
        self.check_access("read")
        for request in self.sudo():
            request._esign_check_no_command_pending("cancel")
            if request.state != "sent":
                raise UserError(_("Only a request waiting for signatures can be cancelled."))
            if not request._esign_client().supports("cancel"):
                raise UserError(_("%s offers no way to withdraw a document through its API: withdraw it in "
                                  "%s itself, then refresh the status.", request.provider_id.name,
                                  request.provider_id.name))
            reason = _("Cancelled by %s", self.env.user.name)
            self.env["esign.request.event"]._esign_queue_command(request, "cancel", reason=reason)
            request._esign_post(_("Cancellation requested by %s.", self.env.user.name), by_provider=False)
        return {"type": "ir.actions.client", "tag": "display_notification",
                "params": {"type": "info", "message": _("Cancellation sent to the provider."),
                           "next": {"type": "ir.actions.client", "tag": "soft_reload"}}}

    def action_esign_remind(self):
        """Ask the provider to remind the signer whose turn it is. The call runs once, after commit."""
        check_esign_right(self.env, "remind")
        self.check_access("read")
        for request in self.sudo():
            request._esign_check_no_command_pending("remind")
            if request.state != "sent":
                raise UserError(_("Only a request waiting for signatures can be reminded."))
            if not request._esign_client().supports("remind"):
                raise UserError(_("%(provider)s offers no reminders through its API: %(provider)s reminds the "
                                  "signers itself, or send them a message.", provider=request.provider_id.name))
            self.env["esign.request.event"]._esign_queue_command(request, "remind")
        return {"type": "ir.actions.client", "tag": "display_notification",
                "params": {"type": "success", "message": _("Reminder sent.")}}

    def _esign_check_no_command_pending(self, command):
        pending = self.env["esign.request.event"].sudo().search_count([
            ("request_id", "=", self.id), ("source", "=", "command"), ("event_type", "=", command),
            ("state", "in", ("queued", "running"))])
        if pending:
            raise UserError(_("This was already asked of %(provider)s for %(request)s a moment ago.",
                              provider=self.provider_id.name, request=self.name))

    def _esign_sending_message(self):
        self.ensure_one()
        if self.send_outcome_unknown:
            return self.last_error or _("%s did not confirm whether it received the contract.",
                                        self.provider_id.name)
        return _("The contract is being sent to %s.", self.provider_id.name)

    def action_view_events(self):
        self.ensure_one()
        check_esign_right(self.env, "read_events")
        action = self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_request_event_action")
        action["domain"] = [("request_id", "=", self.id)]
        action["context"] = {"create": False}
        return action

    # ------------------------------------------------------------------ cron

    @api.model
    def _cron_esign_refresh(self, batch_size=50):
        """Pull the status of open requests (missed callbacks) and retry signed-document downloads.

        Oldest check first; each request in its own savepoint; a request whose read fails still
        gets its ``last_checked_at`` (outside the savepoint), so it goes to the back of the queue
        instead of starving the others.
        """
        requests = self.sudo().search(
            ["|", ("state", "in", OPEN_STATES), "&", ("state", "=", "signed"), ("documents_pending", "=", True)],
            order="last_checked_at asc nulls first, id", limit=batch_size)
        full = set()  # providers whose rate-limit window is full: their requests wait for the next run
        for request in requests:
            if request.provider_id in full:
                continue
            if request.provider_id._esign_reserve_calls(1):
                full.add(request.provider_id)
                continue
            try:
                with self.env.cr.savepoint():
                    request._esign_refresh()
            except Exception as error:  # one broken request must not stop the batch
                _logger.exception("E-signature refresh of %s failed", request.name)
                request.write({"last_checked_at": fields.Datetime.now(),
                               "last_error": _("Status read failed: %s", error)})
            self._esign_commit_progress()
        return len(requests)

    def _esign_commit_progress(self):
        """Keep each item's progress, like any batch cron (not in tests, whose cursor cannot commit)."""
        if not self._esign_is_testing():
            self.env.cr.commit()

    def _esign_document(self):
        """The document to send, as the provider-neutral :class:`Document`."""
        attachment = self.document_id.sudo()
        return Document(filename=attachment.name, content=attachment.raw,
                        mimetype=attachment.mimetype or "application/pdf")
