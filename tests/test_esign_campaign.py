# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""CSV / XLSX campaigns: a contract template and a file of signers, checked line by line, then one
contract and one request per line, made in committed batches that survive a restart and never
repeat a line; progress counts that follow the signatures; cancel the rest."""
import base64
import datetime
import io
import sys
import threading
import traceback
import unittest

from odoo import SUPERUSER_ID, fields, sql_db
from odoo.exceptions import AccessError, UserError
from odoo.modules.registry import Registry
from odoo.tests import tagged
from odoo.tests.common import BaseCase, get_db_name, new_test_user

from ..models.esign_after_commit import new_environment
from ..models.esign_campaign_row import column_key, render_row_text
from .common import EsignCommon, make_pdf

BOM = "\ufeff"
HEADER = "name;E-mail;Phone;Company;VAT;Monthly fee"
SIGNERS = [
    "Jan Nowak;jan@nowak.example.com;+48 600 000 001;Nowak Sp. z o.o.;PL5260001234;49 EUR",
    "Petra Svobodová;petra@svoboda.example.com;;;;59 EUR",
    'Anna Kowalska;anna@client.example.com;;;;"29,50 EUR"',  # already a contact: reused
    "Claire Martin;claire(at)martin.example.com;;Martin SARL;;39 EUR",  # not an e-mail address
]


def csv_file(lines, header=HEADER, bom=True):
    return ((BOM if bom else "") + "\r\n".join([header] + list(lines)) + "\r\n").encode("utf-8")


def signer_lines(count, start=1):
    return [f"Signer {i};signer{i}@bulk.example.com;;;;{i} EUR" for i in range(start, start + count)]


class Crash(Exception):
    """A worker dies: what its transaction did is lost."""


class CampaignCommon(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.template = cls.env["agreement"].create({
            "code": "TPL-PRICE", "name": "Price update", "is_template": True,
            "agreement_type_id": cls.type_esign.id})
        cls.env["ir.attachment"].create({
            "name": "price-update.pdf", "raw": make_pdf("Price update 2027"), "mimetype": "application/pdf",
            "res_model": "agreement", "res_id": cls.template.id})

    def run_jobs(self):
        """After commit: the campaigns' batches (their triggered cron), then the outbox and the events."""
        self.env["esign.campaign"]._cron_esign_campaign()
        super().run_jobs()

    def make_campaign(self, content=None, file_name="signers.csv", user=None, **values):
        vals = {
            "name": "Price update 2027", "template_id": self.template.id, "provider_id": self.provider.id,
            "subject": "Please sign: {{ object.name }}",
            "message": "Dear {{ row.name }}, your fee is {{ row.monthly_fee }}.",
        }
        if content is not None:
            vals.update(file=base64.b64encode(content), file_name=file_name)
        vals.update(values)
        return self.env(user=user or self.manager)["esign.campaign"].create(vals)

    def rows_by_name(self, campaign):
        return {row.name: row for row in campaign.row_ids}

    def contracts_of(self, row):
        return self.env["agreement"].search([("esign_origin_ref", "=", f"esign.campaign.row,{row.id}")])

    def envelopes_of(self, requests):
        return self.env["esign.demo.envelope"].search([("external_reference", "in", requests.mapped("reference"))])


