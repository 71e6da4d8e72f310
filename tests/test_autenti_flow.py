# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The whole Autenti flow through the wizard, against FakeAutenti over real HTTP.

The fake's callbacks are JWS-signed with its own key set (served at ``fake.jwks_url``) and enter our
real webhook handler in the test's transaction.
"""
import json

from odoo.exceptions import UserError
from odoo.tests import tagged

from ..api import autenti as autenti_api
from ..api import keys as rsa_keys
from .common import EsignCommon
from .fakes.autenti import FakeAutenti

CLIENT_ID = "odoo-test-app"
SECRET = "autenti-test-secret"
ORG = "odoo-test-organisation"
CLIENT_EMAIL = "anna@client.example.com"
CEO_EMAIL = "ceo@acme.example.com"
SALES_EMAIL = "sam@acme.example.com"


@tagged("post_install", "-at_install")
class TestAutentiFlow(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = FakeAutenti().start()
        cls.addClassCleanup(cls.fake.stop)
        cls.autenti = cls.env["esign.provider"].create({
            "name": "Autenti",
            "code": "autenti",
            "state": "test",
            "company_id": cls.company.id,
            "account_mode": "central",
            "representative_user_id": cls.ceo.id,
            "representative_first_name": "Celina",
            "representative_last_name": "Boss",
            "representative_email": CEO_EMAIL,
            "representative_basis": "CEO, entry in the commercial register",
            "api_base_url_override": cls.fake.api_url,
            "autenti_jwks_url_override": cls.fake.jwks_url,
            "autenti_client_id": CLIENT_ID,
            "autenti_client_secret": SECRET,
            "autenti_organisation_id": ORG,
        })
        cls.autenti.action_generate_key_pair()
        # What the admin does in Autenti's panel: paste the public JWK of the "Signing key" tab.
        cls.fake.register_client(CLIENT_ID, SECRET, json.loads(cls.autenti.jwt_public_jwk), organisation=ORG)
        cls.company.esign_provider_id = cls.autenti
        cls.env["esign.user.account"].create({
            "provider_id": cls.autenti.id, "user_id": cls.salesman.id,
            "login": SALES_EMAIL, "first_name": "Sam", "last_name": "Seller",
        })
        autenti_api.clear_caches()
        cls.autenti.action_autenti_register_callback()

    def setUp(self):
        super().setUp()
        autenti_api.clear_caches()
        self.addCleanup(autenti_api.clear_caches)
        with self.fake.lock:
            self.fake.outbox.clear()
            self.fake.faults.clear()
            self.fake.route_faults.clear()
        self.fake.drop_callbacks = 0
        self.fake.callback_sink = self._sink
        self.addCleanup(setattr, self.fake, "callback_sink", None)

    # ------------------------------------------------------------------ helpers

    def _sink(self, url, body, headers):
        return self.receive_callback("autenti", url, body, headers)

    def deliver(self):
        return self.fake.flush_callbacks()

    def process(self, request):
        return self.fake.processes[request.provider_ref]

    def _full_flow(self, company_email):
        request, result = self.send()
        self.assertEqual(result["params"]["type"], "success")
        self.assertEqual(request.state, "sent", request.last_error)
        self.assertTrue(request.provider_ref.startswith("DOCUMENT_PROCESS:"))
        process = self.process(request)
        self.assertEqual(process["status"], "PROCESSING")
        self.assertEqual([p["_email"] for p in process["parties"]], [CLIENT_EMAIL, company_email])
        # The sender notification went through our handler too.
        self.assertEqual(self.deliver(), [200])
        client, company = self.signer(request, "client"), self.signer(request, "company")
        self.assertEqual(company.email, company_email)
        self.assertEqual((client.state, company.state), ("pending", "waiting"))

        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.assertEqual(self.deliver(), [200])
        self.assertEqual((client.state, company.state), ("signed", "pending"))
        self.assertEqual(request.state, "sent")

        self.fake.sign(request.provider_ref, company_email)
        self.assertEqual(self.deliver(), [200, 200])  # signature applied + process completed
        self.assertEqual(request.state, "signed")
        self.assertEqual(company.state, "signed")
        self.assertEqual(self.agreement.esign_state, "signed")
        self.assertTrue(self.agreement.signature_date)
        self.assertEqual(request.provider_state, "COMPLETED")
        signed, evidence = request.signed_document_id, request.evidence_document_id
        self.assertEqual((signed.res_model, signed.res_id), ("agreement", self.agreement.id))
        self.assertTrue(signed.raw.startswith(b"%PDF"))
        self.assertTrue(signed.raw.endswith(self.fake.signed_marker))
        self.assertTrue(evidence.raw.startswith(b"%PDF"))
        self.assertIn("signature_card", evidence.name)
        self.assertFalse(request.documents_pending)
        webhook_events = request.event_ids.filtered(lambda e: e.source == "webhook")
        self.assertEqual(len(webhook_events), 4)
        self.assertEqual(set(webhook_events.mapped("state")), {"processed"})
        return request

    # ------------------------------------------------------------------ the whole flow

    def test_central_mode_representative_signs(self):
        request = self._full_flow(CEO_EMAIL)
        self.assertEqual(request.account_mode, "central")
        # Every token was asked for the representative, with our organisation and key.
        claims = self.fake.token_requests[-1]
        self.assertEqual((claims["email"], claims["iss"]), (CEO_EMAIL, ORG))
        self.assertEqual(claims["sub"], f"odoo-representative-{self.autenti.id}")
        company_party = self.fake.create_requests()[-1]["parties"][1]["party"]
        relationship = company_party["relationships"][0]
        self.assertEqual(relationship["party"]["extIds"][0],
                         {"identificationSpace": "TAXID-PL-NIP", "identifier": "1234567890"})
        self.assertEqual(relationship["attributes"]["relationshipDescription"],
                         "CEO, entry in the commercial register")

    def test_individual_mode_salesman_signs_with_own_account(self):
        self.autenti.account_mode = "individual"
        request = self._full_flow(SALES_EMAIL)
        self.assertEqual(request.account_mode, "individual")
        self.assertIn(SALES_EMAIL, request.acting_account_json)
        self.assertEqual(self.process(request)["_creator"], SALES_EMAIL)
        self.assertEqual(self.fake.token_requests[-1]["sub"], f"odoo-user-{self.salesman.id}")

    def test_individual_mode_without_account_says_so(self):
        self.autenti.account_mode = "individual"
        with self.assertRaisesRegex(UserError, "Mia Manager has no Autenti account"):
            self.send(user=self.manager)
        self.assertFalse(self.agreement.esign_request_ids)

    def test_signature_type_is_sent(self):
        self.autenti.autenti_signature_type = "qualified"
        request, _result = self.send()
        self.assertEqual(request.state, "sent", request.last_error)
        constraints = self.fake.create_requests()[-1]["parties"][0]["constraints"]
        self.assertIn({"constrainedActions": ["ACTION:SIGNATURE_APPLICATION"],
                       "classifiers": ["CONSTRAINT-UNIQUE_TYPE:SIGNATURE_TYPE"],
                       "attributes": {"requiredClassifiers": [autenti_api.SIGNATURE_QUALIFIED]}}, constraints)

    # ------------------------------------------------------------------ lost and replayed callbacks

    def test_lost_callback_then_refresh(self):
        request, _result = self.send()
        self.deliver()
        self.fake.drop_callbacks = 1
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        self.assertEqual(self.deliver(), [None])
        self.assertEqual(self.signer(request, "client").state, "pending")
        self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assertEqual(self.signer(request, "client").state, "signed")
        self.assertEqual(self.signer(request, "company").state, "pending")
        self.fake.drop_callbacks = 2
        self.fake.sign(request.provider_ref, CEO_EMAIL)
        self.deliver()
        self.assertEqual(request.state, "sent")
        self.agreement.with_user(self.salesman).action_esign_refresh()
        self.assertEqual(request.state, "signed")
        self.assertTrue(request.signed_document_id)
        self.assertTrue(self.agreement.signature_date)
        self.assertIn("refresh", request.event_ids.mapped("source"))

    def test_replayed_callback_is_applied_once(self):
        request, _result = self.send()
        self.deliver()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        pending = list(self.fake.outbox)
        self.assertEqual(self.deliver(), [200])
        count = len(request.event_ids)
        url, body, headers = pending[0]
        self.assertEqual(self._sink(url, body, headers), 200)
        self.assertEqual(len(request.event_ids), count)
        self.assertEqual(self.signer(request, "client").state, "signed")

    # ------------------------------------------------------------------ refusal, cancel, remind

    def test_refusal(self):
        request, _result = self.send()
        self.deliver()
        self.fake.reject(request.provider_ref, CLIENT_EMAIL, reason="Price too high")
        self.assertEqual(self.deliver(), [200])
        self.assertEqual(request.state, "refused")
        self.assertEqual(request.reason, "Price too high")
        self.assertEqual(self.signer(request, "client").state, "refused")
        self.assertFalse(self.agreement.signature_date)
        self.assertFalse(request.signed_document_id)
        self.assertIn("refused", self.agreement.activity_ids.summary.lower())

    def test_cancel_by_manager_withdraws_at_autenti(self):
        request, _result = self.send()
        self.deliver()
        request.with_user(self.manager).action_esign_cancel()
        self.run_jobs()  # the provider is called once the transaction has committed
        self.assertEqual(request.state, "cancelled")
        self.assertEqual(self.process(request)["status"], "WITHDRAWN")
        # Autenti's withdrawal notification arrives afterwards and changes nothing.
        self.assertEqual(self.deliver(), [200])
        self.assertEqual(request.state, "cancelled")
        with self.assertRaisesRegex(UserError, "no longer open|waiting for signatures"):
            request.with_user(self.manager).action_esign_cancel()

    def test_remind(self):
        request, _result = self.send()
        self.deliver()
        action = request.with_user(self.salesman).action_esign_remind()
        self.run_jobs()  # the provider is called once the transaction has committed
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(self.fake.reminders, [(request.provider_ref, [f"PARTY-EMAIL:{CLIENT_EMAIL}"])])

    # ------------------------------------------------------------------ failures

    def test_upload_failure_is_retried_later_and_says_what_exists_at_autenti(self):
        """A 500 while uploading: the draft is withdrawn (nothing signable is left), so the outbox may
        try again later by itself; the user is told what happened at Autenti meanwhile."""
        self.fake.fail_on("POST", r"/document-processes/[^/]+/files$", status=500, body="storage is down")
        request, _result = self.send()
        self.assertEqual(request.state, "sending")
        self.assertFalse(request.provider_ref)
        self.assertFalse(request.send_outcome_unknown, "the draft was withdrawn: nothing can be signed")
        process = next(p for p in self.fake.processes.values() if p["id"] in request.last_error)
        self.assertEqual(process["status"], "WITHDRAWN")
        self.assertIn("uploading the PDF failed", request.last_error)
        self.assertIn("was withdrawn, so nobody can sign it", request.last_error)
        self.assertIn("Sending again automatically", request.last_error)
        self.assertFalse(process["files"])
        # The withdrawal notification names no sent request of ours: stored, not applied.
        self.assertEqual(self.deliver(), [200])
        self.assertEqual(request.state, "sending")
        # Autenti's storage is back; the next attempt is due (time passes): sent, once.
        self.fake.route_faults.clear()
        self.time_passes(request)
        self.run_jobs()
        self.assertEqual(request.state, "sent", request.last_error)
        self.assertEqual(request.send_attempts, 2)
        ours = self.fake.processes_with_reference(request.reference)
        self.assertEqual(sorted(p["status"] != "WITHDRAWN" for p in ours), [False, True])
        self.assertEqual([p["id"] for p in ours if p["status"] != "WITHDRAWN"], [request.provider_ref],
                         "one signable process")

    def test_refused_credentials_are_readable(self):
        self.autenti.autenti_client_secret = "wrong"
        request, _result = self.send()
        self.assertEqual(request.state, "error")
        self.assertIn("refused our credentials", request.last_error)
        self.assertFalse(request.provider_ref)

    def test_missing_settings_are_named(self):
        self.autenti.autenti_client_secret = False
        wizard = self.open_wizard()
        with self.assertRaisesRegex(UserError, "Missing: Autenti client secret"):
            wizard.action_send()
        self.autenti.write({"autenti_client_secret": SECRET, "jwt_private_key": False, "jwk_kid": False})
        with self.assertRaisesRegex(UserError, "Signing key"):
            wizard.action_send()
        self.assertFalse(self.agreement.esign_request_ids)

    def test_forged_callback_is_refused_and_changes_nothing(self):
        request, _result = self.send()
        self.deliver()
        self.fake.sign(request.provider_ref, CLIENT_EMAIL)
        with self.fake.lock:
            pending, self.fake.outbox = list(self.fake.outbox), []
        url, body, _headers = pending[0]
        events_before = self.env["esign.request.event"].search_count([])
        # Signed with another key under Autenti's kid.
        forged = self.fake.sign_jws(body, pem=rsa_keys.generate_private_key_pem())
        self.assertEqual(self._sink(url, body, {"x-jws-signature": forged}), 403)
        # A genuine signature over another body.
        tampered = body.replace(b"DOCUMENT_PROCESS", b"DOCUMENT_PROCESS ")
        self.assertEqual(self._sink(url, tampered, {"x-jws-signature": self.fake.sign_jws(body)}), 403)
        self.assertEqual(self._sink(url, body, {}), 403)
        self.assertEqual(self.env["esign.request.event"].search_count([]), events_before)
        self.assertEqual(self.signer(request, "client").state, "pending")
        # The genuine one is still accepted.
        self.assertEqual(self._sink(*pending[0]), 200)
        self.assertEqual(self.signer(request, "client").state, "signed")

    # ------------------------------------------------------------------ provider settings

    def test_register_callback_button(self):
        registered = self.fake.callbacks[CLIENT_ID]
        self.assertEqual([c["callbackParameters"]["callbackUrl"] for c in registered], [self.autenti.webhook_url])
        self.assertTrue(self.autenti.webhook_url.endswith("/esign/webhook/autenti"))
        action = self.autenti.action_autenti_register_callback()  # idempotent
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(len(self.fake.callbacks[CLIENT_ID]), 1)
        self.assertEqual(self.fake.token_requests[-1]["email"], CEO_EMAIL)
        self.fake.fail_on("GET", r"/applications/callbacks$", status=409, body="too many callbacks")
        with self.assertRaisesRegex(UserError, "Autenti cannot do this now"):
            self.autenti.action_autenti_register_callback()

    def test_register_callback_individual_uses_own_account(self):
        self.autenti.account_mode = "individual"
        with self.assertRaisesRegex(UserError, "has no Autenti account"):
            self.autenti.action_autenti_register_callback()
        self.autenti.with_user(self.salesman).sudo().action_autenti_register_callback()
        self.assertEqual(self.fake.token_requests[-1]["email"], SALES_EMAIL)

    def test_hosts_and_default_organisation(self):
        self.autenti.api_base_url_override = False
        self.autenti.autenti_jwks_url_override = False
        client = self.autenti._esign_get_client(user=self.salesman)
        self.assertEqual(client.base_url, autenti_api.SANDBOX_URL)
        self.assertEqual(client.jwks_url, autenti_api.JWKS_URL_SANDBOX)
        self.assertEqual(client.acting_email, CEO_EMAIL)
        self.autenti.state = "enabled"
        client = self.autenti._esign_get_client(user=self.salesman)
        self.assertEqual(client.base_url, autenti_api.PRODUCTION_URL)
        self.assertEqual(client.jwks_url, autenti_api.JWKS_URL_PRODUCTION)
        other_company = self.env["res.company"].create({"name": "Other Co"})
        other = self.env["esign.provider"].create({
            "name": "Autenti 2", "code": "autenti", "company_id": other_company.id})
        uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid")
        self.assertEqual(other.autenti_organisation_id, f"odoo-{uuid}-{other_company.id}")
        self.assertEqual(other._esign_build_client({}).organisation_id, other.autenti_organisation_id)
