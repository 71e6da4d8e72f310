# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Provider notifications in, and the Demo provider's signing page.

The webhook hands the raw request to the provider's client, which verifies it before anything is
parsed; the models decide everything else. Answers: 200 accepted and stored (also for an unknown
reference), 400 malformed, 403 not authentic, 404 unknown provider, 413 too large (refused before
the body is read), 503 cannot verify now (so the provider retries). Nothing is applied while the
provider waits: the stored event is applied right after, by the processing cron or a job.
"""
import base64
import functools
import logging

from werkzeug.exceptions import NotFound

from odoo import http
from odoo.exceptions import UserError
from odoo.http import request

from ..models.esign_request_event import wake_up_processing

_logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_DEMO_FORM_BYTES = 64 * 1024  # the Demo page's form: a decision and a short reason


class EsignController(http.Controller):

    # ``esign_raw_body``: ir.http keeps the raw body before Odoo parses a form out of it (see
    # models/ir_http.py), so that form-encoded callbacks (SELL&SIGN) reach the client byte for byte
    # and a retried transaction sees the same body again. ``max_content_length`` makes werkzeug
    # refuse a larger body with 413 from its Content-Length, before reading it.
    @http.route("/esign/webhook/<string:provider_code>", type="http", auth="public", methods=["POST"],
                csrf=False, save_session=False, max_content_length=MAX_BODY_BYTES, esign_raw_body=True)
    def esign_webhook(self, provider_code, **_kwargs):
        body = request.httprequest.get_data(cache=True)
        headers = dict(request.httprequest.headers.items())
        query = request.httprequest.args.to_dict()
        status, text = request.env["esign.request.event"].sudo()._esign_receive_webhook(
            provider_code, headers, body, query, wake_up=False)
        response = request.make_response(text, headers=[("Content-Type", "text/plain")], status=status)
        if status == 200:
            # The event and its cron trigger are committed before the answer; the cron workers are
            # woken once the answer is sent, so the provider does not wait for that connection.
            response.call_on_close(functools.partial(wake_up_processing, request.db))
        return response

    # ------------------------------------------------------------------ Demo signing page

    def _demo_signer(self, token):
        signer = request.env["esign.demo.envelope.signer"].sudo().search([("token", "=", token)], limit=1)
        if not signer or not token:
            raise NotFound()
        return signer

    @http.route("/esign/demo/sign/<string:token>", type="http", auth="public", methods=["GET"])
    def esign_demo_page(self, token, **kwargs):
        signer = self._demo_signer(token)
        envelope = signer.envelope_id
        earlier = envelope.signer_ids.filtered(
            lambda s: s.sequence < signer.sequence and s.state != "signed")
        return request.render("esign_connector.demo_sign_page", {
            "signer": signer,
            "envelope": envelope,
            "earlier": earlier,
            "error": kwargs.get("error"),
        })

    @http.route("/esign/demo/sign/<string:token>/document", type="http", auth="public", methods=["GET"])
    def esign_demo_document(self, token, **_kwargs):
        envelope = self._demo_signer(token).envelope_id
        return request.make_response(base64.b64decode(envelope.document), headers=[
            ("Content-Type", "application/pdf"),
            ("Content-Disposition", http.content_disposition(envelope.filename or "document.pdf")),
        ])

    @http.route("/esign/demo/sign/<string:token>/<string:decision>", type="http", auth="public",
                methods=["POST"], max_content_length=MAX_DEMO_FORM_BYTES)
    def esign_demo_act(self, token, decision, reason="", **_kwargs):
        if decision not in ("sign", "refuse"):
            raise NotFound()
        signer = self._demo_signer(token)
        try:
            body = signer.envelope_id._act(signer, "signed" if decision == "sign" else "refused", reason)
        except UserError as error:
            return self.esign_demo_page(token, error=str(error))
        status, text = signer._notify(body)
        if status != 200:
            _logger.warning("Demo notification for %s answered %s %s", signer.envelope_id.reference, status, text)
        return request.redirect(f"/esign/demo/sign/{token}")
