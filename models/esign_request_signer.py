# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""A person who must act on a request, in signing order.

Written only by the request's own code (the ACLs give users read access only); the signing link is
a bearer credential (whoever has it signs as that person), so only managers may read it.
"""
import datetime

from odoo import _, fields, models
from odoo.tools import email_normalize

from .esign_access import GROUP_MANAGER

SIGNER_RANK = {"waiting": 0, "pending": 1, "signed": 2, "refused": 2}


class EsignRequestSigner(models.Model):
    _name = "esign.request.signer"
    _description = "E-Signature Signer"
    _order = "request_id, sequence, id"

    request_id = fields.Many2one("esign.request", required=True, ondelete="cascade", index=True)
    company_id = fields.Many2one(related="request_id.company_id", store=True, index=True)
    partner_id = fields.Many2one("res.partner", string="Contact")
    name = fields.Char(required=True)
    first_name = fields.Char()
    last_name = fields.Char()
    email = fields.Char()
    phone = fields.Char()
    role = fields.Selection([("client", "Client"), ("company", "Company")], required=True, default="client")
    sequence = fields.Integer(string="Signing Order", default=1, required=True,
                              help="Lower signs first; the client signs before the company.")
    action = fields.Selection([("sign", "Sign"), ("approve", "Approve"), ("view", "View only")],
                              required=True, default="sign")
    representation_basis = fields.Char(string="Basis of Representation")
    provider_user_id = fields.Char(string="ID at Provider")
    provider_ref = fields.Char(string="Provider Reference", readonly=True, copy=False, index=True)
    signing_url = fields.Char(readonly=True, copy=False, groups=GROUP_MANAGER)
    state = fields.Selection(
        [("waiting", "Waiting"), ("pending", "To sign"), ("signed", "Signed"), ("refused", "Refused")],
        default="waiting", required=True, readonly=True, copy=False)
    state_date = fields.Datetime(string="Last Change", readonly=True, copy=False)
    reason = fields.Char(readonly=True, copy=False)

    def _esign_key(self):
        self.ensure_one()
        return f"signer-{self.id}"

    def _esign_match(self, status):
        """Find the signer a provider's :class:`SignerStatus` speaks of."""
        if status.key:
            found = self.filtered(lambda s: s._esign_key() == status.key)
            if found:
                return found[:1]
        if status.provider_ref:
            found = self.filtered(lambda s: s.provider_ref == status.provider_ref)
            if found:
                return found[:1]
        if status.email:
            email = (email_normalize(status.email) or status.email).lower()
            found = self.filtered(lambda s: (email_normalize(s.email) or "").lower() == email)
            if found:
                return found[:1]
        return self.browse()

    def _esign_update_from_provider(self, statuses, initial=False):
        """Apply signer statuses, forward only. Returns ``[(signer, old_state)]`` of real changes."""
        changes = []
        for status in statuses or ():
            signer = self._esign_match(status)
            if not signer:
                continue
            vals = {}
            if status.provider_ref and not signer.provider_ref:
                vals["provider_ref"] = status.provider_ref
            if status.signing_url:
                vals["signing_url"] = status.signing_url
            old_state = signer.state
            if signer.state not in ("signed", "refused") and \
                    SIGNER_RANK.get(status.state, -1) > SIGNER_RANK[signer.state]:
                vals["state"] = status.state
                vals["state_date"] = _utc_naive(status.changed_at) or fields.Datetime.now()
                if status.reason:
                    vals["reason"] = status.reason[:250]
                if not initial:
                    changes.append((signer, old_state))
            if vals:
                signer.sudo().write(vals)
        return changes

    def _esign_log_change(self, old_state):
        self.ensure_one()
        messages = {
            "pending": _("%(name)s (%(role)s) can now sign."),
            "signed": _("%(name)s (%(role)s) signed."),
            "refused": _("%(name)s (%(role)s) refused to sign."),
        }
        role = dict(self._fields["role"]._description_selection(self.env))[self.role]
        body = messages.get(self.state, "%(name)s: %(role)s") % {"name": self.name, "role": role}
        if self.reason and self.state == "refused":
            body = f"{body} {_('Reason: %s', self.reason)}"
        self.request_id._esign_post(body)


def _utc_naive(value):
    """A provider's datetime as Odoo stores it: UTC, without tzinfo."""
    if not value:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value
