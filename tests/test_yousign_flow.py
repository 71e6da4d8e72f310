# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The whole Yousign flow through the wizard, against FakeYousign over real HTTP.

The fake validates every request against Yousign's OpenAPI document when it is available in
``shared/providers/yousign`` (and openapi-core is installed). Its webhooks are HMAC-signed with the
secret of the subscription our "Register notification URL" button created, and enter our real
webhook handler in the test's transaction.
"""
import json
import os

from odoo.exceptions import UserError
from odoo.tests import tagged

from ..api import yousign as yousign_api
from .common import EsignCommon
from .fakes.yousign import FakeActionError, FakeYousign, SpecUnavailable, load_openapi, spec_path_from

API_KEY = "ys-odoo-test-key-0123456789"
BASE_URL = "https://odoo.example.com"
CLIENT_EMAIL = "anna@client.example.com"
CEO_EMAIL = "ceo@acme.example.com"
SALES_EMAIL = "sam@acme.example.com"


def _spec_path():
    shared = os.environ.get("ESIGN_SHARED_PROVIDERS") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "shared", "providers")
    path = spec_path_from(shared)
    if not path:
        return None
    try:
        load_openapi(path)
    except SpecUnavailable:
        return None
    return path


@tagged("post_install", "-at_install")
class TestYousignFlow(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = FakeYousign(api_key=API_KEY, spec_path=_spec_path()).start()
        cls.addClassCleanup(cls.fake.stop)
        cls.env["ir.config_parameter"].sudo().set_param("web.base.url", BASE_URL)
        cls.salesman.tz = "Europe/Warsaw"
        cls.yousign = cls.env["esign.provider"].create({
            "name": "Yousign",
            "code": "yousign",
            "state": "test",
            "company_id": cls.company.id,
            "account_mode": "central",
            "representative_user_id": cls.ceo.id,
            "representative_first_name": "Celina",
            "representative_last_name": "Boss",
            "representative_email": CEO_EMAIL,
            "representative_basis": "CEO, entry in the commercial register",
            "api_base_url_override": cls.fake.api_url,
            "yousign_api_key": API_KEY,
        })
        cls.company.esign_provider_id = cls.yousign
        cls.env["esign.user.account"].create({
            "provider_id": cls.yousign.id, "user_id": cls.salesman.id,
            "login": SALES_EMAIL, "first_name": "Sam", "last_name": "Seller",
        })
        # What the administrator does once: the button subscribes our URL and keeps Yousign's secret.
        cls.register_action = cls.yousign.action_yousign_register_webhook()
        cls.subscriptions = dict(cls.fake.subscriptions)

    def setUp(self):
        super().setUp()
        fake = self.fake
        with fake.lock:
            for store in (fake.signature_requests, fake.rules, fake.faults, fake.outbox, fake.events,
                          fake.delivered, fake.reminders, fake.requests, fake.spec_rejections):
                store.clear()
            fake.subscriptions.clear()
            fake.subscriptions.update(self.subscriptions)  # only the one registered in setUpClass
        fake.drop_callbacks = 0
        self.sink_urls = []
        fake.callback_sink = self._sink
        self.addCleanup(setattr, fake, "callback_sink", None)
        # Every request we sent conformed to Yousign's OpenAPI document (when it is available).
        self.addCleanup(lambda: self.assertEqual(fake.spec_rejections, []))

    # ------------------------------------------------------------------ helpers

    def _sink(self, url, body, headers):
        self.sink_urls.append(url)
        return self.receive_callback("yousign", url, body, headers)

    def flush(self):
        statuses = self.fake.flush_callbacks()
        self.assertTrue(all(status == 200 for status in statuses), statuses)
        return statuses

    def remote(self, request):
        return self.fake.signature_requests[request.provider_ref]

    def sign(self, request, email, deliver=True):
        self.fake.sign(request.provider_ref, email)
        if deliver:
            self.flush()
        else:
            with self.fake.lock:
                self.fake.outbox.clear()  # the notifications are lost

    def assert_signed_with_documents(self, request, company_email):
        self.assertEqual(request.state, "signed")
        self.assertEqual(self.agreement.esign_state, "signed")
        self.assertTrue(self.agreement.signature_date)
        self.assertTrue(request.completed_at)
        signed = request.signed_document_id
        self.assertEqual((signed.res_model, signed.res_id), ("agreement", self.agreement.id))
        self.assertTrue(signed.raw.startswith(b"%PDF"))
        self.assertIn(f"signed with fake Yousign by {CLIENT_EMAIL}, {company_email}".encode(), signed.raw)
        self.assertIn("signed", signed.name)
        evidence = request.evidence_document_id
        self.assertIn(b"Yousign audit trail", evidence.raw)
        self.assertEqual((evidence.res_model, evidence.res_id), ("agreement", self.agreement.id))
        self.assertFalse(request.documents_pending)

    # ------------------------------------------------------------------ set-up and settings

    def test_register_webhook_subscribed_our_url_with_its_secret(self):
        self.assertEqual(self.register_action["params"]["type"], "success")
        subs = list(self.fake.subscriptions.values())
        self.assertEqual(len(subs), 1)
        sub = subs[0]
        self.assertEqual(sub["endpoint"], f"{BASE_URL}/esign/webhook/yousign")
        self.assertEqual(sub["endpoint"], self.yousign.webhook_url)
        self.assertTrue(sub["sandbox"])
        self.assertEqual(self.yousign.webhook_secret, sub["secret_key"])
        self.assertEqual(self.yousign.yousign_webhook_id, sub["id"])
        self.assertIn("signature_request.done", sub["subscribed_events"])
        # Where Yousign's OpenAPI file is present, the fake checks every request against it.
        if os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.realpath(__file__)))), "shared", "providers", "yousign", "openapi.json")):
            self.assertIsNotNone(self.fake.openapi)

    def test_register_webhook_errors_are_clear(self):
        self.fake.fail_when("POST", r"^/webhooks$", status=400,
                            body={"type": "invalid_request_error", "detail": "endpoint: not reachable"})
        secret = self.yousign.webhook_secret
        with self.assertRaisesRegex(UserError, "Yousign refused the request.*endpoint: not reachable"):
            self.yousign.action_yousign_register_webhook()
        self.assertEqual(self.yousign.webhook_secret, secret)
        self.env["ir.config_parameter"].sudo().set_param("web.base.url", "http://localhost:8069")
        self.yousign.invalidate_recordset(["webhook_url"])
        with self.assertRaisesRegex(UserError, "only notifies https addresses"):
            self.yousign.action_yousign_register_webhook()
        self.assertEqual(len(self.fake.subscriptions), 1)

    def test_client_settings_and_hosts(self):
        self.yousign.write({"yousign_workspace_id": " 0b1c2d3e-0000-4000-8000-000000000001 ",
                            "yousign_signature_level": "advanced_electronic_signature",
                            "yousign_authentication_mode": "otp_sms"})
        client = self.yousign.with_user(self.salesman)._esign_get_client()
        self.assertIsInstance(client, yousign_api.YousignClient)
        self.assertEqual(client.base_url, self.fake.api_url)
        self.assertEqual(client.api_key, API_KEY)
        self.assertEqual(client.webhook_secrets, [self.yousign.webhook_secret])
        self.assertEqual(client.workspace_id, "0b1c2d3e-0000-4000-8000-000000000001")
        self.assertEqual((client.signature_level, client.authentication_mode),
                         ("advanced_electronic_signature", "otp_sms"))
        self.assertEqual(client.timezone, "Europe/Warsaw")  # the sending user's time zone
        self.yousign.api_base_url_override = False
        self.assertEqual(self.yousign._esign_build_client({}).base_url, yousign_api.SANDBOX_URL)
        self.yousign.state = "enabled"
        self.assertEqual(self.yousign._esign_build_client({}).base_url, yousign_api.PRODUCTION_URL)

    def test_missing_settings_are_named(self):
        self.yousign.yousign_api_key = False
        with self.assertRaisesRegex(UserError, "Missing: Yousign API key"):
            self.send()
        self.yousign.write({"yousign_api_key": API_KEY, "webhook_secret": False})
        with self.assertRaisesRegex(UserError, "Missing: Webhook secret"):
            self.send()
        self.assertFalse(self.agreement.esign_request_ids)
        self.assertFalse(self.fake.requests)

    # ------------------------------------------------------------------ whole flows

    def test_central_mode_whole_flow(self):
        request, result = self.send()
        self.assertEqual(result["params"]["type"], "success")
        self.assertEqual(request.state, "sent")
        self.assertEqual(request.provider_id, self.yousign)
        self.assertEqual(request.account_mode, "central")
        remote = self.remote(request)
        self.assertEqual(remote["status"], "ongoing")
        self.assertTrue(remote["ordered_signers"])
        self.assertEqual(remote["external_id"], request.reference)
        self.assertEqual(remote["timezone"], "Europe/Warsaw")
        self.assertEqual([s["info"]["email"] for s in remote["signers"]], [CLIENT_EMAIL, CEO_EMAIL])
        self.assertEqual((remote["signers"][1]["info"]["first_name"], remote["signers"][1]["info"]["last_name"]),
                         ("Celina", "Boss"))
        self.assertEqual({(s["signature_level"], s["signature_authentication_mode"]) for s in remote["signers"]},
                         {("electronic_signature", "otp_email")})
        client, company = self.signer(request, "client"), self.signer(request, "company")
        self.assertEqual((client.state, company.state), ("pending", "waiting"))
        self.assertEqual(client.provider_ref, remote["signers"][0]["id"])
        self.assertIn("yousign.app/signatures/", client.signing_url)

        self.flush()  # activated + signer.notified
        self.assertEqual(set(self.sink_urls), {self.yousign.webhook_url})
        self.assertEqual(request.state, "sent")

        self.sign(request, CLIENT_EMAIL)
        self.assertEqual((client.state, company.state), ("signed", "pending"))
        self.assertEqual(request.state, "sent")
        with self.assertRaisesRegex(FakeActionError, "not .*turn"):
            self.fake.sign(request.provider_ref, CLIENT_EMAIL)

        self.sign(request, CEO_EMAIL)
        self.assertEqual(company.state, "signed")
        self.assert_signed_with_documents(request, CEO_EMAIL)
        self.assertEqual(request.provider_state, "done")
        webhooks = request.event_ids.filtered(lambda e: e.source == "webhook")
        self.assertIn("signature_request.done", webhooks.mapped("event_type"))
        self.assertEqual(set(request.event_ids.mapped("state")), {"processed"})
        bodies = " ".join(self.agreement.message_ids.mapped("body"))
        self.assertIn("signed by all parties", bodies)

    def test_individual_mode_the_salesman_signs_for_the_company(self):
        self.yousign.account_mode = "individual"
        request, _result = self.send()
        self.assertEqual(request.account_mode, "individual")
        company = self.signer(request, "company")
        self.assertEqual(company.email, SALES_EMAIL)
        remote = self.remote(request)
        self.assertEqual([s["info"]["email"] for s in remote["signers"]], [CLIENT_EMAIL, SALES_EMAIL])
        self.assertEqual(remote["signers"][1]["info"]["last_name"], "Seller")
        # Same API key in both modes: one credential for the whole organisation.
        auths = {r.headers.get("Authorization") for r in self.fake.requests}
        self.assertEqual(auths, {f"Bearer {API_KEY}"})
        self.flush()
        self.sign(request, CLIENT_EMAIL)
        self.sign(request, SALES_EMAIL)
        self.assert_signed_with_documents(request, SALES_EMAIL)

    def test_individual_mode_without_account_says_so(self):
        self.yousign.account_mode = "individual"
        with self.assertRaisesRegex(UserError, "Mia Manager has no Yousign account"):
            self.send(user=self.manager)
        self.assertFalse(self.fake.requests)

    def test_lost_webhooks_then_refresh(self):
        request, _result = self.send()
        with self.fake.lock:
            self.fake.outbox.clear()
        self.sign(request, CLIENT_EMAIL, deliver=False)
        self.assertEqual(self.signer(request, "client").state, "pending")
        self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assertEqual(self.signer(request, "client").state, "signed")
        self.assertEqual(self.signer(request, "company").state, "pending")
        self.assertEqual(request.state, "sent")
        self.sign(request, CEO_EMAIL, deliver=False)
        self.assertEqual(request.state, "sent")
        self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assert_signed_with_documents(request, CEO_EMAIL)
        self.assertIn("refresh", request.event_ids.mapped("source"))
        self.assertTrue(self.fake.requests_to("GET", r"/signers$"))

    def test_refusal(self):
        request, _result = self.send()
        self.flush()
        self.fake.decline(request.provider_ref, CLIENT_EMAIL, reason="Price too high")
        self.flush()
        self.assertEqual(request.state, "refused")
        self.assertEqual(request.reason, "Price too high")
        client = self.signer(request, "client")
        self.assertEqual(client.state, "refused")
        self.assertEqual(client.reason, "Price too high")
        self.assertEqual(self.signer(request, "company").state, "waiting")
        self.assertFalse(self.agreement.signature_date)
        self.assertFalse(request.signed_document_id)
        self.assertIn("refused", self.agreement.activity_ids.summary.lower())

    def test_remind_then_cancel_by_a_manager(self):
        request, _result = self.send()
        self.flush()
        action = request.with_user(self.salesman).action_esign_remind()
        self.run_jobs()  # the provider is called once the transaction has committed
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(self.fake.reminders, [(request.provider_ref, self.signer(request, "client").provider_ref)])

        request.with_user(self.manager).action_esign_cancel()
        self.run_jobs()  # the provider is called once the transaction has committed
        self.assertEqual(request.state, "cancelled")
        self.assertIn("Mia Manager", request.reason)
        remote = self.remote(request)
        self.assertEqual(remote["status"], "canceled")
        self.assertEqual(remote["cancel"]["reason"], "other")
        self.assertIn("Mia Manager", remote["cancel"]["custom_note"])
        self.flush()  # Yousign's own "canceled" notification changes nothing more
        self.assertEqual(request.state, "cancelled")
        with self.assertRaisesRegex(FakeActionError, "canceled"):
            self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        with self.assertRaisesRegex(UserError, "Only a request waiting for signatures"):
            request.with_user(self.salesman).action_esign_remind()

    # ------------------------------------------------------------------ failures

    def test_upload_failure_leaves_an_error_and_deletes_the_draft(self):
        self.fake.fail_when("POST", r"^/signature_requests/[^/]+/documents$", status=400,
                            body={"type": "invalid_request_error", "detail": "file: the PDF is damaged"})
        request, _result = self.send()
        self.assertEqual(request.state, "error")
        self.assertFalse(request.provider_ref)
        self.assertIn("could not upload the document", request.last_error)
        self.assertIn("the PDF is damaged", request.last_error)
        self.assertIn("was deleted at Yousign", request.last_error)
        # Nothing half-sent: the draft is gone, no signer was added, nothing was activated.
        (remote,) = self.fake.signature_requests.values()
        self.assertEqual(remote["status"], "deleted")
        self.assertEqual(remote["signers"], [])
        self.assertEqual(len(self.fake.requests_to("DELETE", r"^/signature_requests/[^/]+$")), 1)
        self.assertFalse(self.fake.requests_to("POST", r"/activate$"))
        self.flush()  # Yousign's "deleted" notification matches no sent request
        self.assertEqual(request.state, "error")
        bodies = " ".join(self.agreement.message_ids.mapped("body"))
        self.assertIn("was deleted at Yousign", bodies)

    def test_refused_credentials_on_send(self):
        self.fake.fail_next(401, {"type": "unauthorized", "detail": "Authentication failed"})
        request, _result = self.send()
        self.assertEqual(request.state, "error")
        self.assertIn("Yousign refused our credentials", request.last_error)
        self.assertEqual(len(self.fake.requests), 1)
        self.assertFalse(self.fake.signature_requests)

    def test_forged_webhook_is_refused(self):
        request, _result = self.send()
        self.flush()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        with self.fake.lock:
            pending, self.fake.outbox = self.fake.outbox, []
        events_before = self.env["esign.request.event"].search_count([])
        url, body, headers = pending[0]
        forged_secret = "f" * 32
        forged = [
            {**headers, "X-Yousign-Signature-256": FakeYousign.signature(forged_secret, body)},
            {k: v for k, v in headers.items() if k != "X-Yousign-Signature-256"},
        ]
        for forged_headers in forged:
            self.assertEqual(self._sink(url, body, forged_headers), 403)
        # The right signature over a changed body fails too.
        tampered = body.replace(b'"signed"', b'"declined"')
        self.assertNotEqual(tampered, body)
        self.assertEqual(self._sink(url, tampered, headers), 403)
        self.assertEqual(self.env["esign.request.event"].search_count([]), events_before)
        self.assertEqual(self.signer(request, "client").state, "pending")
        # The genuine deliveries still work.
        for item in pending:
            self.assertEqual(self._sink(*item), 200)
        self.assertEqual(self.signer(request, "client").state, "signed")

    def test_replayed_webhook_is_applied_once(self):
        request, _result = self.send()
        self.flush()
        self.sign(request, CLIENT_EMAIL)
        index = next(i for i, (_u, body, _h) in enumerate(self.fake.delivered)
                     if json.loads(body)["event_name"] == "signer.done")
        event_id = json.loads(self.fake.delivered[index][1])["event_id"]
        events = self.env["esign.request.event"].search([("dedup_key", "=", f"yousign:{event_id}")])
        self.assertEqual(len(events), 1)
        self.assertEqual(events.state, "processed")
        messages_before = len(self.agreement.message_ids)
        self.fake.retry_event(index)
        self.fake.retry_event(index)
        self.assertEqual(self.flush(), [200, 200])
        self.assertEqual(self.env["esign.request.event"].search_count(
            [("dedup_key", "=", f"yousign:{event_id}")]), 1)
        self.assertEqual(len(self.agreement.message_ids), messages_before)
        # A replay after the end changes nothing either.
        self.sign(request, CEO_EMAIL)
        self.assertEqual(request.state, "signed")
        signed = request.signed_document_id
        self.fake.retry_event(index)
        self.flush()
        self.assertEqual(request.state, "signed")
        self.assertEqual(self.signer(request, "client").state, "signed")
        self.assertEqual(request.signed_document_id, signed)
