# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The whole DocuSign flow through the wizard, against the strict fake DocuSign over real HTTP.

Connect messages are HMAC-signed by the fake and enter our real webhook handler in the test's own
transaction (``fake.callback_sink``).
"""
import os

from odoo.exceptions import UserError
from odoo.tests import tagged

from ..api import docusign as docusign_api
from ..api import keys as rsa_keys
from .common import EsignCommon

_MODULE_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

from .fakes.docusign import FakeActionError, FakeDocuSign, spec_path_from

SPEC = spec_path_from(os.environ.get(
    "ESIGN_SHARED_PROVIDERS", os.path.join(os.path.dirname(_MODULE_DIR), "shared", "providers")))

INTEGRATION_KEY = "6f1d2c3b-0000-4000-8000-00000000abcd"
ACCOUNT_ID = "a1b2c3d4-0000-4000-8000-000000000001"
REP_ID = "11111111-0000-4000-8000-000000000001"
SALES_ID = "22222222-0000-4000-8000-000000000002"
CONNECT_KEY = "connect-hmac-key-1"
CLIENT_EMAIL = "anna@client.example.com"
CEO_EMAIL = "ceo@acme.example.com"
SALES_EMAIL = "sam@acme.example.com"


@tagged("post_install", "-at_install")
class TestDocuSignFlow(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # DocuSign Connect posts to https only (the fake checks it like DocuSign does).
        cls.env["ir.config_parameter"].sudo().set_param("web.base.url", "https://odoo.example.com")
        cls.fake = FakeDocuSign(spec_path=SPEC).start()
        cls.addClassCleanup(cls.fake.stop)
        cls.ds = cls.env["esign.provider"].create({
            "name": "DocuSign",
            "code": "docusign",
            "state": "test",
            "company_id": cls.company.id,
            "account_mode": "central",
            "representative_user_id": cls.ceo.id,
            "representative_first_name": "Celina",
            "representative_last_name": "Boss",
            "representative_email": CEO_EMAIL,
            "representative_basis": "CEO, entry in the commercial register",
            "representative_provider_user_id": REP_ID,
            "api_base_url_override": cls.fake.rest_url,
            "docusign_auth_host_override": cls.fake.base_url,
            "docusign_integration_key": INTEGRATION_KEY,
            "docusign_account_id": ACCOUNT_ID,
            "docusign_consent_redirect_uri": "https://odoo.example.com/docusign/consent",
            "webhook_secret": CONNECT_KEY,
        })
        cls.ds.action_generate_key_pair()
        cls.public_pem = rsa_keys.public_pem(cls.ds.jwt_private_key)
        cls.company.esign_provider_id = cls.ds
        cls.sales_account = cls.env["esign.user.account"].create({
            "provider_id": cls.ds.id, "user_id": cls.salesman.id, "login": SALES_EMAIL,
            "first_name": "Sam", "last_name": "Seller", "provider_user_id": SALES_ID,
        })

    def setUp(self):
        super().setUp()
        docusign_api.clear_caches()
        self.addCleanup(docusign_api.clear_caches)
        fake = self.fake
        fake.reset()
        fake.register_integration(INTEGRATION_KEY, self.public_pem)
        fake.add_account(ACCOUNT_ID, name="Acme Sp. z o.o.")
        fake.add_user(REP_ID, email=CEO_EMAIL, name="Celina Boss", accounts=[ACCOUNT_ID])
        fake.add_user(SALES_ID, email=SALES_EMAIL, name="Sam Seller", accounts=[ACCOUNT_ID])
        fake.connect_secrets = [CONNECT_KEY]
        fake.callback_sink = self._sink

    # ------------------------------------------------------------------ helpers

    def _sink(self, url, body, headers):
        return self.receive_callback("docusign", url, body, headers)

    def flush(self):
        return self.fake.flush_callbacks()

    def lose_callbacks(self):
        with self.fake.lock:
            lost, self.fake.outbox = self.fake.outbox, []
        return lost

    def envelope(self, request):
        return self.fake.envelopes[request.provider_ref]

    def states(self, request):
        return self.signer(request, "client").state, self.signer(request, "company").state

    # ------------------------------------------------------------------ flows

    def test_central_mode_whole_flow(self):
        request, result = self.send()
        self.assertEqual(result["params"]["type"], "success", request.last_error)
        self.assertEqual((request.state, request.provider_id, request.account_mode), ("sent", self.ds, "central"))
        envelope = self.envelope(request)
        self.assertEqual(envelope["sender_user_id"], REP_ID)
        self.assertEqual([(s["email"], s["routingOrder"]) for s in envelope["signers"]],
                         [(CLIENT_EMAIL, 1), (CEO_EMAIL, 2)])
        self.assertIn("Signs on behalf of Acme Sp. z o.o., PL1234567890", envelope["signers"][1]["note"])
        self.assertEqual(envelope["eventNotification"]["url"], "https://odoo.example.com/esign/webhook/docusign")
        self.assertEqual(self.states(request), ("pending", "waiting"))
        if SPEC:
            self.assertIn("envelopeDefinition", [d for d, _p in self.fake.validated])

        self.assertEqual(self.flush(), [200])  # envelope-sent
        # Routing order: the company cannot sign before the client.
        with self.assertRaises(FakeActionError):
            self.fake.sign(request.provider_ref, CEO_EMAIL)

        self.fake.open(request.provider_ref, CLIENT_EMAIL)
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.assertTrue(all(status == 200 for status in self.flush()))
        self.assertEqual(self.states(request), ("signed", "pending"))
        self.assertEqual(request.state, "sent")

        self.fake.sign(request.provider_ref, CEO_EMAIL)
        self.assertEqual(self.flush(), [200, 200])  # recipient-completed, envelope-completed
        self.assertEqual(request.state, "signed")
        self.assertEqual(request.provider_state, "completed")
        self.assertEqual(self.states(request), ("signed", "signed"))
        self.assertEqual(self.agreement.esign_state, "signed")
        self.assertTrue(self.agreement.signature_date)
        signed, evidence = request.signed_document_id, request.evidence_document_id
        self.assertEqual((signed.res_model, signed.res_id), ("agreement", self.agreement.id))
        self.assertTrue(signed.raw.startswith(b"%PDF"))
        self.assertIn(b"status=completed", signed.raw)
        self.assertIn(b"Certificate of Completion", evidence.raw)
        self.assertFalse(request.documents_pending)
        webhook_events = request.event_ids.filtered(lambda e: e.source == "webhook")
        self.assertEqual(set(webhook_events.mapped("state")), {"processed"})
        self.assertIn("envelope-completed", webhook_events.mapped("event_type"))
        self.assertIn("signed", self.agreement.activity_ids.summary.lower())

    def test_individual_mode_uses_the_senders_own_docusign_user(self):
        self.ds.account_mode = "individual"
        request, result = self.send()
        self.assertEqual(result["params"]["type"], "success", request.last_error)
        self.assertEqual(request.account_mode, "individual")
        envelope = self.envelope(request)
        self.assertEqual(envelope["sender_user_id"], SALES_ID)
        self.assertEqual([s["email"] for s in envelope["signers"]], [CLIENT_EMAIL, SALES_EMAIL])
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.fake.sign(request.provider_ref, SALES_EMAIL)
        self.flush()
        self.assertEqual(request.state, "signed")
        self.assertTrue(request.signed_document_id)
        self.assertTrue(self.agreement.signature_date)

    def test_individual_mode_without_docusign_user_id_is_refused_before_sending(self):
        self.ds.account_mode = "individual"
        self.sales_account.provider_user_id = False
        with self.assertRaisesRegex(UserError, "Sam Seller's DocuSign account has no DocuSign user ID"):
            self.send()
        self.assertFalse(self.agreement.esign_request_ids)
        self.assertFalse(self.fake.requests)

    def test_lost_callbacks_then_refresh(self):
        request, _result = self.send()
        self.flush()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.assertTrue(self.lose_callbacks())
        self.assertEqual(self.states(request), ("pending", "waiting"))
        self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assertEqual(self.states(request), ("signed", "pending"))
        self.fake.sign(request.provider_ref, CEO_EMAIL)
        self.lose_callbacks()
        self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assertEqual(request.state, "signed")
        self.assertTrue(self.agreement.signature_date)
        self.assertTrue(request.signed_document_id and request.evidence_document_id)
        self.assertIn("refresh", request.event_ids.mapped("source"))

    def test_refusal(self):
        request, _result = self.send()
        self.fake.decline(request.provider_ref, CLIENT_EMAIL, reason="Price too high")
        self.flush()
        self.assertEqual(request.state, "refused")
        self.assertEqual(request.reason, "Price too high")
        self.assertEqual(self.signer(request, "client").state, "refused")
        self.assertFalse(self.agreement.signature_date)
        self.assertFalse(request.signed_document_id)

    def test_remind_then_cancel_voids_the_envelope(self):
        request, _result = self.send()
        action = request.with_user(self.salesman).action_esign_remind()
        self.run_jobs()  # the provider is called once the transaction has committed
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(self.envelope(request)["resends"], 1)
        request.with_user(self.manager).action_esign_cancel()
        self.run_jobs()  # the provider is called once the transaction has committed
        self.assertEqual(request.state, "cancelled")
        envelope = self.envelope(request)
        self.assertEqual(envelope["status"], "voided")
        self.assertIn("Mia Manager", envelope["voidedReason"])
        # DocuSign's own envelope-voided message arrives afterwards and changes nothing.
        self.assertTrue(all(status == 200 for status in self.flush()))
        self.assertEqual(request.state, "cancelled")
        with self.assertRaises(FakeActionError):
            self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        with self.assertRaisesRegex(UserError, "Only a request waiting"):
            request.with_user(self.salesman).action_esign_remind()

    def test_server_error_on_create_is_looked_up_then_sent_once(self):
        # Log in first, so the injected 503 answers the envelope creation itself.
        self.ds._esign_get_client(user=self.salesman)._token()
        self.fake.fail_next(503, {"errorCode": "SERVICE_UNAVAILABLE", "message": "Try later"})
        request, _result = self.send()
        # A 503 on the POST may hide an envelope DocuSign created: never an error, never a blind resend.
        self.assertEqual(request.state, "sending")
        self.assertTrue(request.send_outcome_unknown)
        self.assertIn("DocuSign is unavailable (HTTP 503)", request.last_error)
        self.assertIn("Try later", request.last_error)
        self.assertIn("looked up", request.last_error)
        self.assertFalse(request.provider_ref)
        self.assertFalse(self.fake.envelopes)
        self.time_passes(request)
        self.run_jobs()
        self.assertEqual(request.state, "sent", request.last_error)
        self.assertEqual(list(self.fake.envelopes), [request.provider_ref], "nothing found, so sent once")
        self.assertFalse(self.agreement.signature_date)

    def test_lost_answer_after_docusign_created_the_envelope_is_adopted_not_resent(self):
        self.ds._esign_get_client(user=self.salesman)._token()
        self.fake.lose_response_next(on=("POST", r"/envelopes$"))
        request, _result = self.send()
        self.assertEqual(request.state, "sending")
        self.assertTrue(request.send_outcome_unknown)
        self.assertEqual(len(self.fake.envelopes), 1, "DocuSign did create it")
        self.time_passes(request)
        self.run_jobs()
        self.assertEqual(request.state, "sent", request.last_error)
        self.assertEqual(list(self.fake.envelopes), [request.provider_ref], "found by our reference, not resent")
        self.assertEqual(len(self.fake.requests_to("POST", r"/envelopes$")), 1)

    def test_consent_required_is_explained(self):
        self.fake.users[REP_ID]["consented"] = False
        request, _result = self.send()
        self.assertEqual(request.state, "error")
        self.assertIn("consent_required", request.last_error)
        self.assertIn(f"{self.fake.base_url}/oauth/auth?response_type=code", request.last_error)
        self.assertFalse(self.fake.envelopes)
        with self.assertRaisesRegex(UserError, "consent_required"):
            self.ds.action_docusign_test_connection()

    def test_forged_callback_is_refused(self):
        request, _result = self.send()
        self.flush()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        pending = self.lose_callbacks()
        events_before = self.env["esign.request.event"].search_count([])
        for url, body, headers in pending:
            forged = {k: v for k, v in headers.items() if not k.lower().startswith("x-docusign-signature")}
            forged["X-DocuSign-Signature-1"] = self.fake.sign_body(body)["X-DocuSign-Signature-1"][:-4] + "AAA="
            self.assertEqual(self._sink(url, body, forged), 403)
            tampered = body.replace(b'"completed"', b'"declined"')
            self.assertEqual(self._sink(url, tampered, headers), 403)
            unsigned = {k: v for k, v in headers.items() if not k.lower().startswith("x-docusign-signature")}
            self.assertEqual(self._sink(url, body, unsigned), 403)
        self.assertEqual(self.env["esign.request.event"].search_count([]), events_before)
        self.assertEqual(self.states(request), ("pending", "waiting"))
        # The genuine messages are accepted.
        for url, body, headers in pending:
            self.assertEqual(self._sink(url, body, headers), 200)
        self.assertEqual(self.states(request), ("signed", "pending"))

    def test_replayed_callback_is_applied_once(self):
        request, _result = self.send()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.flush()
        events = request.event_ids
        messages = len(self.agreement.message_ids)
        self.fake.republish(-1)  # a Connect retry: same message, retryCount + 1
        self.assertEqual(self.flush(), [200])
        self.assertEqual(request.event_ids, events)
        self.assertEqual(len(self.agreement.message_ids), messages)
        self.assertEqual(self.states(request), ("signed", "pending"))

    # ------------------------------------------------------------------ configuration

    def test_missing_settings_are_named(self):
        self.ds.representative_provider_user_id = False
        with self.assertRaisesRegex(UserError, "Missing: Representative's DocuSign user ID"):
            self.send()
        self.ds.write({"representative_provider_user_id": REP_ID, "docusign_integration_key": False})
        with self.assertRaisesRegex(UserError, "DocuSign integration key"):
            self.send()
        self.ds.write({"docusign_integration_key": INTEGRATION_KEY, "webhook_secret": False})
        with self.assertRaisesRegex(UserError, "DocuSign Connect HMAC key"):
            self.send()
        self.assertFalse(self.agreement.esign_request_ids)
        self.assertFalse(self.fake.requests)

    def test_admin_helpers_and_hosts(self):
        consent = self.ds.docusign_consent_url
        self.assertTrue(consent.startswith(f"{self.fake.base_url}/oauth/auth?response_type=code"))
        self.assertIn(f"client_id={INTEGRATION_KEY}", consent)
        self.assertIn("scope=signature%20impersonation", consent)
        self.assertIn("redirect_uri=https%3A%2F%2Fodoo.example.com%2Fdocusign%2Fconsent", consent)
        self.assertEqual(self.ds.action_docusign_open_consent()["url"], consent)
        self.assertEqual(self.ds.docusign_public_key_pem, self.public_pem)
        self.assertTrue(self.public_pem.startswith("-----BEGIN PUBLIC KEY-----"))
        action = self.ds.action_docusign_test_connection()
        self.assertEqual(action["params"]["type"], "success")
        self.assertIn(ACCOUNT_ID, action["params"]["message"])
        # Without overrides: the sandbox hosts in Test Mode, production when enabled.
        self.ds.write({"api_base_url_override": False, "docusign_auth_host_override": False})
        client = self.ds._esign_build_client({"provider_user_id": REP_ID})
        self.assertEqual((client.auth_url, client.base_url, client.user_id),
                         ("https://account-d.docusign.com", docusign_api.SANDBOX_URL, REP_ID))
        self.assertEqual(client.hmac_secrets, [CONNECT_KEY])
        self.ds.state = "enabled"
        client = self.ds._esign_build_client({})
        self.assertEqual(client.auth_url, "https://account.docusign.com")
        self.assertEqual(client.base_url, "")  # the account's own host comes from /oauth/userinfo
        self.assertTrue(self.ds.docusign_consent_url.startswith("https://account.docusign.com/oauth/auth?"))
        # The credentials are for administrators only.
        with self.assertRaises(Exception):
            self.ds.with_user(self.manager).read(["docusign_integration_key"])
