# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Stay under each provider's rate limit, across every worker and server sharing the database.

Providers limit API calls per account and period (DocuSign: 3,000 an hour, NOTES §6; Yousign's
sandbox: 200 an hour). A campaign of a thousand contracts must go at that pace instead of failing
on 429s: before a batch call (a send, a status read of the cron, a command), the worker reserves the
calls it will make in the current window with one atomic upsert; when the window is full it waits
for the next one. Windows are fixed and aligned on the period, as DocuSign's hourly reset is. A 429
that still comes (another application on the same account) is rescheduled after its Retry-After by
the outbox, never counted as a failure.
"""
import datetime

from odoo import api, fields, models
from odoo.tools import SQL

# Published limits, used as the defaults of a new provider (admins may change them).
DEFAULT_LIMITS = {
    "docusign": (3000, 3600),  # per account and hour [OK] DocuSign API rules
    "yousign": (200, 3600),  # sandbox: 200 an hour (and 30 a minute) [OK]; production unpublished
}


class EsignProviderRateWindow(models.Model):
    _name = "esign.provider.rate.window"
    _description = "E-Signature provider calls in one rate-limit window"
    _log_access = False

    provider_id = fields.Many2one("esign.provider", required=True, ondelete="cascade", index=True)
    window_start = fields.Datetime(required=True)
    calls = fields.Integer(required=True, default=0)

    _sql_constraints = [
        ("provider_window_uniq", "unique(provider_id, window_start)", "One row per provider and window."),
    ]

    @api.autovacuum
    def _gc_old_windows(self):
        self.search([("window_start", "<", fields.Datetime.now() - datetime.timedelta(days=2))]).unlink()


class EsignProviderRate(models.Model):
    _inherit = "esign.provider"

    rate_limit_calls = fields.Integer(
        string="API Calls Allowed", compute="_compute_rate_limit", store=True, readonly=False,
        help="How many API calls the provider allows per period for this account; background sending and "
        "status reads stay under it. 0: no limit known.")
    rate_limit_period = fields.Integer(
        string="Per (seconds)", compute="_compute_rate_limit", store=True, readonly=False,
        help="The length of the provider's rate-limit window, in seconds (3600: an hour).")

    @api.depends("code")
    def _compute_rate_limit(self):
        for provider in self:
            calls, period = DEFAULT_LIMITS.get(provider.code, (0, 3600))
            provider.rate_limit_calls = calls
            provider.rate_limit_period = period

    def _esign_window(self, now=None):
        """Start and end of the current window (aligned on the period, UTC)."""
        self.ensure_one()
        period = max(self.rate_limit_period or 3600, 1)
        now = now or fields.Datetime.now()
        epoch = int(now.replace(tzinfo=datetime.timezone.utc).timestamp())
        start = datetime.datetime.fromtimestamp(epoch - epoch % period, tz=datetime.timezone.utc).replace(tzinfo=None)
        return start, start + datetime.timedelta(seconds=period)

    def _esign_reserve_calls(self, calls):
        """Reserve ``calls`` in the current window. Returns None when granted, else when to try again.

        One statement, atomic under concurrency: the row of the window is created or incremented only
        while it stays within the limit. Run it in the transaction that commits the work it is for.
        """
        self.ensure_one()
        provider = self.sudo()
        if not provider.rate_limit_calls or calls <= 0:
            return None
        start, end = provider._esign_window()
        if calls > provider.rate_limit_calls:
            calls = provider.rate_limit_calls  # a single operation larger than a window: alone in one
        self.env.cr.execute(SQL("""
            INSERT INTO esign_provider_rate_window AS w (provider_id, window_start, calls)
                 SELECT %(provider)s, %(start)s, %(calls)s WHERE %(calls)s <= %(limit)s
            ON CONFLICT (provider_id, window_start)
                DO UPDATE SET calls = w.calls + EXCLUDED.calls WHERE w.calls + EXCLUDED.calls <= %(limit)s
            RETURNING calls
        """, provider=provider.id, start=start, calls=calls, limit=provider.rate_limit_calls))
        return None if self.env.cr.fetchone() else end

    def _esign_calls_used(self):
        """Calls reserved in the current window (for the provider form and the bench)."""
        self.ensure_one()
        start, _end = self._esign_window()
        row = self.env["esign.provider.rate.window"].sudo().search(
            [("provider_id", "=", self.id), ("window_start", "=", start)], limit=1)
        return row.calls