@tagged("post_install", "-at_install")
class TestCampaignFile(CampaignCommon):

    def test_csv_with_bom_and_semicolons_becomes_checked_signers(self):
        campaign = self.make_campaign(csv_file(SIGNERS))
        self.assertEqual(campaign.row_count, 4)
        jan = self.rows_by_name(campaign)["Jan Nowak"]
        self.assertEqual((jan.sequence, jan.email, jan.phone, jan.company_name, jan.vat),
                         (2, "jan@nowak.example.com", "+48 600 000 001", "Nowak Sp. z o.o.", "PL5260001234"))
        self.assertEqual(jan.extra_summary, "monthly_fee: 49 EUR")
        self.assertEqual(self.rows_by_name(campaign)["Anna Kowalska"].extra_summary, "monthly_fee: 29,50 EUR",
                         "a quoted value keeps its delimiter")
        self.assertIn("{{ row.monthly_fee }}", campaign.placeholder_help)
        self.assertEqual(self.rows_by_name(campaign)["Claire Martin"].result_code, "ESIGN_BAD_EMAIL")
        self.assertEqual(campaign.problem_count, 1)
        self.assertFalse(campaign.problem_message, "the campaign itself can start")
        self.assertFalse(self.env["agreement"].search([("name", "like", "Price update –")]), "nothing made yet")

    def test_comma_csv_without_bom_and_first_last_names(self):
        content = csv_file(["Jan,Nowak,jan@nowak.example.com,Kraków"], header="First name,Last name,Email,City",
                           bom=False)
        row = self.make_campaign(content, message="Dzień dobry {{ row.first_name }} ({{ row.city }})").row_ids
        self.assertEqual((row.name, row.email), ("Jan Nowak", "jan@nowak.example.com"))
        self.assertEqual(row._esign_placeholder_values()["city"], "Kraków")
        self.assertEqual(row._esign_placeholder_values()["first_name"], "Jan")

    def test_xlsx_is_read_like_csv(self):
        import openpyxl
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        sheet.append(["Name", "Email", "Monthly fee", "Start"])
        sheet.append(["Jan Nowak", "jan@nowak.example.com", 49.0, datetime.datetime(2027, 1, 1)])
        sheet.append([None, None, None, None])  # an empty line is skipped
        sheet.append(["Petra Svobodová", "petra@svoboda.example.com", 59.5, datetime.date(2027, 2, 1)])
        buffer = io.BytesIO()
        workbook.save(buffer)
        campaign = self.make_campaign(buffer.getvalue(), file_name="signers.xlsx")
        self.assertEqual(campaign.row_ids.mapped("name"), ["Jan Nowak", "Petra Svobodová"])
        self.assertEqual(campaign.row_ids.mapped("extra_summary"),
                         ["monthly_fee: 49; start: 2027-01-01", "monthly_fee: 59.5; start: 2027-02-01"])
        self.assertEqual(campaign.row_ids.mapped("sequence"), [2, 4], "the line in the file, to find it there")

    def test_preview_checks_each_line(self):
        content = csv_file([
            "Jan Nowak;jan@nowak.example.com;;;;1",
            "Jan Again;JAN@nowak.example.com;;;;2",
            "No Mail;;;;;3",
            ";nobody@example.com;;;;4",
            "Bad Mail;bad.example.com;;;;5",
        ])
        campaign = self.make_campaign(content)
        codes = [(row.sequence, row.result_code) for row in campaign.row_ids]
        self.assertEqual(codes, [(2, False), (3, "ESIGN_CAMPAIGN_DUPLICATE"), (4, "ESIGN_NO_EMAIL"),
                                 (5, "ESIGN_CAMPAIGN_NO_NAME"), (6, "ESIGN_BAD_EMAIL")])
        self.assertIn("repeats the e-mail address jan@nowak.example.com of line 2",
                      campaign.row_ids[1].result_message)
        self.assertEqual(campaign.problem_count, 4)
        # A correction in the preview is checked again.
        campaign.row_ids[1].with_user(self.manager).email = "jan.again@nowak.example.com"
        campaign.row_ids[3].with_user(self.manager).name = "Nobody Known"
        self.assertEqual([row.result_code for row in campaign.row_ids],
                         [False, False, "ESIGN_NO_EMAIL", False, "ESIGN_BAD_EMAIL"])
        self.assertFalse(self.env["res.partner"].search([("email", "ilike", "nowak.example.com")]), "no side effect")

    def test_a_provider_sending_codes_by_sms_needs_each_signers_phone(self):
        yousign = self.env["esign.provider"].create({
            "name": "Yousign", "code": "yousign", "state": "test", "yousign_authentication_mode": "otp_sms",
            "account_mode": "central", "representative_email": "ceo@acme.example.com"})
        campaign = self.make_campaign(csv_file(SIGNERS[:2]))
        self.assertEqual(campaign.row_ids.mapped("result_code"), [False, False])
        campaign.provider_id = yousign
        self.assertEqual(campaign.row_ids.mapped("result_code"), [False, "ESIGN_NO_PHONE"],
                         "Jan has a mobile number, Petra none")

    def test_campaign_problems_block_the_start(self):
        self.assertEqual([p.code for p in self.make_campaign()._esign_campaign_problems()], ["ESIGN_CAMPAIGN_EMPTY"])
        campaign = self.make_campaign(csv_file(SIGNERS[:1]), message="Fee: {{ row.yearly_fee }}")
        self.assertIn("ESIGN_CAMPAIGN_PLACEHOLDER", [p.code for p in campaign._esign_campaign_problems()])
        self.assertIn("{{ row.yearly_fee }}", campaign.problem_message)
        with self.assertRaisesRegex(UserError, "no such column"):
            campaign.with_user(self.manager).action_start()
        paper = self.template.copy({"code": "TPL-PAPER", "is_template": True, "agreement_type_id": self.type_paper.id})
        campaign.write({"template_id": paper.id, "message": "Fee: {{ row.monthly_fee }}"})
        self.assertEqual([p.code for p in campaign._esign_campaign_problems()],
                         ["ESIGN_TYPE_DISABLED", "ESIGN_NO_DOCUMENT"], "the copy has no PDF either")
        campaign.template_document = "report"
        self.assertEqual([p.code for p in campaign._esign_campaign_problems()], ["ESIGN_TYPE_DISABLED"])
        self.provider.state = "disabled"
        campaign.template_id = self.template
        self.assertEqual([p.code for p in campaign._esign_campaign_problems()], ["ESIGN_PROVIDER_DISABLED"])
        self.assertEqual(campaign.state, "draft")

    def test_file_errors_are_said_clearly(self):
        with self.assertRaisesRegex(UserError, "no e-mail column"):
            self.make_campaign(csv_file(["Jan"], header="name"))
        with self.assertRaisesRegex(UserError, "not UTF-8"):
            self.make_campaign("name;email\nJosé;jose@example.com\n".encode("cp1252"))
        with self.assertRaisesRegex(UserError, "no lines"):
            self.make_campaign(b"\r\n;;\r\n", file_name="x.csv")
        with self.assertRaisesRegex(UserError, ".xls"):
            self.make_campaign(b"\xd0\xcf\x11\xe0 old excel", file_name="signers.xls")
        with self.assertRaisesRegex(UserError, "cannot be read as an Excel workbook"):
            self.make_campaign(b"PK\x03\x04 broken", file_name="signers.xlsx")
        # In the form, said as soon as the file is chosen, before saving.
        draft = self.env(user=self.manager)["esign.campaign"].new({
            "name": "x", "file": base64.b64encode(csv_file(["Jan"], header="name")), "file_name": "x.csv"})
        warning = draft._onchange_file()["warning"]
        self.assertIn("no e-mail column", warning["message"])
        self.assertFalse(draft.file)

    def test_more_than_a_thousand_signers_are_refused(self):
        with self.assertRaisesRegex(UserError, "more than 1000 signers"):
            self.make_campaign(csv_file(signer_lines(1001)))
        campaign = self.make_campaign(csv_file(signer_lines(1000)))
        self.assertEqual(campaign.row_count, 1000)
        self.assertFalse(campaign.problem_count)

    def test_placeholders_from_a_file_are_text_never_code(self):
        self.assertEqual(column_key("Monthly fee (€)"), "monthly_fee")
        self.assertEqual(column_key("Opłata miesięczna"), "opłata_miesieczna")
        values = {"a": "{", "b": "{ object.env['res.users'].search([]) }}", "c": "{{ 7 * 7 }}"}
        text = render_row_text("x {{ row.a }}{{ row.b }} {{ row.c }} {{ row.unknown }}", values)
        self.assertNotIn("{{", text)
        self.assertIn("7 * 7", text)
        content = csv_file(["Eve {{ object.env.user.login }};eve@example.com;;;;{{ 7 * 7 }}"])
        campaign = self.make_campaign(content)
        campaign.with_user(self.manager).action_start()
        self.run_jobs()
        request = campaign.row_ids.request_id
        self.assertEqual(request.state, "sent")
        self.assertNotIn("49", request.message)
        self.assertNotIn("{{", request.message)
        self.assertIn("7 * 7", request.message)
        self.assertNotIn("esign_manager", request.message + request.subject, "nothing from the file was evaluated")


