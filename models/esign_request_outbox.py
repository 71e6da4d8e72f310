# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Sending as an outbox: committed first, the provider called once, the answer recorded.

Why: the provider is a remote system. A send made inside the user's transaction is repeated when
Odoo retries that transaction (serialisation failure), leaves an orphan envelope when it rolls back
after the call, and leaves no trace when the worker is killed. So:

1. :meth:`_esign_queue_send` checks everything and creates the request in ``sending`` with our
   reference, in the caller's transaction. Nothing is called yet.
2. After that transaction commits (post-commit hook, or a ``queue_job`` job when that module is
   installed, or the outbox cron as a safety net), :meth:`_esign_outbox_run` *claims* the request in
   its own committed transaction, calls the provider outside any transaction, then records the
   answer in another committed transaction.
3. A claim that outlives its worker, or an answer that never came (timeout, 5xx, lost response),
   leaves the outcome *unknown*: before anything is sent again the envelope is looked up by our
   reference where the provider can (``find_by_reference``); where it cannot, the request stays in
   ``sending`` with a message saying what to check, and a manager decides.

Commands on a sent request (cancel, remind) are queued the same way, as ``command`` events.
"""
import datetime
import json
import logging
import secrets

from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import mute_logger

import psycopg2

from ..api.base import Envelope, Organisation, ProviderError, SendResult, Signer
from . import esign_send_checks as checks
from .esign_access import check_esign_right
from .esign_after_commit import schedule_after_commit

_logger = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 6
RETRY_DELAYS_MINUTES = (1, 5, 15, 60, 180)
STALE_CLAIM_MINUTES = 10  # far above the transport's timeouts and retries: the worker died


ERROR_CODES = {
    "auth": "ESIGN_PROVIDER_AUTH",
    "config": "ESIGN_PROVIDER_INCOMPLETE",
    "rejected": "ESIGN_PROVIDER_REJECTED",
    "not_found": "ESIGN_PROVIDER_REJECTED",
    "conflict": "ESIGN_PROVIDER_REJECTED",
    "rate_limited": "ESIGN_RATE_LIMITED",
    "unavailable": "ESIGN_PROVIDER_UNAVAILABLE",
    "timeout": "ESIGN_PROVIDER_UNAVAILABLE",
    "protocol": "ESIGN_PROVIDER_UNAVAILABLE",
}
QUOTA_WORDS = ("quota", "credit", "insufficient funds", "no more envelopes", "limit of documents")


def error_code(error):
    """The stable code of a provider's refusal (README, "Pre-send check codes")."""
    if error.outcome_unknown:
        return "ESIGN_OUTCOME_UNKNOWN"
    if error.status_code == 402 or any(word in (error.detail or "").lower() for word in QUOTA_WORDS):
        return "ESIGN_QUOTA"  # the provider says the account has no envelopes or credits left
    return ERROR_CODES.get(error.kind, "ESIGN_PROVIDER_UNAVAILABLE")


