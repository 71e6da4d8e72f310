# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The queue_job path: with OCA queue_job installed, sends, commands and callbacks become jobs.

Jobs are stored for real (``queue.job`` records) and performed the way the job runner performs them
(``Job.load(...).perform()``); nothing is mocked. Skipped, saying so, where queue_job is not
installed in the test database (tools/test.sh installs it for the pytest-odoo run when it is on the
addons path).
"""
import json
import unittest

from odoo.tests import tagged

from .common import EsignCommon


@tagged("post_install", "-at_install")
class TestQueueJob(EsignCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if "queue.job" not in cls.env:
            raise unittest.SkipTest("queue_job is not installed in this database: the job path is not tested here")
        cls.env["ir.config_parameter"].set_param("esign_connector.use_queue_job", "True")

    def jobs(self, method):
        return self.env["queue.job"].search([("method_name", "=", method), ("state", "=", "pending")])

    def perform(self, jobs):
        from odoo.addons.queue_job.job import Job
        for record in jobs:
            Job.load(self.env, record.uuid).perform()
        self.env.invalidate_all()

    def test_send_is_a_job_on_the_providers_channel_run_once(self):
        request, _result = self.send(process=False)
        self.assertFalse([f for f in self.env.cr.postcommit._funcs if getattr(f, "__name__", "") == "run_after_commit"],
                         "no post-commit send when queue_job is there")
        job = self.jobs("_esign_outbox_run")
        self.assertEqual(len(job), 1)
        self.assertEqual(job.channel, "root.esign.demo")
        self.assertEqual(job.records, request)
        self.assertEqual(request.state, "sending")
        self.perform(job)
        self.assertEqual(request.state, "sent")
        self.perform(job)  # the runner may run a job twice (after a crash): the claim makes it harmless
        self.assertEqual(self.env["esign.demo.envelope"].search_count([("external_reference", "=", request.reference)]), 1)

    def test_callback_is_applied_by_a_job(self):
        request, _result = self.send(process=False)
        self.perform(self.jobs("_esign_outbox_run"))
        status, _body = self.demo_act(request, "client", deliver=False)
        body = json.dumps(self.demo_envelope(request)._status_payload("signer.signed")).encode()
        self.assertEqual(self.deliver(body, process=False)[0], 200)
        job = self.jobs("_esign_process")
        self.assertEqual(job.channel, "root.esign.events")
        self.assertEqual(self.signer(request, "client").state, "pending")
        self.perform(job)
        self.assertEqual(self.signer(request, "client").state, "signed")

    def test_commands_are_jobs_too(self):
        request, _result = self.send(process=False)
        self.perform(self.jobs("_esign_outbox_run"))
        request.with_user(self.manager).action_esign_cancel()
        job = self.jobs("_esign_run_commands")
        self.assertEqual(len(job), 1)
        self.perform(job)
        self.assertEqual(request.state, "cancelled")

    def test_switched_off_it_uses_the_post_commit_hook(self):
        self.env["ir.config_parameter"].set_param("esign_connector.use_queue_job", "False")
        request, _result = self.send(process=False)
        self.assertFalse(self.jobs("_esign_outbox_run"))
        self.run_jobs()
        self.assertEqual(request.state, "sent")

    def test_a_job_waits_for_the_providers_next_window(self):
        self.provider.write({"rate_limit_calls": 1, "rate_limit_period": 3600})
        first, _result = self.send(process=False)
        second, _result = self.send(self._make_agreement("C-002", self.client_partner), process=False)
        self.perform(self.jobs("_esign_outbox_run"))
        self.assertEqual(sorted((first | second).mapped("state")), ["sending", "sent"])
        waiting = (first | second).filtered(lambda r: r.state == "sending")
        self.assertEqual(waiting.send_attempts, 0)
        self.assertEqual(waiting.send_next_attempt_at, self.provider._esign_window()[1])
        self.assertEqual(self.provider._esign_calls_used(), 1, "no more calls than the window allows")