@tagged("post_install", "-at_install")
class TestCampaignRun(CampaignCommon):

    def start(self, lines=SIGNERS, **values):
        campaign = self.make_campaign(csv_file(lines), **values)
        campaign.with_user(self.manager).action_start()
        return campaign

    def test_start_makes_one_contract_and_one_request_per_line(self):
        campaign = self.start()
        self.assertEqual((campaign.state, campaign.user_id), ("running", self.manager))
        rows = self.rows_by_name(campaign)
        self.assertEqual(rows["Claire Martin"].state, "failed", "a line with a problem is left out at the start")
        self.assertFalse(campaign.row_ids.agreement_id, "nothing made inside the click")
        trigger = self.env["ir.cron.trigger"].search(
            [("cron_id", "=", self.env.ref("esign_connector.ir_cron_esign_campaign").id)])
        self.assertTrue(trigger, "the campaign's cron is woken up")
        self.run_jobs()
        self.assertEqual(campaign.state, "done")
        self.assertEqual((campaign.sent_count, campaign.failed_count, campaign.contract_count), (3, 1, 3))
        self.assertEqual(campaign.progress, 100.0)
        jan = rows["Jan Nowak"]
        self.assertEqual(self.contracts_of(jan), jan.agreement_id)
        self.assertFalse(jan.agreement_id.is_template)
        self.assertEqual(jan.agreement_id.esign_origin_ref, jan)
        self.assertEqual(jan.partner_id.parent_id.name, "Nowak Sp. z o.o.")
        self.assertEqual(jan.partner_id.parent_id.vat, "PL5260001234")
        self.assertEqual((jan.partner_id.email, jan.partner_id.phone), ("jan@nowak.example.com", "+48 600 000 001"))
        self.assertEqual(rows["Anna Kowalska"].partner_id, self.client_partner, "an existing contact is reused")
        request = jan.request_id
        self.assertEqual((request.state, request.user_id), ("sent", self.manager))
        self.assertEqual(request.subject, "Please sign: Price update – Jan Nowak")
        self.assertEqual(request.message, "Dear Jan Nowak, your fee is 49 EUR.")
        self.assertEqual(rows["Anna Kowalska"].request_id.message, "Dear Anna Kowalska, your fee is 29,50 EUR.")
        self.assertEqual(request.document_id.raw, self.template._esign_attached_pdf().raw,
                         "the template's PDF, the same for everyone")
        self.assertEqual(len(self.envelopes_of(campaign.row_ids.request_id)), 3)
        self.assertIn("ESIGN_BAD_EMAIL", campaign.failure_html)
        self.assertTrue(campaign.message_ids.filtered(lambda m: "All 4 signer(s) handled" in str(m.body)),
                        "the sender is told")

    def test_progress_counts_follow_the_signers(self):
        campaign = self.start()
        self.run_jobs()
        rows = self.rows_by_name(campaign)
        self.demo_act(rows["Jan Nowak"].request_id, "client")
        self.demo_act(rows["Jan Nowak"].request_id, "company")
        self.demo_act(rows["Petra Svobodová"].request_id, "client", decision="refused", reason="Too expensive")
        campaign.invalidate_recordset()
        self.assertEqual((campaign.sent_count, campaign.signed_count, campaign.refused_count, campaign.failed_count),
                         (1, 1, 1, 1))
        self.assertEqual(rows["Jan Nowak"].state, "signed")
        rows["Anna Kowalska"].request_id.with_user(self.manager).action_esign_cancel()
        self.run_jobs()
        campaign.invalidate_recordset()
        self.assertEqual((campaign.sent_count, campaign.cancelled_count), (0, 1))

    def test_a_restart_in_the_middle_makes_no_second_contract_or_envelope(self):
        campaign = self.start(signer_lines(6))
        Campaign = self.env["esign.campaign"]
        first = Campaign._esign_process_batch(batch_size=2)  # a worker's first batch, committed
        self.assertEqual(first.mapped("stage"), ["queued", "queued"])
        with self.assertRaises(Crash):
            with self.env.cr.savepoint():  # its second batch: the worker dies before the commit
                second = Campaign._esign_process_batch(batch_size=2)
                self.assertEqual(second.mapped("stage"), ["queued", "queued"])
                raise Crash()
        self.env.invalidate_all()
        self.assertEqual(campaign.row_ids.mapped("stage"), ["queued"] * 2 + ["draft"] * 4)
        self.run_jobs()  # after the restart, the cron continues
        self.run_jobs()  # and once more, as a second worker or the next interval would
        for row in campaign.row_ids:
            self.assertEqual(len(self.contracts_of(row)), 1, row.name)
            self.assertEqual(len(row.agreement_id.esign_request_ids), 1, row.name)
            self.assertEqual(len(self.envelopes_of(row.request_id)), 1, row.name)
        self.assertEqual(self.env["agreement"].search_count([("name", "like", "Price update –")]), 6)
        self.assertEqual((campaign.state, campaign.sent_count), ("done", 6))

    def test_a_row_whose_contract_was_made_is_only_sent(self):
        campaign = self.start(signer_lines(1))
        row = campaign.row_ids
        row = row.sudo()
        row._esign_make_contract(row._esign_partner_cache())  # a worker made it, then stopped before sending
        contract = row.agreement_id
        self.assertEqual(row.state, "contract")
        self.run_jobs()
        self.assertEqual((row.state, row.agreement_id), ("sent", contract))
        self.assertEqual(len(self.contracts_of(row)), 1)

    def test_cancel_the_rest(self):
        campaign = self.start(signer_lines(5))
        self.env["esign.campaign"]._esign_process_batch(batch_size=2)
        self.assertEqual(campaign.with_user(self.manager).action_cancel(), True)
        self.run_jobs()
        self.assertEqual(campaign.state, "cancelled")
        self.assertEqual((campaign.sent_count, campaign.cancelled_count, campaign.contract_count), (2, 3, 2))
        self.assertFalse(campaign.row_ids.filtered(lambda r: r.state == "cancelled").agreement_id)
        with self.assertRaises(UserError):
            campaign.with_user(self.manager).action_start()
        with self.assertRaises(UserError):
            campaign.with_user(self.manager).action_cancel()

    def test_a_started_campaign_keeps_its_settings_and_lines(self):
        campaign = self.start()
        with self.assertRaises(UserError):
            campaign.with_user(self.manager).message = "Other text"
        with self.assertRaises(UserError):
            campaign.with_user(self.manager).file = base64.b64encode(csv_file(signer_lines(1)))
        with self.assertRaises(UserError):
            campaign.row_ids[0].with_user(self.manager).email = "other@example.com"
        with self.assertRaises(AccessError):
            campaign.row_ids[0].with_user(self.manager).write({"stage": "draft"})
        with self.assertRaises(UserError):
            campaign.with_user(self.manager).unlink()

    def test_who_may_run_campaigns(self):
        with self.assertRaises(AccessError):
            self.make_campaign(csv_file(SIGNERS[:1]), user=self.salesman)
        campaign = self.make_campaign(csv_file(SIGNERS[:1]))
        with self.assertRaises(AccessError):
            campaign.with_user(self.salesman).action_start()
        self.assertEqual(campaign.with_user(self.salesman).row_ids.name, "Jan Nowak", "salespeople read campaigns")
        campaign.with_user(self.manager).action_start()
        with self.assertRaises(AccessError):
            campaign.with_user(self.salesman).action_cancel()
        other_company = self.env["res.company"].create({"name": "Other Co"})
        outsider = new_test_user(self.env, "esign_campaign_outsider",
                                 groups="base.group_user,esign_connector.group_esign_manager",
                                 company_id=other_company.id, company_ids=[other_company.id], name="Olga Outsider")
        self.assertFalse(self.env["esign.campaign"].with_user(outsider).search([("id", "=", campaign.id)]))
        self.assertFalse(self.env["esign.campaign.row"].with_user(outsider).search([("campaign_id", "=", campaign.id)]))

    def test_printed_contracts_carry_each_signers_details(self):
        self.env["ir.config_parameter"].set_param("report.url", "http://127.0.0.1:9")  # see test_send_printed_report
        self.env = self.env(context=dict(self.env.context, force_report_rendering=True))
        campaign = self.start(SIGNERS[:1], template_document="report")
        self.run_jobs()
        request = campaign.row_ids.request_id
        self.assertEqual(request.state, "sent")
        self.assertTrue(request.document_id.raw.startswith(b"%PDF"))
        self.assertNotEqual(request.document_id.raw, self.template._esign_attached_pdf().raw)

    def test_with_queue_job_the_batches_are_jobs(self):
        if "queue.job" not in self.env:
            self.skipTest("queue_job is not installed in this database: the job path is not tested here")
        from odoo.addons.queue_job.job import Job

        self.env["ir.config_parameter"].set_param("esign_connector.use_queue_job", "True")

        def perform(method):
            jobs = self.env["queue.job"].search([("method_name", "=", method), ("state", "=", "pending")])
            for job in jobs:
                Job.load(self.env, job.uuid).perform()
            self.env.invalidate_all()
            return jobs

        campaign = self.start(signer_lines(3))
        jobs = perform("_esign_run_batch")
        self.assertEqual((len(jobs), jobs.channel), (1, "root.esign.campaign"))
        self.assertEqual(campaign.row_ids.mapped("state"), ["queued"] * 3)
        self.assertEqual(len(perform("_esign_outbox_run")), 3, "each send is a job of the provider's channel")
        self.assertEqual(campaign.row_ids.mapped("state"), ["sent"] * 3)
        Job.load(self.env, jobs.uuid).perform()  # the runner may run a job twice: nothing happens twice
        self.assertEqual(len(self.envelopes_of(campaign.row_ids.request_id)), 3)
        self.assertEqual(campaign.state, "done")


