# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Everything a provider told us, and every command we queued for it (exchange records, edi style).

Incoming: a notification is verified, stored raw in the webhook's own transaction and answered
200; it is applied right after by the processing cron (triggered at once) or a ``queue_job`` job,
so a slow download or a lock never holds the provider's connection. Storing first means nothing a
provider sent is lost when applying it fails: the event stays ``failed`` with its error and is
retried; after :data:`MAX_ATTEMPTS` a manager gets an activity. ``dedup_key`` is unique per
provider, so a replayed notification is recognised and never applied twice.

Outgoing: a cancel or a reminder is a ``command`` event, queued in the user's transaction and run
once after it commits (claim, call, record), like the send outbox.
"""
import datetime
import json
import logging
import time
import uuid

import psycopg2

from odoo import _, api, fields, models, sql_db
from odoo.addons.base.models.ir_cron import ODOO_NOTIFY_FUNCTION
from odoo.tools import SQL, mute_logger

from ..api.base import (EnvelopeStatus, ProviderError, WebhookAuthError, WebhookMalformed, body_digest,
                        status_from_dict, status_to_dict)
from .esign_access import check_esign_right
from .esign_after_commit import schedule_after_commit, use_queue_job

_logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
MAX_IDENTIFIER_LENGTH = 255  # references, event ids and types: longer is hostile, not a provider
UNMATCHED_WINDOW_DAYS = 7  # an unmatched notification is looked at again for this long
STALE_COMMAND_MINUTES = 10


def wake_up_processing(dbname):
    """Wake the cron workers for ``dbname`` (what ``ir.cron._notifydb`` does, without a record)."""
    try:
        with sql_db.db_connect("postgres").cursor() as cr:
            cr.execute(SQL("SELECT %s('cron_trigger', %s)", SQL.identifier(ODOO_NOTIFY_FUNCTION), dbname))
    except Exception:  # the trigger is stored: the workers' next poll runs it anyway
        _logger.warning("E-signature: could not wake the cron workers of %s", dbname, exc_info=True)


class EsignRequestEvent(models.Model):
    _name = "esign.request.event"
    _description = "E-Signature Event"
    _order = "received_at desc, id desc"
    _rec_name = "event_type"

    provider_id = fields.Many2one("esign.provider", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="provider_id.company_id", store=True, index=True, precompute=True)
    request_id = fields.Many2one("esign.request", ondelete="cascade", index=True)
    source = fields.Selection(
        [("webhook", "Notification"), ("refresh", "Status read"), ("send", "Sending"),
         ("command", "Our action")],
        required=True, default="webhook")
    event_type = fields.Char(required=True)
    provider_ref = fields.Char(string="Provider Reference", index=True)
    reference = fields.Char(string="Our Reference", index=True,
                            help="Our reference of the request, where the provider echoes it.")
    dedup_key = fields.Char(required=True, string="De-duplication Key")
    verified_provider_ids = fields.Many2many(
        "esign.provider", string="Verified By",
        help="Every provider whose credentials verified this notification: it may be applied only to a "
        "request of one of them (a secret shared by two companies routes to the one it names).")
    payload = fields.Text(help="What the provider sent, as received.")
    status_json = fields.Text(help="The provider status this event carries, in our vocabulary.")
    hints_json = fields.Text()
    received_at = fields.Datetime(required=True, default=fields.Datetime.now, index=True)
    processed_at = fields.Datetime()
    last_attempt_at = fields.Datetime(index=True)
    state = fields.Selection(
        [("queued", "Queued"), ("running", "Running"), ("received", "Received"), ("processed", "Processed"),
         ("unmatched", "Unknown reference"), ("failed", "Failed"), ("rejected", "Rejected")],
        default="received", required=True, index=True)
    result = fields.Text()
    attempts = fields.Integer(default=0)

    _sql_constraints = [
        ("dedup_uniq", "unique(provider_id, dedup_key)", "This provider event was already received."),
    ]

    # ------------------------------------------------------------------ receiving

    @api.model
    def _esign_receive_webhook(self, code, headers, body, query, wake_up=True):
        """Authenticate, store and schedule one notification request. Returns ``(http_status, text)``.

        Called by the controller (and by the Demo signing page) with raw bytes; runs as superuser
        because the caller is the provider, not a user. Nothing is applied here. ``wake_up=False``:
        the caller wakes the cron workers itself (the controller does it after the answer is sent).
        """
        self = self.sudo()
        headers = {str(k).lower(): v for k, v in headers.items()}
        candidates = self.env["esign.provider"].search_fetch(
            [("code", "=", code), ("state", "!=", "disabled")], ["company_id", "webhook_secret", "name", "code"])
        if not candidates:
            return 404, "unknown provider"
        verified, unverifiable = [], False
        for candidate in candidates:
            try:
                client = candidate._esign_webhook_client_for(headers, body, query)
                candidate._esign_webhook_authenticate(client, headers, body, query)
            except WebhookAuthError as error:
                _logger.info("E-signature notification for %s refused by %s: %s", code, candidate.name, error)
                continue
            except ProviderError as error:  # e.g. the provider's key set could not be fetched
                _logger.warning("E-signature notification for %s not verifiable now: %s", code, error)
                unverifiable = True
                continue
            except Exception as error:  # hostile input a client did not foresee: not proven authentic
                _logger.warning("E-signature notification for %s refused by %s (%s)", code, candidate.name,
                                type(error).__name__)
                continue
            verified.append((candidate, client))
        if not verified:
            return (503, "cannot verify now") if unverifiable else (403, "invalid signature")
        providers = self.env["esign.provider"].browse([p.id for p, _c in verified])
        try:
            notifications = verified[0][1].parse_webhook(headers, body, query)
            self._esign_check_identifiers(notifications)
        except WebhookMalformed as error:
            self._esign_store_rejected(providers[:1], body, str(error))
            return 400, "malformed notification"
        events = self.browse()
        for notification in notifications:
            events |= self._esign_store_notification(providers, notification)
        events._esign_schedule_processing(wake_up=wake_up)
        return 200, "ok"

    @api.model
    def _esign_check_identifiers(self, notifications):
        """References are short identifiers: an over-long one is malformed, not a database error."""
        for notification in notifications:
            for value in (notification.provider_ref, notification.reference, notification.event_type):
                if value and len(str(value)) > MAX_IDENTIFIER_LENGTH:
                    raise WebhookMalformed(f"identifier longer than {MAX_IDENTIFIER_LENGTH} characters")

    @staticmethod
    def _esign_bounded_key(key):
        """A de-duplication key short enough for its unique index (long ones are hashed)."""
        key = str(key)
        return key if len(key) <= MAX_IDENTIFIER_LENGTH else body_digest(key.encode("utf-8", "replace"))

    def _esign_store_rejected(self, provider, body, reason):
        key = body_digest(body)
        if not self.search_count([("provider_id", "=", provider.id), ("dedup_key", "=", key)]):
            self.create({
                "provider_id": provider.id, "event_type": "malformed", "dedup_key": key,
                "payload": body.decode("utf-8", "replace")[:100_000], "state": "rejected", "result": reason,
            })

    def _esign_store_notification(self, providers, notification):
        """Store one notification unless it was stored before. Returns the new event or nothing.

        The event goes to the provider whose request it names, among those that verified it.
        """
        dedup_key = self._esign_bounded_key(notification.dedup_key)
        request = self._esign_find_request(providers, notification.provider_ref, notification.reference)
        provider = request.provider_id or providers[:1]
        event = self._esign_insert_once({
            "provider_id": provider.id,
            "company_id": provider.company_id.id,
            "request_id": request.id or None,
            "source": "webhook",
            "event_type": (notification.event_type or "unknown")[:200],
            "provider_ref": notification.provider_ref or None,
            "reference": notification.reference or None,
            "dedup_key": dedup_key,
            "payload": json.dumps(notification.payload, default=str) if notification.payload is not None else "",
            "status_json": json.dumps(status_to_dict(notification.status)) if notification.status else None,
            "hints_json": json.dumps(notification.hints) if notification.hints else None,
        })
        if not event:
            _logger.info("E-signature event %s already received, ignored", dedup_key)
        elif len(providers) > 1:  # kept only when it says more than provider_id (a shared secret)
            event.verified_provider_ids = providers
        return event

    def _esign_insert_once(self, vals):
        """Insert a received event, or nothing when its (provider, key) is there already.

        One ``INSERT … ON CONFLICT DO NOTHING`` instead of a search, a savepoint and an ORM create:
        this runs while the provider waits for our answer, and a concurrent duplicate delivery must
        neither fail nor log an error. Only plain columns are written (no computed or related field
        depends on anything but these).
        """
        now = fields.Datetime.now()
        vals = dict(vals, received_at=now, state="received", attempts=0, create_uid=self.env.uid,
                    create_date=now, write_uid=self.env.uid, write_date=now)
        columns = list(vals)
        self.env.flush_all()
        self.env.cr.execute(SQL(
            "INSERT INTO esign_request_event (%s) VALUES %s ON CONFLICT (provider_id, dedup_key) DO NOTHING "
            "RETURNING id",
            SQL(", ").join(SQL.identifier(column) for column in columns),
            tuple(vals[column] for column in columns),
        ))
        row = self.env.cr.fetchone()
        return self.browse(row[0]) if row else self.browse()

    @api.model
    def _esign_find_request(self, providers, provider_ref, reference):
        """The request a notification names, by the provider's reference or by ours.

        Our reference alone matches only a request that has no provider reference yet, or the same
        one: a second envelope made under our reference must never be taken for the first.
        """
        Request = self.env["esign.request"].sudo()
        if provider_ref:
            request = Request.search([("provider_id", "in", providers.ids), ("provider_ref", "=", provider_ref)],
                                     limit=1)
            if request:
                return request
        if reference:
            request = Request.search([("provider_id", "in", providers.ids), ("reference", "=", reference)], limit=1)
            if request.provider_ref and provider_ref and request.provider_ref != provider_ref:
                return Request
            return request
        return Request

    @api.model
    def _esign_store_status_read(self, request, status):
        return self.sudo().create({
            "provider_id": request.provider_id.id,
            "request_id": request.id,
            "source": "refresh",
            "event_type": f"status:{status.provider_state or status.state}"[:200],
            "provider_ref": request.provider_ref,
            "reference": request.reference,
            "dedup_key": f"refresh:{uuid.uuid4().hex}",  # every read is its own record
            "payload": json.dumps(status.raw, default=str) if status.raw is not None else "",
            "status_json": json.dumps(status_to_dict(status)),
        })

    # ------------------------------------------------------------------ scheduling

    def _esign_schedule_processing(self, wake_up=True):
        """Apply right after this transaction commits, outside the provider's HTTP request.

        The cron trigger is committed with the event; ``wake_up`` also notifies the cron workers at
        commit (Odoo's ``_trigger``). Without it the caller calls :func:`wake_up_processing` later:
        the notification opens a connection of its own, which the provider need not wait for.
        """
        if not self:
            return
        if use_queue_job(self.env):
            for event in self:
                event.with_delay(channel="root.esign.events", identity_key=f"esign-event-{event.id}",
                                 description=_("E-signature: apply %s", event.event_type))._esign_process()
            return
        cron = self._esign_processing_cron()  # without env.ref's existence check: one query less
        if wake_up:
            cron._trigger()
        else:  # what _trigger stores, in one statement (no ORM create while the provider waits)
            now = fields.Datetime.now()
            self.env.cr.execute(SQL(
                "INSERT INTO ir_cron_trigger (cron_id, call_at, create_uid, create_date, write_uid, write_date) "
                "VALUES (%s, %s, %s, %s, %s, %s)", cron.id, now, self.env.uid, now, self.env.uid, now))

    @api.model
    def _esign_processing_cron(self):
        return self.env["ir.cron"].sudo().browse(
            self.env["ir.model.data"]._xmlid_to_res_id("esign_connector.ir_cron_esign_process"))

    @api.model
    def _esign_wake_processing_at(self, when):
        """Run the processing cron at ``when`` (e.g. when a provider's rate-limit window opens)."""
        cron = self._esign_processing_cron()
        if not self.env["ir.cron.trigger"].sudo().search_count([("cron_id", "=", cron.id), ("call_at", "=", when)]):
            cron._trigger(at=when)

    # ------------------------------------------------------------------ processing

    def _esign_claim(self):
        """Lock this event for processing; False when another worker has it or just changed it."""
        try:
            with self.env.cr.savepoint(flush=False), mute_logger("odoo.sql_db"):
                self.env.cr.execute("SELECT id FROM esign_request_event WHERE id = %s FOR UPDATE SKIP LOCKED",
                                    [self.id])
                claimed = bool(self.env.cr.fetchone())
        except psycopg2.errors.SerializationFailure:  # changed by another worker since our snapshot
            return False
        if claimed:
            self.invalidate_recordset()
        return claimed

    def _esign_process(self):
        """Apply stored events to their requests, each once and in its own savepoint."""
        for event in self.sudo():
            if event.source == "command" or not event._esign_claim():
                continue
            if event.state not in ("received", "failed", "unmatched"):
                continue  # applied meanwhile (a job and the cron, or a replay)
            request = event.request_id or event._esign_find_request(
                event.verified_provider_ids or event.provider_id, event.provider_ref, event.reference)
            now = fields.Datetime.now()
            if not request:
                event.write({"state": "unmatched", "processed_at": now, "last_attempt_at": now,
                             "result": _("No request with this reference yet: stored, applied when the request "
                                         "is known.")})
                continue
            if not event._esign_link_request(request):
                continue
            if request.state == "sending" and event.provider_ref and event.source == "webhook" \
                    and request.provider_id._esign_authenticates_by_callback_token():
                # Its send answer was lost, and this callback (authenticated by the request's own
                # token) names the envelope: confirm it with the provider and adopt it.
                request._esign_outbox_adopt(event.provider_ref)
                event.invalidate_recordset()
                if event.state == "processed":
                    continue
            if request.state == "sending":
                event.write({"state": "unmatched", "last_attempt_at": now, "result": _(
                    "The request is still being sent: applied once the provider's answer is recorded.")})
                continue
            try:
                with self.env.cr.savepoint():
                    result = event._esign_apply(request)
            except psycopg2.OperationalError as error:
                # Another worker changed this request first; our snapshot is stale. The event
                # stays as it is and the next run applies it on a fresh snapshot.
                _logger.info("E-signature event %s postponed: %s", event.id, error)
                continue
            except ProviderError as error:
                event._esign_fail(request.provider_id._esign_error_message(error))
            except Exception as error:  # keep the raw event; it is retried
                _logger.exception("E-signature event %s could not be applied", event.id)
                event._esign_fail(str(error))
            else:
                event.write({"state": "processed", "processed_at": now, "last_attempt_at": now,
                             "result": result, "attempts": event.attempts + 1})

    def _esign_link_request(self, request):
        """Attach this event to ``request`` and to its provider (hence its company's journal).

        Returns False when the request's provider already has this very event: a duplicate,
        delivered once under each provider that shares the secret.
        """
        self.ensure_one()
        if self.request_id == request and self.provider_id == request.provider_id:
            return True
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                self.write({"request_id": request.id, "provider_id": request.provider_id.id})
        except psycopg2.IntegrityError:
            self.write({"state": "processed", "processed_at": fields.Datetime.now(),
                        "result": _("Duplicate of an event already received for %s.", request.name)})
            return False
        return True

    def _esign_apply(self, request):
        self.ensure_one()
        hints = json.loads(self.hints_json) if self.hints_json else None
        if self.status_json:
            status = status_from_dict(json.loads(self.status_json))
        else:
            # The notification only says "something happened" (or cannot be trusted on its own,
            # like Signi's unsigned callbacks): read where the request stands.
            status = request._esign_client().get_status(request.provider_ref)
            self.status_json = json.dumps(status_to_dict(status))
        return request._esign_apply_status(status, hints=hints)

    def _esign_fail(self, message):
        attempts = self.attempts + 1
        self.write({"state": "failed", "result": message, "attempts": attempts,
                    "last_attempt_at": fields.Datetime.now()})
        if attempts >= MAX_ATTEMPTS and self.request_id:
            self.request_id._esign_escalate(_(
                "The %(provider)s event %(event)s could not be applied after %(count)s attempts: %(message)s",
                provider=self.provider_id.name, event=self.event_type, count=attempts, message=message))

    @api.model
    def _esign_match_waiting(self, request):
        """Apply the notifications that arrived before ``request`` had its provider reference.

        An event that names another envelope (a different provider reference) under our reference is
        not this request's: it stays unmatched.
        """
        domain = [("state", "in", ("unmatched", "received")), ("request_id", "in", (False, request.id)),
                  ("source", "=", "webhook"), "|", ("provider_id", "=", request.provider_id.id),
                  ("verified_provider_ids", "in", request.provider_id.ids), "|",
                  ("provider_ref", "=", request.provider_ref), ("reference", "=", request.reference)]
        events = self.sudo().search(domain, order="received_at, id").filtered(
            lambda e: (not e.provider_ref or e.provider_ref == request.provider_ref) and e._esign_link_request(request))
        events._esign_process()
        return events

    @api.model
    def _cron_esign_process(self, batch_size=100, time_budget=50):
        """Send what is due, run queued commands, apply what was received, retry what failed, look
        again at what matched nothing.

        Sends go in batches until none is due (or the provider's window is full) or ``time_budget``
        seconds passed; the cron's progress says what remains, and Odoo runs it again at once
        (several cron workers, or servers, share the work: everything is claimed first).
        """
        Request = self.env["esign.request"]
        deadline = time.monotonic() + time_budget
        done = 0
        while time.monotonic() < deadline:
            sent = Request._cron_esign_outbox(batch_size=batch_size)
            done += sent
            if not sent:
                break
        self._esign_run_commands()
        window = fields.Datetime.now() - datetime.timedelta(days=UNMATCHED_WINDOW_DAYS)
        events = self.sudo().search(
            [("source", "!=", "command"), "|", ("state", "=", "received"),
             "|", "&", ("state", "=", "failed"), ("attempts", "<", MAX_ATTEMPTS),
             "&", ("state", "=", "unmatched"), ("received_at", ">=", window)],
            order="last_attempt_at asc nulls first, received_at, id", limit=batch_size)
        for event in events:
            event._esign_process()
            Request._esign_commit_progress()
        done += len(events)
        remaining = Request.sudo().search_count(Request._esign_outbox_due_domain()) + self.sudo().search_count(
            [("source", "=", "webhook"), ("state", "=", "received")])
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)
        return done

    def action_retry(self):
        check_esign_right(self.env, "retry_event")
        self.check_access("read")
        self.sudo().filtered(lambda e: e.state in ("failed", "unmatched", "received"))._esign_process()
        return True

    # ------------------------------------------------------------------ commands (cancel, remind)

    @api.model
    def _esign_queue_command(self, request, command, **params):
        """Queue ``command`` for ``request``; it runs once after this transaction commits."""
        event = self.sudo().create({
            "provider_id": request.provider_id.id,
            "request_id": request.id,
            "source": "command",
            "event_type": command,
            "provider_ref": request.provider_ref,
            "reference": request.reference,
            "dedup_key": f"command:{uuid.uuid4().hex}",
            "payload": json.dumps(dict(params, user_id=self.env.uid)),
            "state": "queued",
        })
        schedule_after_commit(event, "_esign_run_commands", channel=f"root.esign.{request.provider_id.code}",
                              description=_("E-signature: %(command)s %(request)s", command=command,
                                            request=request.name))
        return event

    def _esign_run_commands(self):
        """Run queued commands (``self``, or every due one when empty): claim, call, record."""
        commands = self or self.sudo().search([("source", "=", "command"), ("state", "=", "queued")],
                                              order="id", limit=100)
        stale = fields.Datetime.now() - datetime.timedelta(minutes=STALE_COMMAND_MINUTES)
        if not self:
            for command in self.sudo().search([("source", "=", "command"), ("state", "=", "running"),
                                               ("last_attempt_at", "<", stale)]):
                command.write({"state": "failed", "result": _(
                    "The worker stopped during the call: whether %s happened is unknown. Refresh the status.",
                    command.event_type)})
        for command_id in commands.ids:
            try:
                self.browse(command_id)._esign_run_command()
            except Exception:
                _logger.exception("E-signature command %s failed", command_id)

    def _esign_run_command(self):
        Request = self.env["esign.request"]
        with Request._esign_own_transaction() as env:
            command = env[self._name].browse(self.id)
            if not command._esign_claim() or command.state != "queued":
                return
            request = command.request_id
            client = request._esign_client()
            params = json.loads(command.payload or "{}")
            wait = request.provider_id._esign_reserve_calls(1)
            if wait:  # the provider's window is full: the command waits for the next one
                self._esign_wake_processing_at(wait)
                return
            command.write({"state": "running", "attempts": command.attempts + 1,
                           "last_attempt_at": fields.Datetime.now()})
            provider_ref, kind = request.provider_ref, command.event_type
        try:
            if kind == "cancel":
                client.cancel(provider_ref, params.get("reason") or "")
            elif kind == "remind":
                client.remind(provider_ref)
            else:
                raise ProviderError("config", f"unknown command {kind}")
            outcome = None
        except ProviderError as error:
            outcome = error
        with Request._esign_own_transaction() as env:
            env[self._name].browse(self.id)._esign_record_command(outcome, params)

    def _esign_record_command(self, error, params):
        self.ensure_one()
        request = self.request_id
        user = self.env["res.users"].browse(params.get("user_id")).exists() or self.env.user
        now = fields.Datetime.now()
        if error is None:
            self.write({"state": "processed", "processed_at": now, "result": _("Done")})
            if self.event_type == "cancel":
                request._esign_lock()
                request.sudo().write({"reason": params.get("reason") or False})
                result = request._esign_apply_status(EnvelopeStatus(
                    provider_ref=request.provider_ref, state="cancelled", reason=params.get("reason") or ""))
                self.result = result
            else:
                request.with_user(user)._esign_post(
                    _("Reminder sent by %s to the signer whose turn it is.", user.name), by_provider=False)
            return
        message = request.provider_id._esign_error_message(error)
        self.write({"state": "failed", "result": message, "processed_at": now})
        label = _("Cancelling") if self.event_type == "cancel" else _("The reminder")
        text = _("%(action)s failed: %(message)s", action=label, message=message)
        request.sudo().write({"last_error": text})
        request.with_user(user)._esign_post(text, by_provider=False)
        request._esign_notify_user(text, "danger")
        if self.event_type == "cancel" and error.kind in ("conflict", "not_found"):
            request._esign_refresh()  # it may be signed or gone already: show where it stands
