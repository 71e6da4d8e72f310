# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The whole SELL&SIGN flow through the wizard, against FakeSellAndSign over real HTTP.

SELL&SIGN's callbacks are unsigned "contract X changed" pings carrying the request's callback token
in the URL; the core then reads the contract through the API. Individual mode sends with the central
seat (token + vendor) and only changes the company's signer (see the model's docstring).
"""
import json

from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import EsignCommon, with_query
from .fakes.sellandsign import FakeSellAndSign

J_TOKEN = "sellandsign-ceo-seat-token"
BASE_URL = "https://odoo.example.com"
CLIENT_EMAIL = "anna@client.example.com"
CEO_EMAIL = "ceo@acme.example.com"
SALES_EMAIL = "sam.sns@acme.example.com"



@tagged("post_install", "-at_install")
class TestSellAndSignFlow(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = FakeSellAndSign().start()
        cls.addClassCleanup(cls.fake.stop)
        cls.env["ir.config_parameter"].sudo().set_param("web.base.url", BASE_URL)
        cls.sns = cls.env["esign.provider"].create({
            "name": "SELL&SIGN", "code": "sellandsign", "state": "test", "company_id": cls.company.id,
            "account_mode": "central",
            "representative_user_id": cls.ceo.id, "representative_first_name": "Celina",
            "representative_last_name": "Boss", "representative_email": CEO_EMAIL,
            "api_base_url_override": cls.fake.base_url,
            "sellandsign_j_token": J_TOKEN, "sellandsign_vendor_email": CEO_EMAIL,
            "sellandsign_signature_mode": "2",  # no SMS code: no mobile numbers needed
        })
        cls.company.esign_provider_id = cls.sns
        cls.env["esign.user.account"].create({
            "provider_id": cls.sns.id, "user_id": cls.salesman.id,
            "login": SALES_EMAIL, "first_name": "Sam", "last_name": "Seller",
        })

    def setUp(self):
        super().setUp()
        fake = self.fake
        with fake.lock:
            fake.licences.clear()
            fake.contracts.clear()
            fake.requests.clear()
            fake.faults.clear()
            fake.outbox.clear()
        fake.drop_callbacks = 0
        fake.add_licence(J_TOKEN, CEO_EMAIL)
        fake.callback_sink = self._sink
        self.addCleanup(setattr, fake, "callback_sink", None)

    # ------------------------------------------------------------------ helpers

    def _sink(self, url, body, headers):
        return self.receive_callback("sellandsign", url, body, headers)

    def flush(self):
        statuses = self.fake.flush_callbacks()
        self.assertTrue(all(status == 200 for status in statuses), statuses)
        return statuses

    def take_callbacks(self):
        with self.fake.lock:
            pending, self.fake.outbox = self.fake.outbox, []
        return pending

    def assert_signed_with_documents(self, request):
        self.assertEqual(request.state, "signed")
        self.assertTrue(self.agreement.signature_date)
        signed = request.signed_document_id
        self.assertEqual((signed.res_model, signed.res_id), ("agreement", self.agreement.id))
        self.assertTrue(signed.raw.startswith(b"%PDF"))
        self.assertIn(b"%SELLANDSIGN-SIGNED", signed.raw)
        self.assertTrue(request.evidence_document_id)
        self.assertFalse(request.documents_pending)

    # ------------------------------------------------------------------ central mode

    def test_central_whole_flow(self):
        request, _result = self.send()
        self.assertEqual(request.state, "sent", request.last_error)
        packet = self.fake.packets()[0]
        self.assertEqual(packet["customer"]["vendor"], CEO_EMAIL)
        self.assertIn(CEO_EMAIL, json.dumps(packet["contractors"]))
        callback = self.fake.contract(request.provider_ref)["callback"]
        self.assertTrue(callback.startswith(f"{BASE_URL}/esign/webhook/sellandsign?token="))
        self.assertIn(request.sudo().callback_token, callback)
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.flush()
        self.assertEqual(request.state, "sent")
        self.assertEqual(self.signer(request, "client").state, "signed")
        self.fake.sign(request.provider_ref, CEO_EMAIL)
        self.flush()
        self.assert_signed_with_documents(request)

    def test_lost_callback_then_refresh(self):
        request, _result = self.send()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.fake.sign(request.provider_ref, CEO_EMAIL)
        self.fake.drop_callbacks = 2
        self.fake.flush_callbacks()
        self.assertEqual(request.state, "sent")
        self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assert_signed_with_documents(request)

    def test_refusal(self):
        request, _result = self.send()
        self.fake.reject(request.provider_ref, CLIENT_EMAIL)
        self.flush()
        self.assertEqual(request.state, "refused")
        self.assertFalse(self.agreement.signature_date)

    def test_replayed_callback_applied_once(self):
        request, _result = self.send()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        (url, body, headers), = self.take_callbacks()
        self.assertEqual(self._sink(url, body, headers), 200)
        self.assertEqual(self._sink(url, body, headers), 200)
        events = self.env["esign.request.event"].sudo().search(
            [("request_id", "=", request.id), ("source", "=", "webhook")])
        self.assertEqual(len(events), 1)

    def test_wrong_or_missing_token_is_403_and_changes_nothing(self):
        request, _result = self.send()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.fake.sign(request.provider_ref, CEO_EMAIL)
        callbacks = self.take_callbacks()
        events = self.env["esign.request.event"].sudo()
        before = events.search_count([])
        for url, body, headers in callbacks:
            self.assertEqual(self._sink(with_query(url, token="y" * 43), body, headers), 403)
            self.assertEqual(self._sink(with_query(url, token=None), body, headers), 403)
        self.assertEqual(request.state, "sent")
        self.assertEqual(self.signer(request, "client").state, "pending")
        self.assertEqual(events.search_count([]), before)

    def test_token_of_another_request_is_403(self):
        other_agreement = self._make_agreement("C-002", self.client_partner)
        request, _result = self.send()
        other, _result = self.send(other_agreement)
        self.assertEqual(other.state, "sent", other.last_error)
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        (url, body, headers), = self.take_callbacks()
        stolen = with_query(url, token=other.sudo().callback_token)
        self.assertEqual(self._sink(stolen, body, headers), 403)
        self.assertEqual(self.signer(request, "client").state, "pending")
        self.assertEqual(self.signer(other, "client").state, "pending")

    def test_provider_error_on_send_leaves_request_in_error(self):
        self.fake.fail_next(400, b"customer.fields.email is invalid")
        request, _result = self.send()
        self.assertEqual(request.state, "error")
        self.assertIn("SELL&SIGN", request.last_error)
        self.assertFalse(request.provider_ref)
        self.assertEqual(self.fake.contracts, {})

    def test_failed_auto_close_is_told_to_the_user(self):
        self.fake.fail_next(500, on=("POST", r"/model/contract/update$"), times=3)  # and its retries
        request, _result = self.send()
        self.assertEqual(request.state, "sent", "the contract is out: the send itself succeeded")
        notes = " ".join(self.agreement.message_ids.mapped("body"))
        self.assertIn("could not be set to close contract", notes)
        self.assertIn("close (validate) the contract in SELL&amp;SIGN", notes)
        self.assertNotIn(self.sns.sellandsign_j_token, notes)

    def test_missing_settings_named(self):
        self.sns.sellandsign_j_token = False
        with self.assertRaisesRegex(UserError, "SELL&SIGN API token"):
            self.send()

    # ------------------------------------------------------------------ individual mode

    def test_individual_mode_central_seat_sends_salesman_signs(self):
        self.sns.account_mode = "individual"
        request, _result = self.send()
        self.assertEqual(request.state, "sent", request.last_error)
        packet = self.fake.packets()[0]
        self.assertEqual(packet["customer"]["vendor"], CEO_EMAIL)  # the token's seat sends
        self.assertIn(SALES_EMAIL, json.dumps(packet["contractors"]))
        self.assertNotIn(CEO_EMAIL, json.dumps(packet["contractors"]))
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.fake.sign(request.provider_ref, SALES_EMAIL)
        self.flush()
        self.assert_signed_with_documents(request)
