# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Attacks on the trust core, each written as the promise it breaks (each test fails while the hole
is open). Tried as a salesperson over RPC, a salesperson of another company, a manager, a holder of
a callback URL or a signing link, and an anonymous caller of the public routes."""
import base64
import contextlib
import dataclasses
import json
import re
import secrets
import time
import urllib.parse

from cryptography.hazmat.primitives.asymmetric import rsa

from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import mute_logger

from ..api import autenti as autenti_api
from .common import EsignCommon
from .fakes.signi import FakeSigni


def run_post_commit(env):
    """Run what the module hooked on the commit, as the worker does after it (same uid, context)."""
    env.flush_all()  # a commit flushes first
    funcs = env.cr.postcommit._funcs
    ours = [f for f in list(funcs) if getattr(f, "__name__", "") == "run_after_commit"]
    for func in ours:
        funcs.remove(func)
    for func in ours:
        func()
    env.invalidate_all()
    return len(ours)


def _claim(request):
    """A worker claims the request (committed), as _esign_outbox_run_one does before calling."""
    with request._esign_own_transaction() as env:
        claim = env["esign.request"].browse(request.id)._esign_outbox_claim()
    request.invalidate_recordset()
    return claim


@tagged("post_install", "-at_install")
class TestAttackAccess(EsignCommon):
    """Salespeople over RPC: what they reach beyond their own records."""

    def _outsider(self):
        other_company = self.env["res.company"].create({"name": "Rival Ltd"})
        return new_test_user(self.env, "esign_rival", groups="base.group_user,esign_connector.group_esign_user",
                             company_id=other_company.id, company_ids=[other_company.id], name="Eve Rival")

    def test_send_wizard_is_private_to_the_user_who_opened_it(self):
        """A salesperson of another company lists everyone's open send dialogs: the contract, the
        subject and message, the client's name, e-mail and phone (transient models have no implicit
        owner rule in Odoo 18, and the module adds none)."""
        eve = self._outsider()
        wizard = self.open_wizard()
        self.assertTrue(wizard.signer_ids)
        seen = self.env["esign.send.wizard"].with_user(eve).search([("id", "=", wizard.id)])
        lines = self.env["esign.send.wizard.signer"].with_user(eve).search([("wizard_id", "=", wizard.id)])
        self.assertFalse(seen, "another company's salesperson reads the dialog of Sam's contract")
        self.assertFalse(lines, "another company's salesperson reads the client's contact details")

    def test_send_wizard_cannot_be_rewritten_by_another_salesperson(self):
        """Eve rewrites the client's e-mail in Sam's open dialog and adds herself as a signer; Sam
        clicks Send and the contract goes out with Eve signing in the client's place."""
        eve = self._outsider()
        wizard = self.open_wizard()
        client_line = wizard.signer_ids.filtered(lambda line: line.role == "client")
        # Each attempt in a savepoint: a refused RPC call rolls its transaction back.
        with contextlib.suppress(AccessError), self.env.cr.savepoint():
            client_line.with_user(eve).write({"email": "eve@rival.example.com"})
        with contextlib.suppress(AccessError), self.env.cr.savepoint():
            self.env["esign.send.wizard.signer"].with_user(eve).create({
                "wizard_id": wizard.id, "name": "Eve Rival", "email": "eve2@rival.example.com",
                "role": "client", "sequence": 1})
        with contextlib.suppress(AccessError), self.env.cr.savepoint():
            wizard.with_user(eve).write({"message": "Sign at https://rival.example.com/login first"})
        wizard.invalidate_recordset()
        wizard.action_send()
        self.run_jobs()
        request = self.agreement.esign_request_ids
        self.assertEqual(sorted(request.signer_ids.mapped("email")),
                         ["anna@client.example.com", "ceo@acme.example.com"],
                         "the signers Sam checked, not the ones Eve wrote into his dialog")
        self.assertFalse(request.message)

    def test_onchange_does_not_reveal_another_companys_representative(self):
        """The dialog's onchange computes the company signer of any provider id it is given, in sudo:
        another company's representative (name, e-mail, basis of representation) comes back."""
        other_company = self.env["res.company"].create({"name": "Rival Ltd"})
        foreign = self.env["esign.provider"].create({
            "name": "Demo Rival", "code": "demo", "company_id": other_company.id, "state": "test",
            "account_mode": "central", "representative_email": "boss@rival.example.com",
            "representative_first_name": "Hidden", "representative_last_name": "Boss",
            "representative_basis": "Board resolution 12/2026"})
        wizard_model = self.env["esign.send.wizard"].with_user(self.salesman)
        with contextlib.suppress(AccessError):
            result = wizard_model.onchange(
                {"agreement_id": self.agreement.id, "provider_id": foreign.id}, ["provider_id"],
                {"agreement_id": {}, "provider_id": {}, "account_mode": {},
                 "signer_ids": {"fields": {"name": {}, "email": {}, "representation_basis": {}}}})
            self.assertNotIn("boss@rival.example.com", str(result))
            self.assertNotIn("Board resolution", str(result))

    def test_salesperson_cannot_post_callback_notes_as_odoobot(self):
        """Requests take comments from readers (``_mail_post_access = 'read'``), and ``message_post``
        takes any ``author_id``: a salesperson forges the provider's trail, authored by OdooBot."""
        request, _result = self.send()
        odoobot = self.env.ref("base.partner_root")
        try:
            message = request.with_user(self.salesman).message_post(
                body="The contract was signed by all parties with Demo.", author_id=odoobot.id,
                message_type="notification", subtype_xmlid="mail.mt_note")
        except AccessError:
            return
        self.assertNotEqual(message.author_id, odoobot, "a note by a salesperson, shown as OdooBot's")


