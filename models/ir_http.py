# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Keep the raw body of e-signature webhooks before Odoo parses it.

Odoo's HTTP dispatcher reads ``request.params`` from the form *before* the controller runs; for a
form-encoded body that consumes the stream, and the controller would see an empty body (whose
signature or token then fails: a lost callback). Reading the body with ``cache=True`` here, right
after the per-route size limit is set and before dispatching, keeps the exact bytes for the
controller and lets werkzeug parse the form from the cached copy. On a serialisation retry of the
transaction the same cached bytes are served again.
"""
from odoo import models
from odoo.http import request


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    def _pre_dispatch(cls, rule, args):
        super()._pre_dispatch(rule, args)
        if rule.endpoint.routing.get("esign_raw_body"):
            request.httprequest.get_data(cache=True)  # raises 413 above max_content_length
