# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Sending a contract without the dialog: what bulk sending, campaigns and automation share.

The dialog, a bulk send, a CSV campaign and an automation rule all end in the same outbox call
(:meth:`esign.request._esign_queue_send`) after the same checks; this file gives them the same
defaults (document, signers, message) so that a contract sent by a robot is the one a person would
have sent. Failures are never raised at a robot: they come back as codes and messages, stored on
the contract, and the responsible user is told.
"""
import logging
import uuid

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from . import esign_send_checks as checks

_logger = logging.getLogger(__name__)

REPORT_XMLID = "esign_connector.action_report_agreement_contract"
# What a salesperson (not a mail template editor) may write as {{ object.<...> }} in a subject or
# message: plain reads of the contract, nothing that evaluates code (Odoo's rule for safe placeholders).
PLACEHOLDER_PATHS = (
    "code", "name", "partner_id.name", "partner_id.commercial_partner_id.name", "company_id.name",
    "agreement_type_id.name", "start_date", "end_date", "signature_date", "description",
)
DOCUMENT_SOURCES = [
    ("auto", "The PDF attached to the contract, else the contract printed by Odoo"),
    ("attachment", "The PDF attached to the contract"),
    ("report", "The contract printed by Odoo"),
]


class AgreementEsignSend(models.Model):
    _inherit = "agreement"

    esign_error_code = fields.Char(
        string="E-Signature Error Code", readonly=True, copy=False,
        help="Why the last automatic or bulk send of this contract did not go (a stable code, see the "
        "README), or why its request failed.")
    esign_error_message = fields.Text(string="E-Signature Error", readonly=True, copy=False)
    esign_template_id = fields.Many2one(
        "agreement", string="Made From Template", readonly=True, copy=False, index="btree_not_null",
        help="The contract template an automation rule or a campaign made this contract from.")
    esign_origin_ref = fields.Reference(
        selection="_esign_origin_models", string="Created From", readonly=True, copy=False,
        help="The record (e.g. a lead) an automation rule or a campaign made this contract for.")

    @api.model
    def _esign_origin_models(self):
        return [(model.model, model.name) for model in self.env["ir.model"].sudo().search([])]

    def mail_allowed_qweb_expressions(self):
        """Let salespeople put the contract's own fields in a message (see PLACEHOLDER_PATHS)."""
        allowed = tuple(f"object.{path}" for path in PLACEHOLDER_PATHS if path.split(".")[0] in self._fields)
        return super().mail_allowed_qweb_expressions() + allowed

    # ------------------------------------------------------------------ defaults

    def _esign_attached_pdf(self):
        self.ensure_one()
        return self.env["ir.attachment"].search([
            ("res_model", "=", "agreement"), ("res_id", "=", self.id), ("res_field", "=", False),
            ("mimetype", "=", "application/pdf")], order="id desc", limit=1)

    def _esign_document(self, source="auto"):
        """The attachment to send: the PDF attached to the contract, or the contract printed now."""
        self.ensure_one()
        if source in ("auto", "attachment"):
            pdf = self._esign_attached_pdf()
            if pdf or source == "attachment":
                return pdf
        report = self.env.ref(REPORT_XMLID).sudo()
        pdf, _type = report._render_qweb_pdf(REPORT_XMLID, [self.id])
        # sudo: attaching to a contract needs write access on it, which salespeople do not have;
        # the contract itself is checked readable by the sender before anything is sent.
        return self.env["ir.attachment"].sudo().create({
            "name": f"{self.code or self.name}.pdf".replace("/", "-"),
            "raw": pdf,
            "mimetype": "application/pdf",
            "res_model": "agreement",
            "res_id": self.id,
        })

    def _esign_client_signers(self):
        """The client's signer line, from the contract's partner."""
        self.ensure_one()
        partner = self.partner_id
        if not partner:
            return []
        return [{
            "partner_id": partner.id, "name": partner.name, "email": partner.email or False,
            "phone": partner.phone or partner.mobile or False, "role": "client", "sequence": 1,
            "action": "sign",
        }]

    def _esign_render(self, text):
        """``text`` with Odoo's inline placeholders (``{{ object.name }}``) rendered for this contract.

        Rendered with the caller's rights: Odoo's template editor rules decide which expressions a
        user may write.
        """
        self.ensure_one()
        if not text or "{{" not in text:
            return text or ""
        rendered = self.env["mail.render.mixin"]._render_template(
            text, "agreement", self.ids, engine="inline_template")
        return rendered[self.id]

    # ------------------------------------------------------------------ send without the dialog

    def _esign_send_unattended(self, provider=None, source="auto", subject="", message="", user=None):
        """Send each contract as the dialog would, never raising: returns ``{agreement: problems}``.

        Problems are :class:`~.esign_send_checks.SendProblem`; an empty list means the request is
        queued (sent once this transaction commits). The first problem is stored on the contract.
        """
        user = user or self.env.user
        results = {}
        for agreement in self:
            problems = agreement._esign_send_one_unattended(provider, source, subject, message, user)
            results[agreement] = problems
            agreement.sudo().write({
                "esign_error_code": problems[0].code if problems else False,
                "esign_error_message": checks.format_problems(problems) if problems else False,
            })
        return results

    def _esign_send_one_unattended(self, provider, source, subject, message, user):
        self.ensure_one()
        Request = self.env["esign.request"]
        provider = provider or self.esign_provider_id
        problems = checks.agreement_problems(self, user) + checks.provider_problems(provider, self, user)
        if problems:
            return problems
        savepoint = self.env.cr.savepoint()
        try:
            document = self._esign_document(source)
            signers = self._esign_client_signers()
            problems = Request._esign_send_problems(self, provider, user, document, signers)
            if not problems:
                Request._esign_queue_send(self, provider, document, signers, user=user,
                                          subject=self._esign_render(subject) or _("Please sign: %s", self.name),
                                          message=self._esign_render(message))
        except checks.SendRefused as error:  # e.g. queued meanwhile by someone else
            problems = error.problems
        except UserError as error:  # e.g. a placeholder the user may not render
            problems = [checks.SendProblem("ESIGN_NOT_SENT", str(error.args[0]))]
        except Exception:
            savepoint.close(rollback=True)
            raise
        savepoint.close(rollback=bool(problems))  # a contract printed for nothing is not kept
        return problems

    def _esign_notify_send_problems(self, problems, user):
        """Tell the responsible user that an automatic send did not go (an activity on the contract)."""
        self.ensure_one()
        self.sudo().activity_schedule(
            "esign_connector.mail_activity_esign_followup",
            summary=_("Not sent for e-signature: %s", self.display_name),
            note=checks.format_problems(problems),
            user_id=user.id)

    @api.model
    def _esign_create_from_template(self, template, partner, origin=None):
        """A contract for ``partner`` made from the contract template ``template``, linked to ``origin``."""
        if not template.is_template:
            raise UserError(_("%s is not a contract template.", template.display_name))
        # Unique per company and client (agreement's own rule) however often it is called.
        code = f"{template.code}-{fields.Date.context_today(self):%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"
        agreement = template.sudo().copy({
            "partner_id": partner.id,
            "code": code,
            "name": f"{template.name} – {partner.name}",
            "is_template": False,
            "esign_template_id": template.id,
            "esign_origin_ref": f"{origin._name},{origin.id}" if origin else False,
        })
        if origin is not None and hasattr(type(origin), "message_post"):
            origin.sudo().message_post(body=_("Contract %s created for e-signature.", agreement.display_name),
                                       subtype_xmlid="mail.mt_note")
        return agreement.with_env(self.env)
