# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Keep the raw body of e-signature webhooks before Odoo parses it, and bound its size.

Odoo's HTTP dispatcher reads ``request.params`` from the form *before* the controller runs; for a
form-encoded body that consumes the stream, and the controller would see an empty body (whose
signature or token then fails: a lost callback). Reading the body here, before dispatching, keeps
the exact bytes for the controller, lets werkzeug parse the form from the cached copy, and serves
the same bytes again when the transaction is retried after a serialisation failure.

The route's ``max_content_length`` is enforced here from the Content-Length header, before a byte
is read (werkzeug applies it to form parsing only). A body without Content-Length (chunked) could
only be bounded by reading it, so it is refused with 411: providers send small bodies with a length.
"""
from werkzeug.exceptions import LengthRequired, RequestEntityTooLarge

from odoo import models
from odoo.http import request


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    def _pre_dispatch(cls, rule, args):
        super()._pre_dispatch(rule, args)
        if rule.endpoint.routing.get("esign_raw_body"):
            cls._esign_keep_raw_body(rule.endpoint.routing.get("max_content_length"))

    @staticmethod
    def _esign_keep_raw_body(limit):
        httprequest = request.httprequest
        length = httprequest.content_length
        if length is None:
            if httprequest.headers.get("Transfer-Encoding"):
                raise LengthRequired()
            return  # no body at all
        if limit and length > limit:
            raise RequestEntityTooLarge()
        # Read at most Content-Length bytes, and keep them: werkzeug serves this cached copy to
        # get_data() and to its form parser.
        httprequest.get_data(cache=True)