@tagged("post_install", "-at_install")
class TestAttackExactlyOnce(EsignCommon):
    """The outbox and the commands: once, after the commit, whoever clicked."""

    def _envelopes(self, request):
        return self.env["esign.demo.envelope"].search_count([("external_reference", "=", request.reference)])

    def test_send_again_while_a_worker_is_sending_makes_no_second_envelope(self):
        """The outcome is unknown, a worker has claimed the request and is calling the provider (its
        look-up found nothing, it sends). A manager clicks Send again (the button is shown, and the
        server does not look at the live claim): the claim is cleared and a second envelope goes out."""
        request, _result = self.send(process=False)
        request.sudo().write({"send_outcome_unknown": True})
        self.env.flush_all()
        client, envelope, lookup_first = _claim(request)
        self.assertTrue(lookup_first)
        client.send(envelope)  # the worker's call reaches the provider; its answer is not recorded yet
        with contextlib.suppress(UserError):
            request.with_user(self.manager).action_esign_retry_send()
        self.env.cr.postcommit._funcs.clear()
        self.run_jobs()
        self.assertEqual(self._envelopes(request), 1, "one contract, one envelope")

    def test_mark_as_not_sent_is_refused_while_a_worker_is_sending(self):
        """Same race with "Mark as not sent": the contract can then be sent again while the first
        call is still reaching the provider."""
        request, _result = self.send(process=False)
        request.sudo().write({"send_outcome_unknown": True})
        self.env.flush_all()
        self.assertTrue(_claim(request))
        with self.assertRaises(UserError):
            request.with_user(self.manager).action_esign_abandon_send()

    def test_salespersons_reminder_reaches_the_provider_after_commit(self):
        """The reminder runs after the commit in the clicking user's environment (not sudo); reading
        the command event there raises AccessError for a salesperson after the command was claimed:
        it stays 'running', the provider is never called, and the cron later calls it unknown."""
        request, _result = self.send()
        self.env.cr.postcommit._funcs.clear()
        request.with_user(self.salesman).action_esign_remind()
        with mute_logger("odoo.addons.esign_connector.models.esign_request_event"):
            self.assertEqual(run_post_commit(self.env), 1)
        command = self.env["esign.request.event"].search(
            [("request_id", "=", request.id), ("source", "=", "command"), ("event_type", "=", "remind")])
        self.assertEqual(command.state, "processed", command.result)
        self.assertEqual(self.demo_envelope(request).reminder_count, 1)