@tagged("post_install", "-at_install")
class TestCampaignWorkers(BaseCase):
    """Two workers on one campaign, each in real committed transactions: every row once."""

    ROWS = 24

    def setUp(self):
        super().setUp()
        self.dbname = get_db_name()
        self.registry = Registry(self.dbname)
        with self.cursor() as cr:
            env = self.env_of(cr)
            if env.registry.in_test_mode():
                self.skipTest("the registry is in test mode: its cursors would share one transaction")
            self.queue_job_param = env["ir.config_parameter"].get_param("esign_connector.use_queue_job")
            env["ir.config_parameter"].set_param("esign_connector.use_queue_job", "False")
            provider = env.ref("esign_connector.esign_provider_demo")
            self.provider_backup = provider.read(
                ["state", "account_mode", "representative_email", "representative_first_name", "webhook_secret"])[0]
            provider.write({"state": "test", "account_mode": "central", "representative_email": "ceo@x.example.com",
                            "representative_first_name": "Ceo", "webhook_secret": "campaign-workers"})
            env.company.esign_provider_id = provider
            kind = env["agreement.type"].create({"name": "Campaign workers"})
            template = env["agreement"].create({"code": "TPL-WORKERS", "name": "Workers", "is_template": True,
                                                "agreement_type_id": kind.id})
            env["ir.attachment"].create({"name": "w.pdf", "raw": make_pdf(), "mimetype": "application/pdf",
                                         "res_model": "agreement", "res_id": template.id})
            campaign = env["esign.campaign"].create({
                "name": "Workers", "template_id": template.id, "provider_id": provider.id,
                "file": base64.b64encode(csv_file(
                    [f"Worker {i};worker{i}@workers.example.com;;;;" for i in range(self.ROWS)])),
                "file_name": "w.csv", "message": "Hello {{ row.name }}"})
            campaign.action_start()
            self.ids = {"template": template.id, "type": kind.id, "campaign": campaign.id, "provider": provider.id}
        self.addCleanup(self._cleanup)

    def cursor(self):
        return sql_db.db_connect(self.dbname).cursor()

    def env_of(self, cr):
        return new_environment(self.registry, cr, SUPERUSER_ID, {})

    def _cleanup(self):
        with self.cursor() as cr:
            env = self.env_of(cr)
            rows = env["esign.campaign.row"].search([("campaign_id", "=", self.ids["campaign"])])
            agreements = rows.agreement_id | env["agreement"].search(
                [("name", "like", "Workers –")])
            requests = agreements.esign_request_ids
            partners = env["res.partner"].search([("email", "like", "@workers.example.com")])
            env["mail.message"].search([("model", "=", "esign.campaign"), ("res_id", "=", self.ids["campaign"])]).unlink()
            env["mail.followers"].search([("res_model", "=", "esign.campaign"),
                                          ("res_id", "=", self.ids["campaign"])]).unlink()
            cr.execute("DELETE FROM esign_campaign WHERE id = %s", [self.ids["campaign"]])
            env["esign.demo.envelope"].search([("external_reference", "in", requests.mapped("reference"))]).unlink()
            env["esign.request.event"].search([("request_id", "in", requests.ids)]).unlink()
            requests.unlink()
            env["ir.attachment"].search([("res_model", "=", "agreement"),
                                         ("res_id", "in", (agreements.ids or [0]) + [self.ids["template"]])]).unlink()
            agreements.unlink()
            env["agreement"].browse(self.ids["template"]).unlink()
            env["agreement.type"].browse(self.ids["type"]).unlink()
            partners.unlink()
            env["ir.config_parameter"].set_param("esign_connector.use_queue_job", self.queue_job_param)
            backup = dict(self.provider_backup)
            backup.pop("id")
            env["esign.provider"].browse(self.ids["provider"]).write(backup)

    def _worker(self):
        with self.cursor() as cr:
            env = self.env_of(cr)
            done = env["esign.campaign"]._cron_esign_campaign(batch_size=3, time_budget=60)
            cr.commit()
            return done

    def test_two_workers_share_the_rows_and_repeat_none(self):
        barrier = threading.Barrier(2)
        results, errors = [None, None], []

        def run(index):
            try:
                barrier.wait(timeout=20)
                results[index] = self._worker()
            except Exception as error:  # reported below, from the test's thread
                errors.append(error)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        stuck = [t for t in threads if t.is_alive()]
        frames = sys._current_frames()
        self.assertFalse(stuck, "a worker is stuck:\n" + "\n".join(
            "".join(traceback.format_stack(frames[t.ident])) for t in stuck if t.ident in frames))
        self.assertFalse(errors, errors)
        self.assertEqual(sum(results), self.ROWS, f"each row claimed once in all (per worker: {results})")
        with self.cursor() as cr:
            env = self.env_of(cr)
            campaign = env["esign.campaign"].browse(self.ids["campaign"])
            self.assertEqual(campaign.state, "done")
            rows = campaign.row_ids
            self.assertEqual(set(rows.mapped("state")), {"sent"})
            self.assertEqual(len(rows.agreement_id), self.ROWS)
            self.assertEqual(env["agreement"].search_count([("name", "like", "Workers –")]), self.ROWS)
            self.assertEqual(len(rows.request_id), self.ROWS)
            envelopes = env["esign.demo.envelope"].search_count(
                [("external_reference", "in", rows.request_id.mapped("reference"))])
            self.assertEqual(envelopes, self.ROWS, "one envelope per row, sent after each batch's commit")


if __name__ == "__main__":
    unittest.main()
