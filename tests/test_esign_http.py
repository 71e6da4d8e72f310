# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The webhook and the Demo signing page over real HTTP."""
from odoo.tests import HttpCase, tagged

from ..api import demo as demo_wire
from .common import EsignCommon


@tagged("post_install", "-at_install")
class TestHttp(EsignCommon, HttpCase):

    def test_webhook_over_http(self):
        request, _result = self.send()
        body = self.demo_body(request, "signer.signed", "sent", {"client": "signed", "company": "pending"},
                              event_id="evt-http")
        url = "/esign/webhook/demo"
        bad = self.url_open(url, data=body, headers={demo_wire.SIGNATURE_HEADER: "t=1,v1=00"})
        self.assertEqual(bad.status_code, 403)
        self.assertEqual(self.signer(request, "client").state, "pending")
        good = self.url_open(url, data=body, headers={
            demo_wire.SIGNATURE_HEADER: demo_wire.sign(self.provider.webhook_secret, body),
            "Content-Type": "application/json"})
        self.assertEqual(good.status_code, 200)
        self.assertEqual(self.env["esign.request.event"].search([("dedup_key", "=", "demo:evt-http")]).state,
                         "received", "stored and answered; applied right after, not while the provider waits")
        self.run_jobs()
        self.assertEqual(self.signer(request, "client").state, "signed")
        malformed = b"[1, 2"
        response = self.url_open(url, data=malformed, headers={
            demo_wire.SIGNATURE_HEADER: demo_wire.sign(self.provider.webhook_secret, malformed)})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(self.url_open("/esign/webhook/unknown", data=b"{}").status_code, 404)

    def test_demo_signing_page(self):
        request, _result = self.send()
        client = self.demo_signer(request, "client")
        company = self.demo_signer(request, "company")
        page = self.url_open(f"/esign/demo/sign/{company.token}")
        self.assertEqual(page.status_code, 200)
        self.assertIn("It is not your turn yet", page.text)
        page = self.url_open(f"/esign/demo/sign/{client.token}")
        self.assertIn("Sign</button>", page.text)
        document = self.url_open(f"/esign/demo/sign/{client.token}/document")
        self.assertTrue(document.content.startswith(b"%PDF"))
        self.assertEqual(self.url_open("/esign/demo/sign/not-a-token").status_code, 404)

    def test_form_encoded_body_reaches_the_verification_intact(self):
        """Odoo parses a form body before the controller runs: the raw bytes must survive that
        (SELL&SIGN posts form-encoded callbacks), or the signature check sees an empty body."""
        request, _result = self.send()
        body = self.demo_body(request, "signer.signed", "sent", {"client": "signed", "company": "pending"},
                              event_id="evt-form")
        response = self.url_open("/esign/webhook/demo", data=body, headers={
            demo_wire.SIGNATURE_HEADER: demo_wire.sign(self.provider.webhook_secret, body),
            "Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(response.status_code, 200, response.text)
        self.assertTrue(self.env["esign.request.event"].search([("dedup_key", "=", "demo:evt-form")]))

    def test_oversized_body_is_refused_before_it_is_read(self):
        request, _result = self.send()
        events_before = self.env["esign.request.event"].search_count([])
        huge = b"{" + b" " * (5 * 1024 * 1024 + 10) + b"}"
        response = self.url_open("/esign/webhook/demo", data=huge, headers={
            demo_wire.SIGNATURE_HEADER: demo_wire.sign(self.provider.webhook_secret, huge)})
        self.assertEqual(response.status_code, 413)
        self.assertEqual(self.env["esign.request.event"].search_count([]), events_before)
