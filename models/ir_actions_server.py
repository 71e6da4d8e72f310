# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Automation without code: *Send for e-signature* and *Check e-signature status* server actions.

Bitrix24 sends a contract when a deal reaches a stage; SignX has robots that send and check and hand
the status and an error code to the next block. In Odoo the blocks are the server actions of an
automation rule (``base_automation``), so the two robots are two server action types: an
administrator picks them in a rule, no code is written.

- **Send**, on an ``agreement``, sends that contract; on any other model with a partner (a lead when
  a stage is reached, a contact, an employee), it creates the contract from the chosen contract
  template for the record's partner, links it to the record and sends it. Everything goes through
  the unattended send (:meth:`agreement._esign_send_unattended`), so a contract sent by a rule is the
  one a person would have sent, after the same checks.
- **Check** reads the status of the contract's latest request (for another model: of the contracts
  created from the record) from the provider, as the *Refresh status* button does.

A robot never raises at the rule: a problem is stored on the contract (``esign_error_code``,
``esign_error_message``) and the responsible user gets an activity, so the user's save, or the
scheduled rule's whole batch, is never undone by one contract. The contract's stored
``esign_state`` and ``esign_error_code`` are what a following rule reacts to (e.g. *when the
status becomes signed, create the onboarding task*).

Whose rights apply:

- Odoo runs a rule's actions as the user whose change triggered the rule, after checking that this
  user may write the record (or belongs to the action's groups). That is all the triggering user
  needs: the rule itself is the administrator's decision.
- The contract is created from the template by the rule (as superuser): salespeople have no right to
  create contracts, yet a rule on their leads must.
- The contract is sent *on behalf of* the responsible user (:meth:`_esign_sender`: the record's
  salesperson, else the user who triggered the rule), and the send checks that user's E-Signature
  rights, access to the contract and, in individual mode, account at the provider, exactly as if
  they had clicked *Send*: a rule cannot send as someone who could not send by hand. The same user
  is told of problems.
- Reading a status changes only what the provider's own notifications would change: it needs no
  right, and runs as superuser like the hourly refresh cron.
"""
import logging

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from . import esign_send_checks as checks
from .agreement_esign_send import DOCUMENT_SOURCES
from .esign_request import LIVE_STATES, OPEN_STATES

_logger = logging.getLogger(__name__)

ESIGN_STATES = ("esign_send", "esign_check")
# Fields naming the user responsible for a record (the salesperson of a lead or a contact; the
# assigned user of a contract with OCA agreement_legal), in order of preference.
RESPONSIBLE_FIELDS = ("user_id", "assigned_user_id")
# Fields naming a record's partner, proposed when a Send action is set on a model (a lead's customer,
# an employee's work contact); any other many2one to res.partner can be chosen.
PARTNER_FIELDS = ("partner_id", "work_contact_id")
# A status read that failed (the provider could not be reached): stored on the contract, cleared by
# the next read that works. Never set by the core, so clearing it cannot erase a request's own code.
CHECK_FAILED = "ESIGN_CHECK_FAILED"
# Contracts in these states are in the client's hands: a rule that fires again leaves them alone.
IN_PROGRESS_STATES = ("sending", "sent")


class IrActionsServer(models.Model):
    _inherit = "ir.actions.server"

    state = fields.Selection(
        selection_add=[("esign_send", "Send for e-signature"), ("esign_check", "Check e-signature status")],
        ondelete={"esign_send": "cascade", "esign_check": "cascade"})
    esign_provider_id = fields.Many2one(
        "esign.provider", string="E-Signature Provider", ondelete="restrict",
        help="Empty: the default provider of the contract's company (Settings > E-Signature).")
    esign_document_source = fields.Selection(
        DOCUMENT_SOURCES, string="Document to Sign", compute="_compute_esign_document_source",
        store=True, readonly=False)
    esign_subject = fields.Char(
        string="E-Signature Subject",
        help="Placeholders such as {{ object.name }} are rendered from the contract. Empty: \"Please sign: "
        "<contract>\".")
    esign_message = fields.Text(
        string="E-Signature Message", help="Sent to the signers; placeholders are rendered from the contract.")
    esign_template_id = fields.Many2one(
        "agreement", string="Contract Template", domain=[("is_template", "=", True)], ondelete="restrict",
        help="On a model other than contracts, the contract is created from this template for the "
        "record's partner, linked to the record, then sent.")
    esign_partner_field_id = fields.Many2one(
        "ir.model.fields", string="Client Field", compute="_compute_esign_partner_field_id",
        store=True, readonly=False, ondelete="set null",
        domain="[('model_id', '=', model_id), ('ttype', '=', 'many2one'), ('relation', '=', 'res.partner')]",
        help="The field of the record that names the client the contract is made for. Empty on contacts: "
        "the contact itself.")

    # ------------------------------------------------------------------ configuration

    @api.depends("state")
    def _compute_esign_document_source(self):
        for action in self:
            if action.state != "esign_send":
                action.esign_document_source = False
            elif not action.esign_document_source:
                action.esign_document_source = "auto"

    @api.depends("state", "model_id")
    def _compute_esign_partner_field_id(self):
        Fields = self.env["ir.model.fields"].sudo()
        for action in self:
            if action.state != "esign_send" or action.model_id.model in (False, "agreement", "res.partner"):
                action.esign_partner_field_id = False
                continue
            if action.esign_partner_field_id.model_id == action.model_id:
                continue
            candidates = Fields.search([
                ("model_id", "=", action.model_id.id), ("ttype", "=", "many2one"),
                ("relation", "=", "res.partner"), ("store", "=", True)])
            preferred = [field for name in PARTNER_FIELDS for field in candidates if field.name == name]
            action.esign_partner_field_id = preferred[0] if preferred else candidates[:1]

    @api.depends("state")
    def _compute_available_model_ids(self):
        """Only models whose records have a partner can be sent for e-signature."""
        super()._compute_available_model_ids()
        esign_actions = self.filtered(lambda action: action.state in ESIGN_STATES)
        if esign_actions:
            partner_models = self.env["ir.model.fields"].sudo().search([
                ("ttype", "=", "many2one"), ("relation", "=", "res.partner"), ("store", "=", True),
            ]).model_id.filtered(lambda model: not model.transient)
            partner_models |= self.env["ir.model"]._get("res.partner")
            for action in esign_actions:
                # _origin: in a form (a new record) the models are new records of the saved ones
                action.available_model_ids = action.available_model_ids._origin & partner_models

    @api.depends("esign_template_id")
    def _compute_name(self):
        """The name an automation rule shows for the action (base_automation names its actions)."""
        super()._compute_name()
        for action in self.filtered(lambda a: a.base_automation_id and a.state == "esign_send"
                                    and a.esign_template_id):
            action.name = self.env._("Send for e-signature: %(template)s", template=action.esign_template_id.name)

    @api.constrains("state", "model_id", "esign_template_id", "esign_partner_field_id")
    def _check_esign_action(self):
        """Refuse, when the action is saved, what could never send: better than a failure per record."""
        _ = self.env._
        for action in self.filtered(lambda a: a.state == "esign_send"):
            model = action.model_id.model
            if model == "agreement":
                continue
            if not action.esign_template_id.is_template:
                raise ValidationError(_(
                    "The action %(action)s runs on %(model)s: choose the contract template to create the "
                    "contract from.", action=action.name, model=action.model_id.name))
            field = action.esign_partner_field_id
            if not field and model != "res.partner":
                raise ValidationError(_(
                    "The action %(action)s runs on %(model)s: choose the field that names the client.",
                    action=action.name, model=action.model_id.name))
            if field and (field.model_id != action.model_id or field.ttype != "many2one"
                          or field.relation != "res.partner"):
                raise ValidationError(_(
                    "The client field of %(action)s must be a field of %(model)s that names a contact.",
                    action=action.name, model=action.model_id.name))

    # ------------------------------------------------------------------ send

    def _run_action_esign_send_multi(self, eval_context=None):
        """Send each record's contract; problems are stored and told, never raised (module docstring).

        Returns a notification summing up what was sent, shown when the action is run by hand from
        the *Action* menu of a list (an automation rule ignores it).
        """
        eval_context = eval_context or {}
        records = eval_context.get("records") or eval_context.get("record")
        if not records or self._is_recompute():
            return False
        sent = failed = 0
        for record in records:
            problems = self._esign_send_record(record)
            if problems is None:
                continue  # already out: nothing to do
            if problems:
                failed += 1
            else:
                sent += 1
        _ = self.env._
        if failed:
            message = _("%(sent)s contract(s) queued for e-signature, %(failed)s not sent: the reasons are "
                        "on the contracts and in the activities.", sent=sent, failed=failed)
        else:
            message = _("%(sent)s contract(s) queued for e-signature.", sent=sent)
        return {"type": "ir.actions.client", "tag": "display_notification",
                "params": {"type": "warning" if failed else "success", "message": message, "sticky": bool(failed)}}

    def _esign_send_record(self, record):
        """Send the contract of one record. Returns its problems (``[]``: queued), or None when the
        contract was left alone (already being sent, out or, for a contract, signed).

        Runs in a savepoint: a failure nobody foresaw is logged and told like any problem, and
        undoes only this record's work.
        """
        self.ensure_one()
        partner = self._esign_record_partner(record)
        sender = self._esign_sender(record, partner)
        try:
            with self.env.cr.savepoint():
                agreement, problems = self._esign_contract_for(record, partner, sender)
                if problems is None or problems:
                    return problems
                if agreement.esign_state in LIVE_STATES:
                    return None  # a rule that fires again must not send it twice
                # The contract is sudo: the subject and message are rendered with any placeholder, as
                # only administrators write server actions; the checks are the sender's (``user``).
                results = agreement._esign_send_unattended(
                    provider=self.esign_provider_id, source=self.esign_document_source or "auto",
                    subject=self.esign_subject or "", message=self.esign_message or "", user=sender)
                problems = results[agreement]
        except psycopg2.OperationalError:
            raise  # a serialisation failure: Odoo retries the whole transaction
        except Exception as error:  # noqa: BLE001 - the rule must not fail because of one record
            _logger.exception("E-signature: action %s failed on %s", self.name, record)
            problems = [checks.SendProblem("ESIGN_NOT_SENT", self.env._(
                "%(record)s could not be sent for e-signature: %(error)s",
                record=record.sudo().display_name, error=error))]
            if record._name == "agreement":
                record.sudo().write({"esign_error_code": problems[0].code,
                                     "esign_error_message": problems[0].message})
                record.sudo()._esign_notify_send_problems(problems, sender)
            else:
                self._esign_tell_origin(record, problems, sender)
            return problems
        if problems:
            _logger.info("E-signature: action %s did not send %s: %s", self.name, agreement.display_name,
                         ", ".join(problem.code for problem in problems))
            agreement._esign_notify_send_problems(problems, sender)
        return problems

    def _esign_contract_for(self, record, partner, sender):
        """The contract to send for ``record``: the record itself, or one made from the template.

        Returns ``(agreement, problems)``: ``problems`` is None when a contract made from this record
        for this partner is already being sent or out (a rule that fires again — the lead saved twice
        in its stage — must not send the client a second contract), and lists why no contract could be
        made otherwise (told on the record). A contract made from the record earlier and never sent
        (its send failed, e.g. the client had no e-mail address) is sent again rather than copied
        once more.
        """
        _ = self.env._
        Agreement = self.env["agreement"].sudo()
        if record._name == "agreement":
            return record.sudo(), []
        template = self.esign_template_id.sudo()
        problems = []
        if not partner:
            problems.append(checks.SendProblem("ESIGN_NO_PARTNER", _(
                "%(record)s has no client (%(field)s) to make a contract for.", record=record.sudo().display_name,
                field=self.esign_partner_field_id.field_description or _("Contact"))))
        elif not template.active or not template.is_template:
            problems.append(checks.SendProblem("ESIGN_NO_TEMPLATE", _(
                "The contract template of the action %(action)s is missing or no longer a template.",
                action=self.name)))
        if problems:
            self._esign_tell_origin(record, problems, sender)
            return Agreement, problems
        earlier = Agreement.search([
            ("esign_origin_ref", "=", f"{record._name},{record.id}"), ("partner_id", "=", partner.id),
            ("esign_template_id", "=", template.id), ("is_template", "=", False),
        ], order="id desc")
        if earlier.filtered(lambda agreement: agreement.esign_state in IN_PROGRESS_STATES):
            return earlier, None
        never_sent = earlier.filtered(lambda agreement: not agreement.esign_request_ids)[:1]
        if never_sent:
            return never_sent, []
        try:
            with self.env.cr.savepoint():
                return Agreement._esign_create_from_template(template, partner, origin=record), []
        except (UserError, psycopg2.errors.UniqueViolation) as error:
            message = error.args[0] if isinstance(error, UserError) else str(error)
            problems = [checks.SendProblem("ESIGN_NOT_CREATED", _(
                "The contract could not be created from %(template)s for %(partner)s: %(error)s",
                template=template.display_name, partner=partner.display_name, error=message))]
            self._esign_tell_origin(record, problems, sender)
            return Agreement, problems

    def _esign_record_partner(self, record):
        """The client a contract is made for: the contract's partner, the contact itself, or the
        record's client field."""
        self.ensure_one()
        record = record.sudo()
        if record._name == "agreement":
            return record.partner_id
        field = self.esign_partner_field_id
        if field and field.name in record._fields:
            return record[field.name]
        return record if record._name == "res.partner" else self.env["res.partner"]

    def _esign_sender(self, record, partner):
        """Who sends (and is told): the record's responsible, else the user who triggered the rule.

        The responsible is the record's salesperson (``user_id``, or an agreement's assigned user),
        for a contract made by a rule the salesperson of the record it was made from; never the
        client's own user (an employee's ``user_id`` is the employee, who signs). Without one, the
        user who triggered the rule sends, unless that is the superuser (a scheduled rule): then the
        user who created the record. In individual mode the sender also signs for the company with
        their own account at the provider.
        """
        record = record.sudo()
        candidates = [record]
        if record._name == "agreement" and record.esign_origin_ref:
            candidates.append(record.esign_origin_ref.exists())
        for candidate in candidates:
            for name in RESPONSIBLE_FIELDS:
                field = candidate._fields.get(name)
                if not field or field.type != "many2one" or field.comodel_name != "res.users":
                    continue
                user = candidate[name]
                if user.active and user._is_internal() and user.partner_id != partner:
                    return user
        for user in (self.env.user, record.create_uid):
            if user and user._is_internal() and not user._is_superuser():
                return user
        return self.env.user

    def _esign_tell_origin(self, record, problems, user):
        """No contract to store a problem on: tell the responsible on the record itself."""
        record = record.sudo()
        text = checks.format_problems(problems)
        _logger.info("E-signature: action %s made no contract for %s: %s", self.name, record,
                     ", ".join(problem.code for problem in problems))
        summary = self.env._("Not sent for e-signature: %s", record.display_name)
        if hasattr(record, "activity_schedule"):
            record.activity_schedule("mail.mail_activity_data_todo", summary=summary, note=text, user_id=user.id)
        elif hasattr(record, "message_post"):
            record.message_post(body=f"{summary}\n{text}", subtype_xmlid="mail.mt_note")

    # ------------------------------------------------------------------ check

    def _run_action_esign_check_multi(self, eval_context=None):
        """Read from the provider where each record's contract stands (module docstring)."""
        eval_context = eval_context or {}
        records = eval_context.get("records") or eval_context.get("record")
        if not records:
            return False
        if records._name == "agreement":
            agreements = records.sudo()
        else:
            agreements = self.env["agreement"].sudo().search(
                [("esign_origin_ref", "in", [f"{record._name},{record.id}" for record in records])])
        for request in agreements.mapped("esign_request_id"):
            self._esign_check_request(request)
        return False

    def _esign_check_request(self, request):
        """Refresh one request; a read that fails is stored on the contract and told once.

        Nothing to read for a request being sent (the outbox is on it) or finished, except a signed
        one whose documents are still to download. When the provider's rate-limit window is full the
        read is left to the hourly refresh cron rather than spent on a 429.
        """
        request = request.sudo()
        due = request.provider_ref and (request.state in OPEN_STATES
                                        or (request.state == "signed" and request.documents_pending))
        if not due or request.provider_id._esign_reserve_calls(1):
            return
        agreement = request.agreement_id
        try:
            with self.env.cr.savepoint():
                ok, message = request._esign_refresh()
        except psycopg2.OperationalError:
            raise  # a serialisation failure: Odoo retries the whole transaction
        except Exception as error:  # noqa: BLE001 - as the refresh cron: one request never stops the rule
            _logger.exception("E-signature: status check of %s failed", request.name)
            ok, message = False, self.env._("Status read failed: %s", error)
        if ok:
            if agreement.esign_error_code == CHECK_FAILED:
                agreement.write({"esign_error_code": False, "esign_error_message": False})
            return
        told = agreement.esign_error_code == CHECK_FAILED  # a provider down for hours: one activity
        agreement.write({"esign_error_code": CHECK_FAILED, "esign_error_message": message})
        if not told:
            agreement.activity_schedule(
                "esign_connector.mail_activity_esign_followup",
                summary=self.env._("E-signature status not read: %s", agreement.display_name),
                note=message, user_id=request.user_id.id)
