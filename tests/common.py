# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Shared set-up of the Odoo suite: a company, users of each group, contracts, the Demo provider."""
import datetime
import io
import json
import urllib.parse

from reportlab.pdfgen import canvas

from odoo import fields
from odoo.tests.common import TransactionCase, new_test_user

from ..api import demo as demo_wire


def make_pdf(text="Contract"):
    """A small real PDF (the Demo provider stamps it, so it must parse)."""
    buffer = io.BytesIO()
    can = canvas.Canvas(buffer)
    can.drawString(72, 720, text)
    can.save()
    return buffer.getvalue()


def with_query(url, **changes):
    """``url`` with query parameters set (or removed, for ``None``): forged callback URLs in tests."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class EsignCommon(TransactionCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not cls.registry.in_test_mode():
            # The outbox and the Demo "server" work in transactions of their own (new cursors);
            # in test mode those are savepoints of the test's transaction, as in HttpCase.
            cls.registry.enter_test_mode(cls.cr)
            cls.addClassCleanup(cls.registry.leave_test_mode)
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=False, mail_create_nolog=True))
        # The suite runs the post-commit path; test_esign_queue_job switches to jobs where installed.
        cls.env["ir.config_parameter"].set_param("esign_connector.use_queue_job", "False")
        cls.company = cls.env.company
        cls.company.write({"name": "Acme Sp. z o.o.", "vat": "PL1234567890"})
        cls.salesman = new_test_user(cls.env, "esign_sales", groups="base.group_user,esign_connector.group_esign_user",
                                     name="Sam Seller", email="sam@acme.example.com")
        cls.manager = new_test_user(cls.env, "esign_manager",
                                    groups="base.group_user,esign_connector.group_esign_manager",
                                    name="Mia Manager", email="mia@acme.example.com")
        cls.ceo = new_test_user(cls.env, "esign_ceo", groups="base.group_user", name="Celina Boss",
                                email="ceo@acme.example.com")
        cls.provider = cls.env.ref("esign_connector.esign_provider_demo")
        cls.provider.write({
            "state": "test",
            "account_mode": "central",
            "representative_user_id": cls.ceo.id,
            "representative_first_name": "Celina",
            "representative_last_name": "Boss",
            "representative_email": "ceo@acme.example.com",
            "representative_basis": "CEO, entry in the commercial register",
            "webhook_secret": "test-secret-for-demo",
        })
        cls.company.esign_provider_id = cls.provider
        cls.env["esign.user.account"].create({
            "provider_id": cls.provider.id, "user_id": cls.salesman.id,
            "login": "sam@acme.example.com", "first_name": "Sam", "last_name": "Seller",
        })
        cls.type_esign = cls.env["agreement.type"].create({"name": "Sales contract"})
        cls.type_paper = cls.env["agreement.type"].create({"name": "Paper only", "esign_disabled": True})
        cls.client_partner = cls.env["res.partner"].create({
            "name": "Anna Kowalska", "email": "anna@client.example.com"})
        cls.agreement = cls._make_agreement("C-001", cls.client_partner)

    @classmethod
    def _make_agreement(cls, code, partner, agreement_type=None, company=None):
        agreement = cls.env["agreement"].create({
            "code": code, "name": f"Contract {code}", "partner_id": partner.id,
            "agreement_type_id": (agreement_type or cls.type_esign).id,
            "company_id": (company or cls.company).id,
        })
        cls.env["ir.attachment"].create({
            "name": f"{code}.pdf", "raw": make_pdf(f"Contract {code}"), "mimetype": "application/pdf",
            "res_model": "agreement", "res_id": agreement.id,
        })
        return agreement

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        # Odoo's test guard compares the timeout with a number; our clients pass (connect, read).
        timeout = kw.get("timeout")
        if isinstance(timeout, tuple):
            kw["timeout"] = max((t for t in timeout if t), default=None)
        return super()._request_handler(s, r, **kw)

    # ------------------------------------------------------------------ helpers

    def open_wizard(self, agreement=None, user=None):
        agreement = agreement or self.agreement
        env = self.env(user=user or self.salesman)
        action = agreement.with_env(env).action_esign_send()
        return env["esign.send.wizard"].with_context(action["context"]).create({})

    def run_jobs(self):
        """What runs after the transaction commits: the outbox, queued commands, stored events.

        A TransactionCase never commits, so the post-commit hook and the triggered cron do not run;
        the test runs the same cron method they run.
        """
        self.env["esign.request.event"]._cron_esign_process()
        self.env.invalidate_all()

    def time_passes(self, request):
        """The request's next send attempt is due, as it would be minutes later."""
        request.sudo().send_next_attempt_at = fields.Datetime.now() - datetime.timedelta(seconds=1)

    def send(self, agreement=None, user=None, process=True):
        agreement = agreement or self.agreement
        wizard = self.open_wizard(agreement, user)
        result = wizard.action_send()
        request = agreement.esign_request_ids.sorted("id")[-1:]
        if process:
            self.run_jobs()
        return request, result

    def signer(self, request, role):
        return request.signer_ids.filtered(lambda s: s.role == role)

    def demo_envelope(self, request):
        return self.env["esign.demo.envelope"].search([("reference", "=", request.provider_ref)])

    def demo_signer(self, request, role):
        key = self.signer(request, role)._esign_key()
        return self.demo_envelope(request).signer_ids.filtered(lambda s: s.key == key)

    def demo_act(self, request, role, decision="signed", reason="", deliver=True):
        """A signer acts on the Demo page; the notification goes through the webhook handler."""
        demo_signer = self.demo_signer(request, role)
        body = demo_signer.envelope_id._act(demo_signer, decision, reason)
        self.env.flush_all()  # the Demo page's transaction is committed before we read from it
        if deliver:
            status = demo_signer._notify(body)
            self.run_jobs()
            return status, body
        return None, body

    def receive_callback(self, code, url, body, headers):
        """A provider's callback to ``url`` enters our webhook handler as the controller passes it.

        Used as a fake server's ``callback_sink``; returns the HTTP status we answer.
        """
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        status = self.env["esign.request.event"].sudo()._esign_receive_webhook(code, headers, body, query)[0]
        self.run_jobs()
        return status

    def deliver(self, body, secret=None, headers=None, process=True):
        secret = self.provider.webhook_secret if secret is None else secret
        if headers is None:
            headers = {demo_wire.SIGNATURE_HEADER: demo_wire.sign(secret, body)}
        result = self.env["esign.request.event"].sudo()._esign_receive_webhook("demo", headers, body, {})
        if process:
            self.run_jobs()
        return result

    def demo_body(self, request, event_type, envelope_state, signer_states, event_id=None):
        payload = {
            "id": event_id or f"evt-{event_type}-{envelope_state}",
            "type": event_type, "envelope": request.provider_ref, "envelope_state": envelope_state,
            "occurred_at": "2026-11-23T10:00:00",
            "signers": [{"key": self.signer(request, role)._esign_key(), "email": self.signer(request, role).email,
                         "state": state} for role, state in signer_states.items()],
        }
        return json.dumps(payload).encode()