@tagged("post_install", "-at_install")
class TestAttackCallbacks(EsignCommon):
    """Notifications: routing between companies, and bodies that break the handler."""

    def test_event_matched_later_moves_to_the_company_of_its_request(self):
        """Two companies share the Demo secret. A notification that arrives before the send is
        recorded (and does not echo our reference, like Autenti's) is stored under the first provider
        that verified it, and stays in that company's journal once applied to the other's request:
        Acme's managers read Acme Czech's payloads, Acme Czech's do not see their own event."""
        other_company = self.env["res.company"].create({"name": "Acme Czech s.r.o."})
        other_provider = self.env["esign.provider"].create({
            "name": "Demo CZ", "code": "demo", "company_id": other_company.id, "state": "test",
            "sequence": 50, "account_mode": "central", "representative_email": "ceo@acme.example.cz",
            "representative_first_name": "Jana", "webhook_secret": self.provider.webhook_secret})
        self.provider.sequence = 1  # Acme's provider verifies first
        other_company.esign_provider_id = other_provider
        partner = self.env["res.partner"].create({"name": "Petr Novak", "email": "petr@client.example.cz"})
        other_agreement = self._make_agreement("CZ-1", partner, company=other_company)
        manager_cz = new_test_user(self.env, "esign_cz", groups="base.group_user,esign_connector.group_esign_manager",
                                   company_id=other_company.id, company_ids=[other_company.id], name="Jan CZ")
        request, _result = self.send(other_agreement, user=manager_cz, process=False)
        client, envelope, _lookup = _claim(request)
        result = client.send(envelope)
        demo = self.env["esign.demo.envelope"].search([("external_reference", "=", request.reference)])
        payload = demo._status_payload("signer.viewed")
        payload["reference"] = ""
        self.assertEqual(self.deliver(json.dumps(payload).encode())[0], 200)
        with request._esign_own_transaction() as env:
            env["esign.request"].browse(request.id)._esign_outbox_record(result)
        request.invalidate_recordset()
        self.run_jobs()
        event = self.env["esign.request.event"].search([("dedup_key", "=", f"demo:{payload['id']}")])
        self.assertEqual((event.state, event.request_id), ("processed", request))
        self.assertEqual(event.company_id, other_company, "the event belongs to its request's company")
        self.assertFalse(self.env["esign.request.event"].with_user(self.manager).search([("id", "=", event.id)]),
                         "Acme's manager reads Acme Czech's notification")
        self.assertTrue(self.env["esign.request.event"].with_user(manager_cz).search([("id", "=", event.id)]))

    def test_overlong_identifiers_are_refused_not_a_server_error(self):
        """A validly signed body whose event id (or envelope, or reference) is longer than a btree
        entry makes the insert fail with ProgramLimitExceeded: an uncaught 500, nothing stored, and
        the provider retries forever. Malformed must be 400."""
        request, _result = self.send()
        body = json.loads(self.demo_body(request, "signer.signed", "sent", {"client": "signed", "company": "pending"}))
        body["id"] = secrets.token_hex(5000)
        try:
            with mute_logger("odoo.sql_db"):
                status, _text = self.deliver(json.dumps(body).encode(), process=False)
        except Exception as error:  # noqa: BLE001 - what the controller would turn into a 500
            self.fail(f"the webhook crashed: {type(error).__name__}: {error}")
        self.assertIn(status, (200, 400))

    def test_autenti_signature_with_a_non_string_kid_is_403(self):
        """Anyone can POST to /esign/webhook/autenti: a JWS header whose kid is a list raises
        TypeError (unhashable) in the key look-up, answered 500 instead of 403."""
        jwks_url = "https://jwks.example.invalid/webhook.jwks"
        self.env["esign.provider"].create({
            "name": "Autenti", "code": "autenti", "state": "test", "company_id": self.company.id,
            "account_mode": "central", "representative_email": "ceo@acme.example.com",
            "representative_first_name": "Celina", "autenti_jwks_url_override": jwks_url})
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        autenti_api._JWKS[jwks_url] = {"keys": {"k1": key}, "fetched_at": time.time(), "forced_at": time.time()}
        self.addCleanup(autenti_api.clear_caches)
        header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": ["k1"]}).encode()).rstrip(b"=").decode()
        try:
            status, _text = self.env["esign.request.event"]._esign_receive_webhook(
                "autenti", {"x-jws-signature": f"{header}..AAAA"}, b"[]", {})
        except Exception as error:  # noqa: BLE001
            self.fail(f"an anonymous POST crashed the webhook: {type(error).__name__}: {error}")
        self.assertEqual(status, 403)


