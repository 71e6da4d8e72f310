# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Sending to many signers at once: a CSV campaign, or contracts selected in the list.

A **file campaign** (SELL&SIGN's "campagne", Signi's bulk generation) makes one contract per line of
a CSV or XLSX file from a contract template, and sends each for signature. A **bulk send** (the
*Send for e-signature* action on selected contracts) is the same machinery on existing contracts.
Both are sent by :meth:`agreement._esign_send_unattended`, so every check, code and message is the
dialog's, and the provider is called by the outbox after commit, at the provider's pace.

Why in the background, in batches: a thousand contracts cannot be one transaction (one failure
would undo them all, and locks would be held for minutes), nor one HTTP request (printing and
sending take minutes, a worker is killed after ``limit_time_real``). So the click only records
what to do; a cron (or ``queue_job`` jobs, where installed) claims rows with ``FOR UPDATE SKIP
LOCKED`` so that several workers share the work, and commits after every batch. Each row keeps its
own progress (see :mod:`.esign_campaign_row`): a restart continues where the last committed batch
ended, and no row ever gets a second contract or envelope.
"""
import base64
import json
import logging
import math
import time

from markupsafe import Markup

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import SQL

from . import esign_send_checks as checks
from .agreement_esign_send import DOCUMENT_SOURCES
from .esign_access import GROUP_MANAGER, check_esign_right
from .esign_after_commit import use_queue_job
from .esign_campaign_row import (MAX_ROWS, ROW_FIELDS, ROW_PLACEHOLDER, ROW_STATES, read_signer_file,
                                 render_row_text, signer_problems)

_logger = logging.getLogger(__name__)

BATCH_SIZE = 50
TIME_BUDGET = 50  # seconds per cron run: Odoo runs it again at once while work remains
CRON_XMLID = "esign_connector.ir_cron_esign_campaign"
# Settings a started campaign keeps: its rows were checked, and some already went, with them.
LOCKED_FIELDS = frozenset({"kind", "template_id", "provider_id", "document_source", "template_document",
                           "subject", "message", "file", "file_name", "company_id", "user_id"})
# Codes of the send checks that do not apply to a template standing in for the contracts to come.
TEMPLATE_CHECK_CODES = frozenset({"ESIGN_TEMPLATE", "ESIGN_NO_PARTNER", "ESIGN_ALREADY_OUT"})


class EsignCampaign(models.Model):
    _name = "esign.campaign"
    _description = "E-Signature Campaign"
    _inherit = ["mail.thread"]
    _order = "id desc"
    _check_company_auto = True

    name = fields.Char(required=True, tracking=True)
    kind = fields.Selection(
        [("file", "Signers from a file"), ("contracts", "Selected contracts")], default="file",
        required=True, readonly=True,
        help="From a file: one contract per signer, made from a contract template. Selected contracts: a bulk "
        "send of existing contracts, started from the contracts list.")
    state = fields.Selection(
        [("draft", "Draft"), ("running", "Sending"), ("done", "Done"), ("cancelled", "Cancelled")],
        default="draft", required=True, readonly=True, tracking=True, index=True,
        help="Sending: contracts and requests are being made in the background. Done: every signer has its "
        "request (or a reason why not); the counts keep following the signatures.")
    company_id = fields.Many2one("res.company", required=True, index=True, default=lambda self: self.env.company)
    user_id = fields.Many2one(
        "res.users", string="Sender", required=True, readonly=True, default=lambda self: self.env.user,
        help="The contracts are sent as this user (their rights, their account at the provider in individual "
        "mode). Who starts the campaign.")
    template_id = fields.Many2one(
        "agreement", string="Contract Template", check_company=True,
        domain="[('is_template', '=', True), '|', ('company_id', '=', False), ('company_id', '=', company_id)]",
        help="Each signer's contract is a copy of this template, with the signer as its partner.")
    provider_id = fields.Many2one(
        "esign.provider", string="Provider", check_company=True,
        default=lambda self: self.env["esign.provider"]._esign_default_for_company(self.env.company),
        domain="[('state', '!=', 'disabled'), ('company_id', '=', company_id)]",
        help="Empty: each contract's default provider.")
    template_document = fields.Selection(
        [("template", "The PDF attached to the template, the same for everyone"),
         ("report", "Each contract printed by Odoo, with its signer's details")],
        string="Document to Sign", default="template", required=True)
    document_source = fields.Selection(DOCUMENT_SOURCES, string="Document", default="auto", required=True,
                                       help="For selected contracts: which document of each contract is sent.")
    subject = fields.Char(default=lambda self: self.env._("Please sign: {{ object.name }}"))
    message = fields.Text(help="Placeholders: {{ row.<column> }} for the file's columns (its text, as it is), "
                               "{{ object.<field> }} for the contract's fields.")
    file = fields.Binary(string="Signers File", attachment=True, copy=False,
                         help="CSV (UTF-8) or Excel (.xlsx); the first line names the columns: name, email, and "
                         "optionally phone, company, vat, and any column of your own.")
    file_name = fields.Char(copy=False)
    column_json = fields.Text(readonly=True, copy=False, help="The file's own columns: [[key, header], ...].")
    placeholder_help = fields.Char(string="Placeholders", compute="_compute_placeholder_help")
    problem_message = fields.Text(string="Problems", compute="_compute_problem_message")
    row_ids = fields.One2many("esign.campaign.row", "campaign_id", string="Signers", copy=False)
    started_at = fields.Datetime(readonly=True, copy=False)
    done_at = fields.Datetime(readonly=True, copy=False)

    row_count = fields.Integer(string="Number of Signers", compute="_compute_counts")
    draft_count = fields.Integer(string="To Send", compute="_compute_counts")
    queued_count = fields.Integer(string="Queued", compute="_compute_counts")
    sent_count = fields.Integer(string="Sent", compute="_compute_counts")
    signed_count = fields.Integer(string="Signed", compute="_compute_counts")
    refused_count = fields.Integer(string="Refused", compute="_compute_counts")
    failed_count = fields.Integer(string="Failed", compute="_compute_counts")
    cancelled_count = fields.Integer(string="Cancelled", compute="_compute_counts")
    problem_count = fields.Integer(string="Lines with Problems", compute="_compute_counts")
    contract_count = fields.Integer(string="Contracts", compute="_compute_counts")
    progress = fields.Float(compute="_compute_counts", help="Share of the signers handled (sent or not).")
    failure_html = fields.Html(string="Failures by Code", compute="_compute_counts", sanitize=False)

    # ------------------------------------------------------------------ computes

    @api.depends("row_ids.state", "row_ids.result_code")
    def _compute_counts(self):
        Row = self.env["esign.campaign.row"]
        ids = self._origin.ids  # the stored rows (also while the form is being edited)
        counts = {}
        for campaign, state, count in Row._read_group([("campaign_id", "in", ids)], ["campaign_id", "state"],
                                                      ["__count"]):
            counts.setdefault(campaign.id, {})[state] = count
        failures = {}
        for campaign, code, count in Row._read_group(
                [("campaign_id", "in", ids), ("state", "=", "failed")], ["campaign_id", "result_code"],
                ["__count"], order="__count desc"):
            failures.setdefault(campaign.id, []).append((code or "-", count))
        contracts = {campaign.id: count for campaign, count in Row._read_group(
            [("campaign_id", "in", ids), ("agreement_id", "!=", False)], ["campaign_id"], ["__count"])}
        problems = {campaign.id: count for campaign, count in Row._read_group(
            [("campaign_id", "in", ids), ("state", "=", "draft"), ("error_code", "!=", False)],
            ["campaign_id"], ["__count"])}
        for campaign in self:
            campaign_id = campaign._origin.id
            by_state = counts.get(campaign_id, {})
            total = sum(by_state.values())
            campaign.row_count = total
            campaign.draft_count = by_state.get("draft", 0) + by_state.get("contract", 0)
            campaign.queued_count = by_state.get("queued", 0)
            campaign.sent_count = by_state.get("sent", 0)
            campaign.signed_count = by_state.get("signed", 0)
            campaign.refused_count = by_state.get("refused", 0)
            campaign.failed_count = by_state.get("failed", 0)
            campaign.cancelled_count = by_state.get("cancelled", 0)
            campaign.contract_count = contracts.get(campaign_id, 0)
            campaign.problem_count = problems.get(campaign_id, 0)
            campaign.progress = 100.0 * (total - campaign.draft_count) / total if total else 0.0
            rows = failures.get(campaign_id)
            campaign.failure_html = Markup("<table class='table table-sm o_esign_failures'><thead><tr><th>%s</th>"
                                           "<th class='text-end'>%s</th></tr></thead><tbody>%s</tbody></table>") % (
                _("Code"), _("Signers"), Markup("").join(
                    Markup("<tr><td><code>%s</code></td><td class='text-end'>%s</td></tr>") % (code, count)
                    for code, count in rows)) if rows else False

    @api.depends("column_json", "kind")
    def _compute_placeholder_help(self):
        for campaign in self:
            if campaign.kind != "file":
                campaign.placeholder_help = "{{ object.name }}, {{ object.partner_id.name }}"
                continue
            keys = list(ROW_FIELDS) + [key for key, _label in json.loads(campaign.column_json or "[]")]
            campaign.placeholder_help = ", ".join(f"{{{{ row.{key} }}}}" for key in keys) + ", {{ object.name }}"

    @api.depends("state", "template_id", "provider_id", "template_document", "subject", "message", "column_json",
                 "row_ids")
    def _compute_problem_message(self):
        manager = self.env.user.has_group(GROUP_MANAGER)
        for campaign in self:
            # Checked for who will start it: the manager looking at it (others see the creator's view).
            user = self.env.user if manager else campaign.user_id
            problems = campaign._esign_campaign_problems(user) if campaign.state == "draft" else []
            campaign.problem_message = checks.format_problems(problems) if problems else False

    # ------------------------------------------------------------------ CRUD

    @api.model_create_multi
    def create(self, vals_list):
        campaigns = super().create(vals_list)
        for campaign, vals in zip(campaigns, vals_list):
            if vals.get("file"):
                campaign._esign_import_file()
        return campaigns

    def write(self, vals):
        if LOCKED_FIELDS.intersection(vals) and any(campaign.state != "draft" for campaign in self) \
                and not self.env.context.get("esign_campaign_system"):
            raise UserError(_("A campaign that has started keeps its template, provider, file and message: "
                              "cancel it and make a new one."))
        result = super().write(vals)
        if "file" in vals:
            for campaign in self:
                campaign._esign_import_file()
        elif {"provider_id", "template_id"} & set(vals):  # another provider may need phone numbers
            self._esign_check_rows()
        return result

    def unlink(self):
        if any(campaign.state not in ("draft", "cancelled") or campaign.contract_count for campaign in self):
            raise UserError(_("Only a campaign that made no contract can be deleted; cancel the rest of a "
                              "started campaign instead."))
        return super().unlink()

    @api.onchange("file")
    def _onchange_file(self):
        """Say at once what is wrong with a file (too many lines, no e-mail column...), before saving."""
        if self.file and self.state == "draft":
            try:
                content = base64.b64decode(self.file, validate=True)
            except ValueError:  # not an upload (e.g. the size the web client shows): nothing to check
                return None
            try:
                read_signer_file(self.env, content, self.file_name)
            except UserError as error:
                self.file = False
                return {"warning": {"title": _("This file cannot be used"), "message": error.args[0]}}
        return None

    @api.constrains("kind", "template_id")
    def _check_template(self):
        for campaign in self:
            if campaign.kind == "file" and campaign.template_id and not campaign.template_id.is_template:
                raise ValidationError(_("%s is not a contract template.", campaign.template_id.display_name))

    # ------------------------------------------------------------------ file and checks

    def _esign_import_file(self):
        """Replace the signers by the file's lines, each checked (nothing is sent)."""
        self.ensure_one()
        if self.state != "draft":
            raise UserError(_("The file of a started campaign cannot be replaced."))
        Row = self.env["esign.campaign.row"].sudo()
        self.row_ids.sudo().with_context(esign_campaign_import=True).unlink()
        if not self.file:
            self.sudo().with_context(esign_campaign_system=True).column_json = False
            return
        content = base64.b64decode(self.with_context(bin_size=False).file)
        extras, signers = read_signer_file(self.env, content, self.file_name)
        problems = signer_problems(self.env, signers, phone_required=self._esign_phone_required())
        Row.create([{
            "campaign_id": self.id, "sequence": signer["sequence"], "name": signer["name"], "email": signer["email"],
            "phone": signer["phone"], "company_name": signer["company_name"], "vat": signer["vat"],
            "extra_json": json.dumps(signer["extra"], ensure_ascii=False),
            "error_code": found[0].code if found else False,
            "error_message": checks.format_problems(found) if found else False,
        } for signer, found in zip(signers, problems)])
        self.sudo().with_context(esign_campaign_system=True).column_json = json.dumps(extras, ensure_ascii=False)
        self.invalidate_recordset(["row_ids"])

    def _esign_check_rows(self):
        """Check every signer not sent yet again (a correction can end or create a duplicate)."""
        for campaign in self.filtered(lambda c: c.state == "draft" and c.kind == "file"):
            rows = campaign.row_ids.filtered(lambda r: r.stage == "draft").sorted("sequence")
            found_all = signer_problems(self.env, [r._esign_signer_values() for r in rows],
                                        phone_required=campaign._esign_phone_required())
            for row, found in zip(rows, found_all):
                code = found[0].code if found else False
                message = checks.format_problems(found) if found else False
                if (row.error_code, row.error_message) != (code, message):
                    row.sudo().write({"error_code": code, "error_message": message})

    def action_check(self):
        """Check again (e.g. after a provider or an account was set up)."""
        self._esign_check_manager()
        self._esign_check_rows()
        problems = [p for campaign in self for p in campaign._esign_campaign_problems()]
        lines = sum(campaign.problem_count for campaign in self)
        if problems:
            kind, message = "warning", checks.format_problems(problems)
        elif lines:
            kind, message = "warning", _("%s line(s) have problems and will not be sent: see the Signers tab.", lines)
        else:
            kind, message = "success", _("Everything is ready to send.")
        return {"type": "ir.actions.client", "tag": "display_notification",
                "params": {"type": kind, "message": message, "sticky": kind != "success",
                           "next": {"type": "ir.actions.client", "tag": "soft_reload"}}}

    def _esign_provider(self):
        """The provider the contracts will be sent with (empty: the company's default)."""
        self.ensure_one()
        return self.provider_id or self.template_id.with_company(self.company_id).esign_provider_id

    def _esign_phone_required(self):
        """The provider sends each signer a code by SMS: every line needs a mobile number."""
        provider = self._esign_provider()
        return bool(provider) and provider.sudo()._esign_phone_required()

    def _esign_campaign_problems(self, user=None):
        """What prevents the whole campaign from starting, as :class:`~.esign_send_checks.SendProblem`.

        The send's own checks, run once on the template standing in for the contracts to come (a
        template's company, type, provider, sender's account, document and company signer are its
        contracts'); the lines' own problems are checked per line.
        """
        self.ensure_one()
        user = user or self.env.user
        _ = self.env._
        if self.kind != "file":
            return []
        problems = []
        template = self.template_id.with_company(self.company_id)
        if not template:
            problems.append(checks.SendProblem("ESIGN_CAMPAIGN_NO_TEMPLATE", _(
                "Choose the contract template each signer's contract is made from.")))
        else:
            document = template.sudo()._esign_attached_pdf() if self.template_document == "template" \
                else self.env["ir.attachment"]
            # A valid signer stands for the lines (checked one by one): what remains is the campaign's.
            sample = [{"name": _("Signer"), "email": "signer@example.com", "phone": "+48600000000",
                       "role": "client", "sequence": 1}]
            found = self.env["esign.request"]._esign_send_problems(template, self._esign_provider(), user,
                                                                   document, sample)
            ignore = TEMPLATE_CHECK_CODES | ({"ESIGN_NO_DOCUMENT"} if self.template_document == "report" else set())
            problems += [problem for problem in found if problem.code not in ignore]
            problems += self._esign_placeholder_problems(template, user)
        if not self.row_ids:
            problems.append(checks.SendProblem("ESIGN_CAMPAIGN_EMPTY", _(
                "Save the campaign to read the file's signers.") if self.file else _(
                "Upload the file with the signers (CSV or XLSX, at most %s lines).", MAX_ROWS)))
        return problems

    def _esign_placeholder_problems(self, template, user):
        """Unknown ``{{ row.x }}`` columns, and contract placeholders the sender may not render."""
        _ = self.env._
        known = set(ROW_FIELDS) | {key for key, _label in json.loads(self.column_json or "[]")}
        text = f"{self.subject or ''}\n{self.message or ''}"
        unknown = sorted({key for key in ROW_PLACEHOLDER.findall(text) if key not in known})
        problems = []
        if unknown and self.row_ids:
            problems.append(checks.SendProblem("ESIGN_CAMPAIGN_PLACEHOLDER", _(
                "The message uses %(unknown)s, but the file has no such column. Columns: %(known)s.",
                unknown=", ".join(f"{{{{ row.{key} }}}}" for key in unknown),
                known=", ".join(sorted(known)))))
        try:
            render_row_text(text, {}, template.with_user(user)._esign_render)
        except Exception as error:  # noqa: BLE001 said to the user; each contract would fail the same way
            problems.append(checks.SendProblem("ESIGN_CAMPAIGN_PLACEHOLDER", _(
                "The subject or message cannot be rendered for the contracts: %s",
                error.args[0] if isinstance(error, UserError) and error.args else error)))
        return problems

    # ------------------------------------------------------------------ start, cancel

    def _esign_check_manager(self):
        if not (self.env.su or self.env.user.has_group(GROUP_MANAGER)):
            raise AccessError(_("Only E-Signature managers run campaigns."))

    def _esign_lock(self):
        self.flush_recordset()
        self.env.cr.execute(SQL("SELECT id FROM esign_campaign WHERE id IN %s FOR UPDATE", tuple(self.ids)))
        self.invalidate_recordset(["state"])

    def action_start(self):
        """Start sending: the lines without problems get their contracts and requests in the background."""
        self._esign_check_manager()
        self.check_access("write")
        self._esign_lock()
        for campaign in self:
            if campaign.state != "draft":
                raise UserError(_("The campaign %s has already started.", campaign.name))
            if campaign.kind != "file":
                raise UserError(_("A bulk send starts when it is made."))
            campaign._esign_check_rows()
            problems = campaign._esign_campaign_problems()
            if problems:
                raise UserError(checks.format_problems(problems))
            rows = campaign.row_ids.filtered(lambda r: r.stage == "draft")
            refused = rows.filtered("error_code")
            if not rows - refused:
                raise UserError(_("No line of %s can be sent: correct the lines with problems, or upload a corrected "
                                  "file.", campaign.name))
            refused.sudo().write({"stage": "failed"})
            campaign.sudo().with_context(esign_campaign_system=True).write({
                "state": "running", "user_id": self.env.user.id, "started_at": fields.Datetime.now()})
            if refused:
                body = _("Sending started by %(user)s: %(count)s contract(s) to make and send, %(skipped)s line(s) "
                         "with problems left out.", user=self.env.user.name, count=len(rows - refused),
                         skipped=len(refused))
            else:
                body = _("Sending started by %(user)s: %(count)s contract(s) to make and send.",
                         user=self.env.user.name, count=len(rows))
            campaign.message_post(body=body)
        self._esign_schedule()
        return True

    def action_cancel(self):
        """Cancel the rest: signers not handled yet get no contract and no request.

        What already went stays (cancel those requests one by one if needed); rows a worker is
        processing right now (at most one batch per worker) still go.
        """
        for campaign in self:
            if not (self.env.su or self.env.user.has_group(GROUP_MANAGER)
                    or (campaign.kind == "contracts" and campaign.user_id == self.env.user)):
                raise AccessError(_("Only E-Signature managers cancel campaigns (and each salesperson their own "
                                    "bulk sends)."))
        self.check_access("read")
        self._esign_lock()
        for campaign in self.sudo():
            if campaign.state not in ("draft", "running"):
                raise UserError(_("The campaign %s is not running.", campaign.name))
            self.env["esign.campaign.row"].flush_model(["stage", "campaign_id"])
            self.env.cr.execute(SQL("""
                SELECT id FROM esign_campaign_row WHERE campaign_id = %s AND stage IN ('draft', 'contract')
                   FOR UPDATE SKIP LOCKED""", campaign.id))
            rows = self.env["esign.campaign.row"].sudo().browse([row_id for row_id, in self.env.cr.fetchall()])
            rows.invalidate_recordset()
            rows = rows.filtered(lambda r: r.stage in ("draft", "contract"))
            rows.write({"stage": "cancelled"})
            campaign.with_context(esign_campaign_system=True).write({"state": "cancelled",
                                                                     "done_at": fields.Datetime.now()})
            campaign.message_post(body=_("Cancelled by %(user)s: %(count)s signer(s) will not be sent.",
                                         user=self.env.user.name, count=len(rows)),
                                  author_id=self.env.user.partner_id.id)
        return True

    def _esign_schedule(self):
        """Work on the rows once this transaction has committed: jobs where queue_job runs, else the cron."""
        if use_queue_job(self.env):
            for campaign in self.sudo():
                todo = self.env["esign.campaign.row"].sudo().search_count(
                    [("campaign_id", "=", campaign.id), ("stage", "in", ("draft", "contract"))])
                stamp = fields.Datetime.to_string(campaign.started_at or fields.Datetime.now())
                for index in range(math.ceil(todo / BATCH_SIZE)):
                    campaign.with_delay(
                        channel="root.esign.campaign", identity_key=f"esign-campaign-{campaign.id}-{stamp}-{index}",
                        description=_("E-signature campaign %(name)s: batch %(index)s", name=campaign.name,
                                      index=index + 1))._esign_run_batch()
            return
        cron = self.env.ref(CRON_XMLID, raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger()

    # ------------------------------------------------------------------ processing

    @api.model
    def _esign_process_batch(self, batch_size=BATCH_SIZE, campaigns=None):
        """Claim up to ``batch_size`` rows and take each one step further. Returns the rows claimed.

        Runs in the caller's transaction (committed by the cron after each batch, by queue_job at the
        job's end); the requests it queues are sent by the outbox once that transaction commits.
        """
        rows = self.env["esign.campaign.row"].sudo()._esign_claim(batch_size, campaigns)
        if rows:
            cache = rows._esign_partner_cache()
            for row in rows:
                row._esign_run(cache)
        return rows

    def _esign_run_batch(self):
        """A queue_job job: one batch of this campaign (the job's transaction commits it)."""
        rows = self._esign_process_batch(campaigns=self)
        self._esign_close_finished()
        return _("%s signer(s) processed", len(rows))

    @api.model
    def _esign_close_finished(self):
        """Running campaigns whose every row was handled are done; the sender is told."""
        self.env.flush_all()
        self.env.cr.execute("""
            SELECT c.id FROM esign_campaign c
             WHERE c.state = 'running'
               AND NOT EXISTS (SELECT 1 FROM esign_campaign_row r
                                WHERE r.campaign_id = c.id AND r.stage IN ('draft', 'contract'))
        """)
        ids = [campaign_id for campaign_id, in self.env.cr.fetchall()]
        for campaign in self.sudo().browse(ids):
            try:
                with self.env.cr.savepoint():
                    self.env.cr.execute(SQL("SELECT id FROM esign_campaign WHERE id = %s AND state = 'running' "
                                            "FOR UPDATE NOWAIT", campaign.id))
                    if not self.env.cr.fetchone():
                        continue
                    campaign.invalidate_recordset()
                    campaign.with_context(esign_campaign_system=True).write(
                        {"state": "done", "done_at": fields.Datetime.now()})
                    campaign._esign_post_summary()
            except Exception as error:  # noqa: BLE001 another worker closes it, or the next run does
                if getattr(error, "pgcode", None) not in ("40001", "40P01", "55P03"):
                    raise
        return ids

    def _esign_post_summary(self):
        self.ensure_one()
        body = _("All %(count)s signer(s) handled: %(out)s sent for signature, %(failed)s not sent or failed, "
                 "%(cancelled)s cancelled.", count=self.row_count,
                 out=self.queued_count + self.sent_count + self.signed_count + self.refused_count,
                 failed=self.failed_count, cancelled=self.cancelled_count)
        if self.failed_count:
            body = Markup("%s%s") % (body, self.failure_html)
        self.message_post(body=body, subtype_xmlid="mail.mt_comment", partner_ids=self.user_id.partner_id.ids,
                          author_id=self.env.ref("base.partner_root").id)

    @api.model
    def _cron_esign_campaign(self, batch_size=BATCH_SIZE, time_budget=TIME_BUDGET):
        """Process campaign rows in committed batches until none is left or ``time_budget`` seconds passed.

        Each batch commits on its own (not in tests, see ``_esign_commit_progress``), which also
        hands its requests to the outbox; the cron's progress says what remains, and Odoo runs the
        cron again at once while it does.
        """
        Request = self.env["esign.request"]
        deadline = time.monotonic() + time_budget
        done = 0
        while time.monotonic() < deadline:
            rows = self._esign_process_batch(batch_size)
            done += len(rows)
            Request._esign_commit_progress()
            if len(rows) < batch_size:
                break
        self._esign_close_finished()
        Request._esign_commit_progress()
        self.env.flush_all()
        self.env.cr.execute("""
            SELECT count(*) FROM esign_campaign_row r JOIN esign_campaign c ON c.id = r.campaign_id
             WHERE c.state = 'running' AND r.stage IN ('draft', 'contract')""")
        remaining = self.env.cr.fetchone()[0]
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)
        return done

    # ------------------------------------------------------------------ bulk send (selected contracts)

    @api.model
    def _esign_create_bulk(self, ready, refused, provider, source, subject, message):
        """A running bulk send for the contracts ``ready``; those ``refused`` ({agreement: problems}) are
        kept as failed rows, with their codes. Returns the campaign (its sender: the current user)."""
        check_esign_right(self.env, "send")
        user = self.env.user
        now = fields.Datetime.context_timestamp(self, fields.Datetime.now())
        campaign = self.sudo().with_context(esign_campaign_system=True).create({
            "name": _("Bulk send of %(count)s contract(s), %(when)s", count=len(ready) + len(refused),
                      when=now.strftime("%Y-%m-%d %H:%M")),
            "kind": "contracts", "state": "running", "user_id": user.id, "company_id": self.env.company.id,
            "provider_id": provider.id if provider else False, "document_source": source,
            "subject": subject, "message": message, "started_at": fields.Datetime.now(),
        })
        rows = [{"campaign_id": campaign.id, "sequence": index, "agreement_id": agreement.id,
                 "name": agreement.partner_id.name or agreement.name, "email": agreement.partner_id.email,
                 "partner_id": agreement.partner_id.id, "stage": "contract"}
                for index, agreement in enumerate(ready.sudo(), start=1)]
        rows += [{"campaign_id": campaign.id, "sequence": len(ready) + index, "agreement_id": agreement.id,
                  "name": agreement.sudo().partner_id.name or agreement.sudo().name,
                  "email": agreement.sudo().partner_id.email, "partner_id": agreement.sudo().partner_id.id,
                  "stage": "failed", "error_code": problems[0].code,
                  "error_message": checks.format_problems(problems)}
                 for index, (agreement, problems) in enumerate(refused.items(), start=1)]
        self.env["esign.campaign.row"].sudo().create(rows)
        campaign._esign_schedule()
        return campaign.with_env(self.env)

    # ------------------------------------------------------------------ smart buttons

    def action_view_rows(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_campaign_row_action")
        domain = [("campaign_id", "=", self.id)]
        state = self.env.context.get("esign_row_state")
        if state == "draft":
            domain.append(("state", "in", ("draft", "contract")))
        elif state in dict(ROW_STATES):
            domain.append(("state", "=", state))
        action["domain"] = domain
        action["context"] = {"create": False}
        action["display_name"] = self.name
        return action

    def action_view_contracts(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("agreement.agreement_action")
        action["domain"] = [("id", "in", self.row_ids.agreement_id.ids)]
        action["context"] = {"create": False}
        return action

    def action_view_requests(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("esign_connector.esign_request_action")
        action["domain"] = [("id", "in", self.row_ids.request_id.ids)]
        action["context"] = {"create": False}
        return action