class EsignRequestOutbox(models.Model):
    _inherit = "esign.request"

    # ------------------------------------------------------------------ 1. queue

    @api.model
    def _esign_send_problems(self, agreement, provider, user, document, signers):
        """Every problem that prevents sending, as :class:`~.esign_send_checks.SendProblem`."""
        problems = checks.agreement_problems(agreement, user)
        provider_problems = checks.provider_problems(provider, agreement, user)
        problems += provider_problems
        problems += checks.document_problems(document, agreement, user)
        company_signer = self._esign_company_signer(provider, user) if provider and not provider_problems else None
        problems += checks.company_signer_problems(signers, company_signer, provider)
        clients = [s for s in signers if s.get("role") != "company"]
        if company_signer:
            given = [s for s in signers if s.get("role") == "company"]
            last = max([s.get("sequence") or 0 for s in clients] or [0])
            sequence = given[0].get("sequence") if given and given[0].get("sequence") is not None else last + 1
            clients = clients + [dict(company_signer, sequence=sequence)]
        problems += checks.signer_problems(self.env, clients,
                                           phone_required=bool(provider) and provider.sudo()._esign_phone_required())
        return problems

    @api.model
    def _esign_company_signer(self, provider, user):
        """The company's signer, decided by the server from the provider's mode, never by the caller.

        Central: the representative; individual: the sender's own account at the provider.
        """
        values = provider.sudo()._esign_company_signer_values(user)
        account = provider.sudo()._esign_acting_account(user)
        company_user = self.env["res.users"].sudo().browse(account.get("user_id")).exists()
        values.setdefault("phone", company_user.partner_id.mobile or company_user.partner_id.phone or False)
        first, _sep, last = (values.get("name") or "").partition(" ")
        values.update({
            "first_name": account.get("first_name") or first,
            "last_name": account.get("last_name") or last,
            "provider_user_id": account.get("provider_user_id") or False,
        })
        return values

    @api.model
    def _esign_queue_send(self, agreement, provider, document, signers, subject="", message="", user=None):
        """Check, then create the request in ``sending`` and schedule its one provider call.

        ``signers`` are the client lines (dicts with name, email, phone, partner_id, action,
        sequence); a company line, if given, must be the one the provider's mode decides, and is
        replaced by it. Raises :class:`UserError` listing every problem.
        """
        user = user or self.env.user
        check_esign_right(self.env(user=user, su=False), "send")
        problems = self._esign_send_problems(agreement, provider, user, document, signers)
        if problems:
            raise checks.SendRefused(problems)
        provider = provider.sudo()
        company_signer = self._esign_company_signer(provider, user)
        clients = sorted((s for s in signers if s.get("role") != "company"), key=lambda s: s.get("sequence") or 0)
        signer_commands = []
        for index, line in enumerate(clients, start=1):
            first, _sep, last = (line.get("name") or "").partition(" ")
            signer_commands.append(fields.Command.create({
                "partner_id": line.get("partner_id") or False, "name": line["name"], "email": line["email"],
                "phone": line.get("phone") or False, "role": "client", "sequence": index,
                "action": line.get("action") or "sign", "first_name": first, "last_name": last,
            }))
        signer_commands.append(fields.Command.create(dict(
            company_signer, role="company", sequence=len(clients) + 1, action="sign")))
        account = provider._esign_acting_account(user)
        vals = {
            "agreement_id": agreement.id,
            "provider_id": provider.id,
            "company_id": (agreement.company_id or self.env.company).id,
            "user_id": user.id,
            "subject": subject or agreement.name,
            "message": message or False,
            "document_id": document.id,
            "account_mode": provider.account_mode,
            "acting_account_json": json.dumps(account),
            "callback_token": secrets.token_urlsafe(32),
            "signer_ids": signer_commands,
        }
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                request = self.sudo().create(vals)
        except psycopg2.errors.UniqueViolation as error:
            # Another tab, user or retried call queued this contract a moment ago.
            raise checks.SendRefused([checks.SendProblem("ESIGN_ALREADY_OUT", _(
                "The contract %s is already being sent or out for signature.", agreement.display_name))]) from error
        request._esign_post(_("Sending for e-signature with %s.", provider.name), by_provider=False)
        request._esign_schedule_outbox()
        return request

    def _esign_schedule_outbox(self):
        """Run the send once this transaction has committed (see :mod:`.esign_after_commit`)."""
        for request in self:
            schedule_after_commit(request, "_esign_outbox_run", channel=f"root.esign.{request.provider_id.code}",
                                  description=_("E-signature: send %s", request.name),
                                  identity_key=lambda r: f"esign-send-{r.id}-{r.send_attempts}")

    # ------------------------------------------------------------------ 2. run

    def _esign_outbox_run(self):
        """Claim, call, record — each request once. Returns how many were sent or settled."""
        done = 0
        for request_id in self.ids:
            try:
                done += bool(self.browse(request_id)._esign_outbox_run_one())
            except Exception:  # one broken request must not stop the others; the cron retries
                _logger.exception("E-signature: outbox run of request %s failed", request_id)
        return done

    def _esign_outbox_run_one(self):
        self.ensure_one()
        with self._esign_own_transaction() as env:
            claim = env["esign.request"].browse(self.id)._esign_outbox_claim()
        if claim is None:
            return False
        client, envelope, lookup_first = claim
        outcome = self._esign_outbox_call(client, envelope, lookup_first)
        for attempt in range(3):  # recording must not be lost to a serialisation failure
            try:
                with self._esign_own_transaction() as env:
                    env["esign.request"].browse(self.id)._esign_outbox_record(
                        outcome, can_lookup=client.can_find_by_reference)
                break
            except psycopg2.errors.SerializationFailure:
                if attempt == 2:
                    raise
        return True

    def _esign_outbox_claim(self):
        """Lock and mark the request as being sent (committed by the caller's own transaction).

        Returns ``(client, envelope, lookup_first)`` or ``None`` when it is not due, or taken.
        """
        self.ensure_one()
        self.env.cr.execute("""
            SELECT id FROM esign_request
             WHERE id = %s AND state = 'sending' AND send_claimed_at IS NULL
               AND (send_next_attempt_at IS NULL OR send_next_attempt_at <= %s)
               FOR UPDATE SKIP LOCKED
        """, [self.id, fields.Datetime.now()])
        if not self.env.cr.fetchone():
            return None
        self.invalidate_recordset()
        try:
            client = self._esign_client()
            envelope = self._esign_build_envelope()
        except (ProviderError, UserError) as error:
            message = error.args[0] if isinstance(error, UserError) else \
                self.provider_id._esign_error_message(error)
            code = error_code(error) if isinstance(error, ProviderError) else "ESIGN_PROVIDER_INCOMPLETE"
            self._esign_set_state("error", {"last_error": message, "last_error_code": code,
                                            "send_next_attempt_at": False})
            self._esign_post(_("E-signature with %(provider)s failed: %(message)s",
                               provider=self.provider_id.name, message=message))
            return None
        lookup_first = self.send_outcome_unknown
        if lookup_first and not client.can_find_by_reference:
            if self.send_next_attempt_at:  # e.g. its worker died during the call: a manager decides
                self._esign_park_for_manager(_("The worker sending it stopped during the call."))
            return None
        wait = self.provider_id._esign_reserve_calls(client.calls_per_send + (1 if lookup_first else 0))
        if wait:  # the provider's window is full: next window, and the cron wakes up then
            self.sudo().write({"send_next_attempt_at": wait})
            self.env["esign.request.event"]._esign_wake_processing_at(wait)
            return None
        self.sudo().write({"send_claimed_at": fields.Datetime.now(), "send_attempts": self.send_attempts + 1})
        return client, envelope, lookup_first

    @api.model
    def _esign_outbox_call(self, client, envelope, lookup_first):
        """The provider call itself, outside any transaction. Returns a SendResult or the error."""
        try:
            if lookup_first:
                found = client.find_by_reference(envelope.reference)
                if found is not None:
                    return found
            return client.send(envelope)
        except ProviderError as error:
            return error
        except Exception as error:  # a bug in a client must not leave the request claimed forever
            _logger.exception("E-signature: unexpected error while sending %s", envelope.reference)
            return ProviderError("protocol", f"{type(error).__name__}: {error}", provider=client.code,
                                 outcome_unknown=True)

    def _esign_outbox_record(self, outcome, can_lookup=False):
        """Record the provider's answer on the request (in its own transaction).

        ``can_lookup``: whether the client can find an envelope by our reference, which decides what
        an unclear outcome leads to.
        """
        self.ensure_one()
        self._esign_lock()
        if self.state != "sending":
            if isinstance(outcome, SendResult) and outcome.provider_ref != self.provider_ref:
                _logger.error("E-signature request %s: a second envelope %s answered after the request "
                              "was settled", self.name, outcome.provider_ref)
                self._esign_post(_("%(provider)s created a second envelope (%(ref)s) for this contract after "
                                   "the request was settled. Withdraw it at %(provider)s.",
                                   provider=self.provider_id.name, ref=outcome.provider_ref))
            return
        if isinstance(outcome, SendResult):
            self._esign_outbox_sent(outcome)
        else:
            self._esign_outbox_failed(outcome, can_lookup)

    def _esign_outbox_sent(self, result):
        now = fields.Datetime.now()
        self._esign_set_state("sent", {
            "provider_ref": result.provider_ref, "sent_at": now, "last_error": False, "last_error_code": False,
            "send_claimed_at": False, "send_next_attempt_at": False, "send_outcome_unknown": False,
        })
        self.signer_ids._esign_update_from_provider(result.signers, initial=True)
        self.env["esign.request.event"].sudo().create({
            "provider_id": self.provider_id.id,
            "request_id": self.id,
            "source": "send",
            "event_type": "sent",
            "dedup_key": f"send:{self.reference}",
            "provider_ref": result.provider_ref,
            "reference": self.reference,
            "payload": json.dumps(result.raw or {"provider_ref": result.provider_ref}, default=str),
            "state": "processed",
            "processed_at": now,
            "result": _("Sent"),
        })
        signers = ", ".join(self.signer_ids.sorted("sequence").mapped(lambda s: f"{s.sequence}. {s.name} <{s.email}>"))
        self._esign_post(Markup("%s<br/>%s") % (
            _("Sent for e-signature with %(provider)s (%(ref)s).", provider=self.provider_id.name,
              ref=result.provider_ref),
            _("Signers: %s", signers)), author=self.user_id.partner_id)
        for warning in result.warnings or ():
            self._esign_post(_("%(provider)s: %(warning)s", provider=self.provider_id.name, warning=warning))
            self._esign_notify_user(warning, "warning")
        # Notifications that came before we knew the provider's reference are applied now.
        self.env["esign.request.event"].sudo()._esign_match_waiting(self)

    def _esign_outbox_adopt(self, provider_ref):
        """Settle an unclear send from a callback that names the provider's envelope.

        Only for a request whose send answer was lost (``send_outcome_unknown``), from a callback
        authenticated by the request's own token; the envelope is read from the provider with our
        credentials first, and refused when it carries another reference than ours.
        """
        self.ensure_one()
        self._esign_lock()
        if self.state != "sending" or not self.send_outcome_unknown or self.send_claimed_at:
            return False
        try:
            status = self._esign_client().get_status(provider_ref)
        except ProviderError as error:
            _logger.info("E-signature request %s: envelope %s named by a callback cannot be read: %s",
                         self.name, provider_ref, error)
            return False
        if status.reference != self.reference:
            # The provider does not confirm that this envelope is ours (another reference, or none
            # echoed): a callback alone never decides. A person checks it.
            note = _("%(provider)s notified about the envelope %(ref)s for this request, but %(provider)s does not "
                     "confirm that it carries our reference %(reference)s. Check it at %(provider)s; a manager can "
                     "then mark this request as not sent, or send it again.",
                     provider=self.provider_id.name, ref=provider_ref, reference=self.reference)
            if self.last_error != note:
                self.sudo().write({"last_error": note})
                self._esign_post(note)
                self._esign_escalate(note)
            return False
        self._esign_post(_("%(provider)s's notification named the envelope %(ref)s, which %(provider)s confirms: "
                           "the contract did arrive.", provider=self.provider_id.name, ref=provider_ref))
        self._esign_outbox_sent(SendResult(provider_ref=provider_ref, signers=tuple(status.signers),
                                           raw={"adopted_from_callback": provider_ref}))
        return True

    def _esign_outbox_failed(self, error, can_lookup):
        message = self.provider_id._esign_error_message(error)
        vals = {"send_claimed_at": False, "last_error_code": error_code(error)}
        attempts = self.send_attempts
        if error.outcome_unknown or self.send_outcome_unknown and error.transient:
            vals["send_outcome_unknown"] = True
            if can_lookup and attempts < MAX_SEND_ATTEMPTS:
                vals["send_next_attempt_at"] = self._esign_next_attempt(attempts, error.retry_after)
                vals["last_error"] = _(
                    "%(message)s %(provider)s may have received the contract: it will be looked up at "
                    "%(provider)s before anything is sent again (automatically).",
                    message=message, provider=self.provider_id.name)
                self.sudo().write(vals)
                self._esign_notify_user(vals["last_error"], "warning")
            else:
                self.sudo().write(vals)
                self._esign_park_for_manager(message)
            return
        if error.transient and (attempts < MAX_SEND_ATTEMPTS or error.kind == "rate_limited"):
            # A 429 is the provider's pace, not a failure: it never uses up the attempts.
            vals["send_next_attempt_at"] = self._esign_next_attempt(attempts, error.retry_after)
            vals["last_error"] = _("%(message)s Sending again automatically after %(when)s (UTC).",
                                   message=message, when=vals["send_next_attempt_at"].strftime("%H:%M"))
            self.sudo().write(vals)
            return
        vals.update({"last_error": message, "send_next_attempt_at": False})
        self._esign_set_state("error", vals)
        self._esign_post(_("E-signature with %(provider)s failed: %(message)s",
                           provider=self.provider_id.name, message=message))
        self._esign_notify_user(message, "danger")
        self._esign_notify_responsible("error")

    def _esign_park_for_manager(self, cause):
        """An unclear send the provider cannot be searched for: nothing is retried; a manager decides."""
        text = _("%(cause)s %(provider)s did not confirm whether it received the contract, and it cannot be "
                 "looked up automatically. Check at %(provider)s whether a document with the reference "
                 "%(reference)s arrived. A manager can then send it again or mark it as not sent.",
                 cause=cause, provider=self.provider_id.name, reference=self.reference)
        self.sudo().write({"send_outcome_unknown": True, "send_next_attempt_at": False, "last_error": text,
                           "last_error_code": "ESIGN_OUTCOME_UNKNOWN"})
        self._esign_escalate(text)
        self._esign_notify_user(text, "warning")

    @staticmethod
    def _esign_next_attempt(attempts, retry_after=None):
        minutes = RETRY_DELAYS_MINUTES[min(max(attempts - 1, 0), len(RETRY_DELAYS_MINUTES) - 1)]
        delay = datetime.timedelta(minutes=minutes)
        if retry_after:
            delay = max(delay, datetime.timedelta(seconds=retry_after))
        return fields.Datetime.now() + delay

    def _esign_notify_user(self, message, kind="info"):
        """A notification in the sender's browser (the send ran after their click returned)."""
        self.ensure_one()
        self.user_id._bus_send("simple_notification", {
            "type": kind, "sticky": kind != "info",
            "title": _("E-signature: %s", self.agreement_id.display_name), "message": message,
        })

    def _esign_escalate(self, note):
        """An activity for a manager: something needs a person, and must not be silent."""
        self.ensure_one()
        manager = self.provider_id._esign_escalation_user()
        summary = _("E-signature needs attention: %s", self.name)
        if manager and not self.activity_ids.filtered(lambda a: a.summary == summary and a.user_id == manager):
            self.sudo().activity_schedule("mail.mail_activity_data_todo", summary=summary, note=note,
                                          user_id=manager.id)

    # ------------------------------------------------------------------ envelope

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
        return Envelope(
            reference=self.reference,
            title=self.subject or self.agreement_id.name,
            message=self.message or "",
            language=(self.user_id.lang or "en")[:2],
            document=self._esign_document(),
            signers=tuple(signers),
            callback_url=self.provider_id._esign_callback_url(self),
        )

    # ------------------------------------------------------------------ 3. the cron, and managers

    @api.model
    def _esign_outbox_due_domain(self):
        """Requests waiting to be sent now. Unclear sends left to a manager have no next attempt."""
        return [("state", "=", "sending"), ("send_claimed_at", "=", False),
                "|", "&", ("send_next_attempt_at", "=", False), ("send_outcome_unknown", "=", False),
                ("send_next_attempt_at", "<=", fields.Datetime.now())]

    @api.model
    def _cron_esign_outbox(self, batch_size=50):
        """Send what is due, and settle claims whose worker died during the call."""
        stale = fields.Datetime.now() - datetime.timedelta(minutes=STALE_CLAIM_MINUTES)
        for request in self.sudo().search([("state", "=", "sending"), ("send_claimed_at", "<", stale)]):
            with self._esign_own_transaction() as env:
                env.cr.execute("SELECT id FROM esign_request WHERE id = %s AND send_claimed_at < %s "
                               "FOR UPDATE SKIP LOCKED", [request.id, stale])
                if env.cr.fetchone():
                    env["esign.request"].browse(request.id).write({
                        "send_claimed_at": False, "send_outcome_unknown": True,
                        "send_next_attempt_at": fields.Datetime.now()})
                    _logger.warning("E-signature request %s: the worker sending it stopped during the call",
                                    request.name)
        due = self.sudo().search(self._esign_outbox_due_domain(),
                                 order="send_next_attempt_at asc nulls first, id", limit=batch_size)
        return due._esign_outbox_run()

    def _esign_check_settleable(self):
        """A manager may settle only an unclear send that no worker is calling right now."""
        self.ensure_one()
        self._esign_lock()
        if self.state != "sending" or not self.send_outcome_unknown:
            raise UserError(_("%s is not waiting for a decision: only a send whose outcome the provider did not "
                              "confirm can be settled by hand.", self.name))
        if self.send_claimed_at:
            raise UserError(_("%s is being sent right now: wait for the provider's answer.", self.name))

    def action_esign_retry_send(self):
        """Manager: the provider was checked and has nothing — send again now.

        Where the provider can be searched by our reference, the next attempt still looks first.
        """
        check_esign_right(self.env, "resolve_sending")
        self.check_access("read")
        for request in self.sudo():
            request._esign_check_settleable()
            can_lookup = request._esign_client().can_find_by_reference
            request.write({"send_outcome_unknown": can_lookup, "send_next_attempt_at": False})
            request._esign_post(_("%s checked the provider: sending again.", self.env.user.name), by_provider=False)
        self.sudo()._esign_schedule_outbox()
        return True

    def action_esign_abandon_send(self):
        """Manager: the contract did not reach the provider — mark it as not sent (it can be sent again)."""
        check_esign_right(self.env, "resolve_sending")
        self.check_access("read")
        for request in self.sudo():
            request._esign_check_settleable()
            message = _("Marked as not sent by %s.", self.env.user.name)
            request._esign_set_state("error", {"last_error": message, "last_error_code": "ESIGN_NOT_SENT", "send_next_attempt_at": False,
                                               "send_claimed_at": False})
            request._esign_post(message, by_provider=False)
        return True
