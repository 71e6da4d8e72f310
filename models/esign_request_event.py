# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Everything a provider told us, stored raw before it is applied (an exchange record, edi style).

Storing first means nothing a provider sent is lost when applying it fails: the event stays
``failed`` with its error and the cron tries again. ``dedup_key`` is unique per provider, so a
replayed notification is recognised and never applied twice.
"""
import json
import logging
import uuid

import psycopg2

from odoo import _, api, fields, models
from odoo.tools import mute_logger

from ..api.base import (ProviderError, WebhookAuthError, WebhookMalformed, body_digest,
                        status_from_dict, status_to_dict)

_logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class EsignRequestEvent(models.Model):
    _name = "esign.request.event"
    _description = "E-Signature Event"
    _order = "received_at desc, id desc"
    _rec_name = "event_type"

    provider_id = fields.Many2one("esign.provider", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="provider_id.company_id", store=True, index=True)
    request_id = fields.Many2one("esign.request", ondelete="cascade", index=True)
    source = fields.Selection(
        [("webhook", "Notification"), ("refresh", "Status read"), ("send", "Sending")],
        required=True, default="webhook")
    event_type = fields.Char(required=True)
    provider_ref = fields.Char(string="Provider Reference", index=True)
    dedup_key = fields.Char(required=True, string="De-duplication Key")
    payload = fields.Text(help="What the provider sent, as received.")
    status_json = fields.Text(help="The provider status this event carries, in our vocabulary.")
    hints_json = fields.Text()
    received_at = fields.Datetime(required=True, default=fields.Datetime.now, index=True)
    processed_at = fields.Datetime()
    state = fields.Selection(
        [("received", "Received"), ("processed", "Processed"), ("unmatched", "Unknown reference"),
         ("failed", "Failed"), ("rejected", "Rejected")],
        default="received", required=True, index=True)
    result = fields.Text()
    attempts = fields.Integer(default=0)

    _sql_constraints = [
        ("dedup_uniq", "unique(provider_id, dedup_key)", "This provider event was already received."),
    ]

    # ------------------------------------------------------------------ receiving

    @api.model
    def _esign_receive_webhook(self, code, headers, body, query):
        """Authenticate, store and process one notification request. Returns ``(http_status, text)``.

        Called by the controller (and by the Demo signing page) with raw bytes; runs as superuser
        because the caller is the provider, not a user.
        """
        headers = {k.lower(): v for k, v in headers.items()}
        candidates = self.env["esign.provider"].sudo().search(
            [("code", "=", code), ("state", "!=", "disabled")])
        if not candidates:
            return 404, "unknown provider"
        provider = client = None
        for candidate in candidates:
            try:
                candidate_client = candidate._esign_webhook_client_for(headers, body, query)
                candidate._esign_webhook_authenticate(candidate_client, headers, body, query)
            except WebhookAuthError as error:
                _logger.info("E-signature notification for %s refused by %s: %s", code, candidate.name, error)
                continue
            except ProviderError as error:  # e.g. the provider's key set could not be fetched
                _logger.warning("E-signature notification for %s not verifiable now: %s", code, error)
                return 503, "cannot verify now"
            provider, client = candidate, candidate_client
            break
        if not provider:
            return 403, "invalid signature"
        try:
            notifications = client.parse_webhook(headers, body, query)
        except WebhookMalformed as error:
            self._esign_store_rejected(provider, body, str(error))
            return 400, "malformed notification"
        events = self.browse()
        for notification in notifications:
            events |= self._esign_store_notification(provider, notification)
        events._esign_process()
        return 200, "ok"

    def _esign_store_rejected(self, provider, body, reason):
        key = body_digest(body)
        if not self.search_count([("provider_id", "=", provider.id), ("dedup_key", "=", key)]):
            self.create({
                "provider_id": provider.id, "event_type": "malformed", "dedup_key": key,
                "payload": body.decode("utf-8", "replace"), "state": "rejected", "result": reason,
            })

    def _esign_store_notification(self, provider, notification):
        """Store one notification unless it was stored before. Returns the new event or nothing."""
        if self.search_count([("provider_id", "=", provider.id), ("dedup_key", "=", notification.dedup_key)]):
            _logger.info("E-signature event %s already received, ignored", notification.dedup_key)
            return self.browse()
        vals = {
            "provider_id": provider.id,
            "source": "webhook",
            "event_type": notification.event_type or "unknown",
            "provider_ref": notification.provider_ref,
            "dedup_key": notification.dedup_key,
            "payload": json.dumps(notification.payload, default=str) if notification.payload is not None else "",
            "status_json": json.dumps(status_to_dict(notification.status)) if notification.status else False,
            "hints_json": json.dumps(notification.hints) if notification.hints else False,
        }
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                return self.create(vals)
        except psycopg2.IntegrityError:  # stored meanwhile by a concurrent delivery
            return self.browse()

    @api.model
    def _esign_store_status_read(self, request, status):
        return self.create({
            "provider_id": request.provider_id.id,
            "request_id": request.id,
            "source": "refresh",
            "event_type": f"status:{status.provider_state or status.state}",
            "provider_ref": request.provider_ref,
            "dedup_key": f"refresh:{uuid.uuid4().hex}",  # every read is its own record
            "payload": json.dumps(status.raw, default=str) if status.raw is not None else "",
            "status_json": json.dumps(status_to_dict(status)),
        })

    # ------------------------------------------------------------------ processing

    def _esign_process(self):
        """Apply stored events to their requests; each in its own savepoint so one failure is contained."""
        request_model = self.env["esign.request"].sudo()
        for event in self:
            request = event.request_id
            if not request and event.provider_ref:
                request = request_model.search(
                    [("provider_id", "=", event.provider_id.id), ("provider_ref", "=", event.provider_ref)],
                    limit=1)
            if not request:
                event.write({"state": "unmatched", "processed_at": fields.Datetime.now(),
                             "result": _("No request with this reference: stored, not applied.")})
                continue
            event.request_id = request
            try:
                with self.env.cr.savepoint():
                    result = event._esign_apply(request)
            except ProviderError as error:
                event._esign_fail(request.provider_id._esign_error_message(error))
            except psycopg2.OperationalError:
                # A concurrent notification changed this request first: let the whole delivery be
                # retried (Odoo's HTTP layer does) on a fresh snapshot instead of storing a failure.
                raise
            except Exception as error:  # keep the raw event; the cron retries
                _logger.exception("E-signature event %s could not be applied", event.id)
                event._esign_fail(str(error))
            else:
                event.write({"state": "processed", "processed_at": fields.Datetime.now(),
                             "result": result, "attempts": event.attempts + 1})

    def _esign_apply(self, request):
        self.ensure_one()
        hints = json.loads(self.hints_json) if self.hints_json else None
        if self.status_json:
            status = status_from_dict(json.loads(self.status_json))
        else:
            # The notification only says "something happened": read where the request stands.
            status = request._esign_client().get_status(request.provider_ref)
            self.status_json = json.dumps(status_to_dict(status))
        return request._esign_apply_status(status, hints=hints)

    def _esign_fail(self, message):
        self.write({"state": "failed", "result": message, "attempts": self.attempts + 1})

    @api.model
    def _esign_retry_failed(self, limit=50):
        events = self.search([("state", "in", ("received", "failed")), ("attempts", "<", MAX_ATTEMPTS)],
                             order="received_at", limit=limit)
        events._esign_process()
        return events

    def action_retry(self):
        self._esign_process()
        return True
