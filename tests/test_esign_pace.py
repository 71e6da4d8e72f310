# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Sending without the dialog, at the provider's pace: unattended sends with codes, rate limits,
batches, error codes and how the sender is told."""
import datetime

from freezegun import freeze_time

from odoo import fields
from odoo.tests import tagged

from ..api.base import ProviderError
from ..models import esign_send_checks as checks
from ..models.esign_request_outbox import MAX_SEND_ATTEMPTS, error_code
from .common import EsignCommon


@tagged("post_install", "-at_install")
class TestUnattendedSend(EsignCommon):

    def test_every_problem_comes_back_with_its_code_and_nothing_raises(self):
        paper = self._make_agreement("P-1", self.client_partner, self.type_paper)
        nobody = self._make_agreement("N-1", self.env["res.partner"].create({"name": "No Mail Ltd"}))
        results = (self.agreement | paper | nobody).with_user(self.salesman)._esign_send_unattended()
        self.assertEqual(results[self.agreement], [])
        self.assertEqual([p.code for p in results[paper]], ["ESIGN_TYPE_DISABLED"])
        self.assertEqual([p.code for p in results[nobody]], ["ESIGN_NO_EMAIL"])
        self.assertIn("No Mail Ltd has no e-mail address", results[nobody][0].message)
        self.assertEqual((paper.esign_error_code, nobody.esign_error_code), ("ESIGN_TYPE_DISABLED", "ESIGN_NO_EMAIL"))
        self.assertFalse(self.agreement.esign_error_code)
        self.run_jobs()
        self.assertEqual(self.agreement.esign_request_ids.state, "sent")
        self.assertFalse(paper.esign_request_ids | nobody.esign_request_ids)

    def test_a_contract_printed_for_a_refused_send_is_not_kept(self):
        nobody = self.env["res.partner"].create({"name": "No Mail Ltd"})
        agreement = self.env["agreement"].create({"code": "R-1", "name": "Printed", "partner_id": nobody.id,
                                                  "agreement_type_id": self.type_esign.id})
        self.env["ir.config_parameter"].set_param("report.url", "http://127.0.0.1:9")  # see test_send_printed_report
        results = agreement.with_context(force_report_rendering=True).with_user(self.salesman) \
            ._esign_send_unattended(source="report")
        self.assertEqual([p.code for p in results[agreement]], ["ESIGN_NO_EMAIL"])
        self.assertFalse(self.env["ir.attachment"].search([("res_model", "=", "agreement"), ("res_id", "=", agreement.id)]))

    def test_placeholders_are_rendered_from_the_contract(self):
        results = self.agreement.with_user(self.salesman)._esign_send_unattended(
            subject="Umowa {{ object.code }}", message="Dzień dobry {{ object.partner_id.name }}, proszę o podpis.")
        self.assertEqual(results[self.agreement], [])
        request = self.agreement.esign_request_ids
        self.assertEqual(request.subject, "Umowa C-001")
        self.assertEqual(request.message, "Dzień dobry Anna Kowalska, proszę o podpis.")

    def test_contract_from_a_template_is_linked_to_its_origin(self):
        template = self._make_agreement("TPL", self.client_partner)
        template.is_template = True
        partner = self.env["res.partner"].create({"name": "Jan Nowak", "email": "jan@client.example.com"})
        agreement = self.env["agreement"]._esign_create_from_template(template, partner, origin=partner)
        self.assertFalse(agreement.is_template)
        self.assertEqual((agreement.partner_id, agreement.esign_origin_ref), (partner, partner))
        self.assertIn(agreement.display_name, partner.message_ids[:1].body)


@tagged("post_install", "-at_install")
class TestProviderPace(EsignCommon):

    def _agreements(self, count):
        return self.env["agreement"].concat(*[self._make_agreement(f"B-{i}", self.client_partner)
                                              for i in range(count)])

    def test_background_sending_stays_under_the_providers_limit(self):
        self.provider.write({"rate_limit_calls": 2, "rate_limit_period": 3600})
        with freeze_time("2026-12-04 10:20:00"):
            agreements = self._agreements(3)
            agreements.with_user(self.salesman)._esign_send_unattended()
            self.run_jobs()
            requests = agreements.esign_request_ids
            self.assertEqual(sorted(requests.mapped("state")), ["sending", "sent", "sent"])
            waiting = requests.filtered(lambda r: r.state == "sending")
            self.assertEqual(waiting.send_next_attempt_at, datetime.datetime(2026, 12, 4, 11, 0),
                             "the next window, not an error")
            self.assertEqual(waiting.send_attempts, 0, "waiting for the window is not an attempt")
            self.assertEqual(self.provider._esign_calls_used(), 2)
            trigger = self.env["ir.cron.trigger"].search(
                [("cron_id", "=", self.env.ref("esign_connector.ir_cron_esign_process").id),
                 ("call_at", "=", "2026-12-04 11:00:00")])
            self.assertTrue(trigger, "the cron wakes up when the window opens")
        with freeze_time("2026-12-04 11:00:01"):
            self.run_jobs()
            self.assertEqual(waiting.state, "sent")
            self.assertEqual(self.provider._esign_calls_used(), 1)

    def test_the_reservation_never_exceeds_the_window(self):
        self.provider.write({"rate_limit_calls": 5, "rate_limit_period": 60})
        with freeze_time("2026-12-04 10:00:10"):
            granted = [self.provider._esign_reserve_calls(2) is None for _i in range(4)]
            self.assertEqual(granted, [True, True, False, False])
            self.assertEqual(self.provider._esign_calls_used(), 4)
            self.assertIsNone(self.provider._esign_reserve_calls(1), "what still fits is granted")
            self.assertEqual(self.provider._esign_reserve_calls(1), datetime.datetime(2026, 12, 4, 10, 1))
        with freeze_time("2026-12-04 10:01:00"):
            self.assertIsNone(self.provider._esign_reserve_calls(5))

    def test_a_429_reschedules_and_never_uses_up_the_attempts(self):
        request, _result = self.send(process=False)
        request.sudo().send_attempts = MAX_SEND_ATTEMPTS + 3
        error = ProviderError("rate_limited", "slow down", status_code=429, provider="Demo", retry_after=600)
        with request._esign_own_transaction() as env:
            env["esign.request"].browse(request.id)._esign_outbox_record(error, can_lookup=True)
        request.invalidate_recordset()
        self.assertEqual(request.state, "sending")
        self.assertEqual(request.last_error_code, "ESIGN_RATE_LIMITED")
        self.assertGreaterEqual(request.send_next_attempt_at, fields.Datetime.now() + datetime.timedelta(seconds=590))

    def test_the_processing_cron_sends_every_batch_in_one_run(self):
        agreements = self._agreements(7)
        agreements.with_user(self.salesman)._esign_send_unattended()
        done = self.env["esign.request.event"]._cron_esign_process(batch_size=3)
        self.assertGreaterEqual(done, 7)
        self.assertEqual(set(agreements.esign_request_ids.mapped("state")), {"sent"})


@tagged("post_install", "-at_install")
class TestOutcomeNotice(EsignCommon):

    def _sign(self):
        request, _result = self.send()
        self.demo_act(request, "client")
        self.demo_act(request, "company")
        return request

    def _mails(self):
        return self.env["mail.mail"].search([("email_to", "ilike", "sam@acme.example.com")])

    def test_default_is_an_activity(self):
        self._sign()
        self.assertTrue(self.agreement.activity_ids.filtered(lambda a: a.user_id == self.salesman))
        self.assertFalse(self._mails())

    def test_email_only(self):
        self.company.esign_notify_mode = "email"
        request = self._sign()
        self.assertFalse(self.agreement.activity_ids)
        mail = self._mails()
        self.assertEqual(len(mail), 1)
        self.assertIn("Contract signed", mail.subject)
        self.assertIn(request.name, mail.body_html)

    def test_both_and_also_for_a_provider_failure(self):
        self.company.esign_notify_mode = "both"
        request, _result = self.send()
        body = self.demo_body(request, "envelope.failed", "error", {"client": "pending"}, event_id="evt-fail")
        self.deliver(body)
        self.assertEqual(request.state, "error")
        self.assertEqual(request.last_error_code, "ESIGN_PROVIDER_FAILED")
        self.assertEqual(self.agreement.esign_error_code, "ESIGN_PROVIDER_FAILED", "a following rule reads it here")
        self.assertTrue(self.agreement.activity_ids)
        self.assertIn("failed", self._mails().subject)


@tagged("post_install", "-at_install")
class TestErrorCodes(EsignCommon):

    def test_provider_errors_have_stable_codes(self):
        cases = [
            (ProviderError("auth", "bad key", status_code=401), "ESIGN_PROVIDER_AUTH"),
            (ProviderError("rejected", "title missing", status_code=422), "ESIGN_PROVIDER_REJECTED"),
            (ProviderError("rejected", "Envelope quota exceeded for this plan", status_code=400), "ESIGN_QUOTA"),
            (ProviderError("rejected", "pay us", status_code=402), "ESIGN_QUOTA"),
            (ProviderError("rate_limited", "", status_code=429), "ESIGN_RATE_LIMITED"),
            (ProviderError("unavailable", "", status_code=503), "ESIGN_PROVIDER_UNAVAILABLE"),
            (ProviderError("timeout", "", outcome_unknown=True), "ESIGN_OUTCOME_UNKNOWN"),
        ]
        self.assertEqual([error_code(error) for error, _code in cases], [code for _error, code in cases])


@tagged("post_install", "-at_install")
class TestPhoneForSmsCodes(EsignCommon):

    def test_sms_codes_need_an_international_phone_for_every_signer(self):
        yousign = self.env["esign.provider"].create({
            "name": "Yousign", "code": "yousign", "company_id": self.env["res.company"].create({"name": "Y"}).id})
        yousign.write({"yousign_authentication_mode": "otp_sms"})
        self.assertTrue(yousign._esign_phone_required())
        self.assertFalse(self.provider._esign_phone_required())
        check = self.env["esign.request"]._esign_send_problems
        line = {"role": "client", "name": "Anna Kowalska", "email": "anna@client.example.com", "sequence": 1}
        document = self.agreement._esign_attached_pdf()
        # the Demo provider: no SMS, no phone needed
        self.assertEqual(check(self.agreement, self.provider, self.salesman, document, [line]), [])

        def codes(phone, company_phone):  # the same signers through a provider that sends SMS codes
            company = {"role": "company", "name": "Celina Boss", "email": "ceo@acme.example.com", "sequence": 2,
                       "phone": company_phone}
            return [p.code for p in checks.signer_problems(self.env, [dict(line, phone=phone), company],
                                                           phone_required=True)]

        self.assertEqual(codes(False, "+48600100300"), ["ESIGN_NO_PHONE"])
        self.assertEqual(codes("600 100 200", "+48600100300"), ["ESIGN_BAD_PHONE"])
        self.assertEqual(codes("+48 600 100 200", False), ["ESIGN_NO_PHONE"])
        self.assertEqual(codes("+48 600 100 200", "+48 600 100 300"), [])