@tagged("post_install", "-at_install")
class TestAttackSigniAdoption(EsignCommon):
    """Signi signs nothing; a request whose send answer was lost adopts the envelope a callback names."""

    API_KEY = "signi-demo-workspace-key"
    PROPOSER = "founder@acme.example.com"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = FakeSigni().start()
        cls.addClassCleanup(cls.fake.stop)
        cls.env["ir.config_parameter"].sudo().set_param("web.base.url", "https://odoo.example.com")
        cls.signi = cls.env["esign.provider"].create({
            "name": "Signi", "code": "signi", "state": "test", "company_id": cls.company.id,
            "account_mode": "central", "representative_user_id": cls.ceo.id,
            "representative_first_name": "Celina", "representative_last_name": "Boss",
            "representative_email": "ceo@acme.example.com", "api_base_url_override": cls.fake.api_url,
            "signi_api_key": cls.API_KEY, "signi_proposer_email": cls.PROPOSER,
        })
        cls.company.esign_provider_id = cls.signi

    def setUp(self):
        super().setUp()
        fake = self.fake
        with fake.lock:
            for store in (fake.workspaces, fake.contracts, fake.links, fake.requests, fake.faults, fake.outbox):
                store.clear()
        fake.drop_callbacks = 0
        fake.add_workspace(self.API_KEY, members=(self.PROPOSER,))
        fake.callback_sink = lambda url, body, headers: self.receive_callback("signi", url, body, headers)
        self.addCleanup(setattr, fake, "callback_sink", None)

    def test_callback_cannot_make_a_request_adopt_an_envelope_signi_does_not_confirm(self):
        """The request's send answer was lost. A callback with its token and ``ref=<our reference>``
        (both from the URL, nothing signed) names another contract of the workspace; Signi's detail
        echoes no number, so "confirmed with the provider" checks nothing: the request adopts the
        stranger, turns signed when it is, and its signed PDF lands on our contract."""
        self.fake.lose_response_next(on=("POST", r"/contract/?$"))
        request, _result = self.send()
        self.assertEqual((request.state, request.send_outcome_unknown), ("sending", True))
        client = request._esign_client()
        stranger = client.send(dataclasses.replace(
            request._esign_build_envelope(), reference="someone-elses-contract", callback_url=""))
        self.fake.sign(stranger.provider_ref, "anna@client.example.com")
        self.fake.sign(stranger.provider_ref, "ceo@acme.example.com")
        query = urllib.parse.urlencode({"token": request.sudo().callback_token, "event": "completed",
                                        "ref": request.reference})
        url = f"https://odoo.example.com/esign/webhook/signi?{query}"
        body = json.dumps({"contract_id": int(stranger.provider_ref), "state": "completed"}).encode()
        self.receive_callback("signi", url, body, {"Content-Type": "application/json"})
        request.invalidate_recordset()
        self.assertNotEqual(request.provider_ref, stranger.provider_ref, "adopted an envelope that is not ours")
        self.assertEqual(request.state, "sending")
        self.assertFalse(request.signed_document_id)


@tagged("post_install", "-at_install")
class TestAttackDemoPage(EsignCommon, HttpCase):
    """The public Demo signing page."""

    def test_demo_page_does_not_store_a_huge_refusal_reason(self):
        """The page's POST has no size limit (Odoo's default is 128 MB) and the reason is not capped:
        whoever holds a signing link stores megabytes in the Demo envelope and, twice over, in the
        event journal (payload and status)."""
        request, _result = self.send()
        client = self.demo_signer(request, "client")
        page = self.url_open(f"/esign/demo/sign/{client.token}")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        self.url_open(f"/esign/demo/sign/{client.token}/refuse",
                      data={"csrf_token": csrf, "reason": "x" * (3 * 1024 * 1024)})
        self.run_jobs()
        stored = max([len(e.payload or "") + len(e.status_json or "")
                      for e in request.event_ids.filtered(lambda e: e.source == "webhook")] or [0])
        self.assertLess(stored, 100_000, "megabytes stored from one anonymous POST")
        self.assertLess(len(self.demo_envelope(request).reason or ""), 10_000)
