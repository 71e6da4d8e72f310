# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Send selected contracts for e-signature: one dialog, checked first, then sent in the background.

The dialog shows, before anything happens, which contracts will go and which will not, with the
send's own codes (README, "Pre-send check codes"). *Send* checks them again on the server — the
selection may come by RPC, and things change while a dialog is open — and hands the ones that pass
to a bulk send (:mod:`..models.esign_campaign`), whose cron or jobs queue one request per contract
in committed batches; the outbox then calls the provider. Nothing is printed or sent inside the
click, so selecting a few hundred contracts does not hold a worker for minutes.
"""
from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

from ..models import esign_send_checks as checks
from ..models.agreement_esign_send import DOCUMENT_SOURCES
from ..models.esign_access import check_esign_right
from ..models.esign_campaign_row import MAX_ROWS


class EsignBulkSendWizard(models.TransientModel):
    _name = "esign.bulk.send.wizard"
    _description = "Send selected contracts for e-signature"

    agreement_ids = fields.Many2many("agreement", string="Contracts", required=True)
    provider_id = fields.Many2one(
        "esign.provider", string="Provider", domain="[('state', '!=', 'disabled')]",
        help="Empty: each contract's default provider (the one of its company).")
    document_source = fields.Selection(DOCUMENT_SOURCES, string="Document", required=True, default="auto")
    subject = fields.Char(default=lambda self: self.env._("Please sign: {{ object.name }}"),
                          help="{{ object.<field> }} is replaced by each contract's field, e.g. {{ object.name }}.")
    message = fields.Text(help="For the signers. {{ object.<field> }} is replaced by each contract's field.")
    line_ids = fields.One2many("esign.bulk.send.wizard.line", "wizard_id", string="Check")
    ready_count = fields.Integer(string="Will Be Sent", compute="_compute_summary")
    refused_count = fields.Integer(string="Will Not Be Sent", compute="_compute_summary")
    summary = fields.Text(compute="_compute_summary")

    @api.depends("line_ids.ready", "line_ids.code")
    def _compute_summary(self):
        for wizard in self:
            ready = wizard.line_ids.filtered("ready")
            refused = wizard.line_ids - ready
            wizard.ready_count, wizard.refused_count = len(ready), len(refused)
            codes = {}
            for line in refused:
                codes[line.code] = codes.get(line.code, 0) + 1
            text = _("%(ready)s of %(total)s contract(s) will be sent.", ready=len(ready), total=len(wizard.line_ids))
            if refused:
                text += " " + _("%(count)s will not: %(codes)s.", count=len(refused),
                                codes=", ".join(f"{code} ({count})" for code, count in sorted(codes.items())))
            wizard.summary = text

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        check_esign_right(self.env, "send")
        context = self.env.context
        if "agreement_ids" not in values and context.get("active_model") == "agreement" and context.get("active_ids"):
            values["agreement_ids"] = [fields.Command.set(context["active_ids"])]
        ids = self._esign_ids_from_commands(values.get("agreement_ids") or [])
        if len(ids) > MAX_ROWS:
            raise UserError(_("Select at most %(max)s contracts to send at once (%(count)s selected).",
                              max=MAX_ROWS, count=len(ids)))
        if ids and "line_ids" in fields_list and not self.env.context.get("esign_bulk_creating"):
            values["line_ids"] = [fields.Command.create(line) for line in self._esign_lines(
                self.env["agreement"].browse(ids), self.env["esign.provider"].browse(values.get("provider_id")),
                values.get("document_source") or "auto")]
        return values

    @api.model_create_multi
    def create(self, vals_list):
        """The check is made with the values given (provider, document), not with the defaults."""
        for vals in vals_list:
            vals.pop("line_ids", None)  # computed here, never taken from the caller
        wizards = super(EsignBulkSendWizard, self.with_context(esign_bulk_creating=True)).create(vals_list)
        for wizard in wizards:
            wizard.line_ids = [fields.Command.create(line) for line in wizard._esign_lines(
                wizard.agreement_ids, wizard.provider_id, wizard.document_source)]
        return wizards.with_env(self.env)

    @staticmethod
    def _esign_ids_from_commands(commands):
        ids = []
        for command in commands:
            if command[0] == fields.Command.SET:
                ids = list(command[2])
            elif command[0] == fields.Command.LINK:
                ids.append(command[1])
        return list(dict.fromkeys(ids))

    @api.onchange("provider_id", "document_source", "agreement_ids")
    def _onchange_check(self):
        self.line_ids = [fields.Command.clear()] + [fields.Command.create(line) for line in self._esign_lines(
            self.agreement_ids._origin, self.provider_id._origin, self.document_source)]

    # ------------------------------------------------------------------ checks

    @api.model
    def _esign_problems(self, agreement, provider, source):
        """The send's own checks for one contract, without any side effect (nothing printed)."""
        user = self.env.user
        contract = agreement.sudo()  # read for the check only: the checks themselves act as ``user``
        problems = checks.agreement_problems(contract, user)
        if any(p.code == "ESIGN_NO_RIGHTS" for p in problems):
            return problems
        provider = provider or contract.with_company(contract.company_id or self.env.company).esign_provider_id
        document = contract._esign_attached_pdf() if source in ("auto", "attachment") else self.env["ir.attachment"]
        problems = self.env["esign.request"]._esign_send_problems(
            contract, provider, user, document, contract._esign_client_signers())
        if source == "report" or (source == "auto" and not document):  # printed when it is sent
            problems = [p for p in problems if p.code != "ESIGN_NO_DOCUMENT"]
        return problems

    @api.model
    def _esign_lines(self, agreements, provider, source):
        """One line per contract, those that will not go first (what the user has to look at)."""
        lines = []
        for agreement in agreements:
            problems = self._esign_problems(agreement, provider, source)
            readable = agreement.has_access("read")  # another company's contract (by RPC) is not named
            lines.append({
                "agreement_id": agreement.id if readable else False,
                "agreement_name": agreement.sudo().display_name if readable else _("Contract #%s", agreement.id),
                "ready": not problems,
                "code": problems[0].code if problems else False,
                "message": checks.format_problems(problems) if problems else False,
            })
        return sorted(lines, key=lambda line: line["ready"])

    # ------------------------------------------------------------------ send

    def action_send(self):
        """Check each contract again, then hand those that pass to a bulk send in the background."""
        self.ensure_one()
        if self.create_uid != self.env.user and not self.env.su:
            raise AccessError(_("This dialog was opened by someone else."))
        check_esign_right(self.env, "send")
        agreements = self.agreement_ids
        if len(agreements) > MAX_ROWS:
            raise UserError(_("Select at most %s contracts to send at once.", MAX_ROWS))
        ready, refused, hidden = self.env["agreement"], {}, []
        for agreement in agreements:
            problems = self._esign_problems(agreement, self.provider_id, self.document_source)
            if not problems:
                ready |= agreement
            elif agreement.has_access("read"):
                refused[agreement] = problems
            else:  # not the user's to see: refused, and kept out of the bulk send's record
                hidden.extend(problems)
        if not ready:
            problems = [p for found in refused.values() for p in found] + hidden
            raise UserError(_("None of the selected contracts can be sent:\n%s", checks.format_problems(problems)))
        campaign = self.env["esign.campaign"]._esign_create_bulk(
            ready, refused, self.provider_id, self.document_source, self.subject, self.message)
        message = _("%s contract(s) are being sent for e-signature in the background.", len(ready))
        if refused or hidden:
            message += " " + _("%s will not be sent: see the bulk send for why.", len(refused) + len(hidden))
        return {
            "type": "ir.actions.client", "tag": "display_notification",
            "params": {
                "type": "success" if not (refused or hidden) else "warning", "sticky": bool(refused or hidden),
                "message": message,
                "next": {"type": "ir.actions.act_window", "res_model": "esign.campaign", "res_id": campaign.id,
                         "views": [[False, "form"]], "target": "current", "name": campaign.name},
            },
        }


class EsignBulkSendWizardLine(models.TransientModel):
    _name = "esign.bulk.send.wizard.line"
    _description = "Contract checked for a bulk send"
    _order = "ready, id"

    wizard_id = fields.Many2one("esign.bulk.send.wizard", required=True, ondelete="cascade")
    agreement_id = fields.Many2one("agreement", string="Contract", readonly=True)
    agreement_name = fields.Char(string="Contract Name", readonly=True)
    ready = fields.Boolean(string="Will Be Sent", readonly=True)
    status = fields.Selection([("ready", "Will be sent"), ("refused", "Not sent")], compute="_compute_status")
    code = fields.Char(readonly=True)
    message = fields.Text(string="Why Not", readonly=True)

    @api.depends("ready")
    def _compute_status(self):
        for line in self:
            line.status = "ready" if line.ready else "refused"
