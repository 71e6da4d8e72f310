# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Everything that must be true before a contract may go to a provider, with stable codes.

One function answers for the send dialog, the server-side send (whatever the caller sent by RPC)
and, later, bulk and automated sending: it returns *every* problem, each with a code that does not
change between versions (documented in the README) and a message in the user's language that
names the record and what to fix.
"""
import collections

from odoo.exceptions import AccessError, UserError
from odoo.tools import email_normalize

from .esign_access import has_esign_right
from .esign_request import LIVE_STATES

SendProblem = collections.namedtuple("SendProblem", "code message")


class SendRefused(UserError):
    """A send refused before anything reached a provider; ``problems`` keep their codes."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))


def agreement_problems(agreement, user):
    """Problems of the contract itself, whoever signs it."""
    problems = []
    env = agreement.env(user=user, su=False)
    _ = agreement.env._
    if not has_esign_right(env, "send"):
        problems.append(SendProblem("ESIGN_NO_RIGHTS", _(
            "%(user)s is not allowed to send contracts for e-signature.", user=user.name)))
    try:
        agreement.with_env(env).check_access("read")
    except AccessError:
        problems.append(SendProblem("ESIGN_NO_RIGHTS", _(
            "%(user)s cannot access the contract %(contract)s.", user=user.name,
            contract=agreement.sudo().display_name)))
        return problems
    if agreement.is_template:
        problems.append(SendProblem("ESIGN_TEMPLATE", _(
            "%(contract)s is a contract template: create a contract from it and send that one.",
            contract=agreement.display_name)))
    if agreement.agreement_type_id.esign_disabled:
        problems.append(SendProblem("ESIGN_TYPE_DISABLED", _(
            "E-signature is disabled for contracts of type %(type)s (%(contract)s).",
            type=agreement.agreement_type_id.name, contract=agreement.display_name)))
    if not agreement.partner_id:
        problems.append(SendProblem("ESIGN_NO_PARTNER", _(
            "The contract %(contract)s has no partner: set the client on the contract.",
            contract=agreement.display_name)))
    live = agreement.sudo().esign_request_ids.filtered(lambda r: r.state in LIVE_STATES)
    if live:
        problems.append(SendProblem("ESIGN_ALREADY_OUT", _(
            "The contract %(contract)s is already %(state)s (%(request)s): refresh its status, or cancel "
            "that request first.", contract=agreement.display_name,
            state=dict(live._fields["state"]._description_selection(agreement.env))[live[0].state].lower(),
            request=live[0].name)))
    return problems


def provider_problems(provider, agreement, user):
    """Problems of the provider for this contract and this sender."""
    _ = agreement.env._
    if not provider:
        return [SendProblem("ESIGN_NO_PROVIDER", _("Choose an e-signature provider."))]
    provider = provider.sudo()
    company = agreement.company_id or agreement.env.company
    if not provider.active or provider.state == "disabled":
        return [SendProblem("ESIGN_PROVIDER_DISABLED", _(
            "The e-signature provider %(provider)s is disabled.", provider=provider.name))]
    if provider.company_id != company:
        return [SendProblem("ESIGN_PROVIDER_COMPANY", _(
            "The e-signature provider %(provider)s belongs to %(provider_company)s, the contract to "
            "%(company)s.", provider=provider.name, provider_company=provider.company_id.name,
            company=company.name))]
    problems = []
    missing = provider._esign_missing_settings()
    if missing:
        problems.append(SendProblem("ESIGN_PROVIDER_INCOMPLETE", _(
            "The e-signature provider %(provider)s is not fully configured. Missing: %(missing)s. Ask an "
            "administrator to complete it in Settings.", provider=provider.name, missing=", ".join(missing))))
    problems.extend(provider._esign_account_problems(user))
    return problems


def document_problems(document, agreement, user):
    """The document must be a PDF of *this* contract that the sender may read."""
    _ = agreement.env._
    if not document:
        return [SendProblem("ESIGN_NO_DOCUMENT", _(
            "There is no document to sign for %(contract)s: attach a PDF or print the contract.",
            contract=agreement.display_name))]
    sudo_document = document.sudo().exists()
    owned = sudo_document and sudo_document.res_model == "agreement" and sudo_document.res_id == agreement.id \
        and not sudo_document.res_field
    if owned:
        try:
            document.with_user(user).check_access("read")
        except AccessError:
            owned = False
    if not owned:
        return [SendProblem("ESIGN_FOREIGN_DOCUMENT", _(
            "The chosen document is not a file of the contract %(contract)s: only a PDF attached to "
            "this contract can be sent.", contract=agreement.display_name))]
    if not (sudo_document.raw or b"").startswith(b"%PDF"):
        return [SendProblem("ESIGN_NOT_PDF", _(
            "The document %(document)s is not a PDF.", document=sudo_document.name))]
    return []


def signer_problems(env, signers, phone_required=False):
    """Problems of the signer lines (dicts with name, email, phone, role, sequence).

    ``phone_required``: the provider sends every signer a code by SMS, so each needs a phone number in
    international form (``+`` and the country code).
    """
    _ = env._
    problems = []
    clients = [s for s in signers if s.get("role") == "client"]
    if not clients:
        problems.append(SendProblem("ESIGN_NO_CLIENT", _("Add the client as a signer.")))
    for signer in signers:
        name = signer.get("name") or _("A signer")
        if not signer.get("email"):
            problems.append(SendProblem("ESIGN_NO_EMAIL", _(
                "%(name)s has no e-mail address: add it to the signer (or to the contact).", name=name)))
        elif not email_normalize(signer["email"]):
            problems.append(SendProblem("ESIGN_BAD_EMAIL", _(
                "The e-mail address of %(name)s is not valid: %(email)s", name=name, email=signer["email"])))
        if phone_required:
            phone = "".join(ch for ch in (signer.get("phone") or "") if ch.isdigit() or ch == "+")
            if not phone:
                problems.append(SendProblem("ESIGN_NO_PHONE", _(
                    "%(name)s has no phone number, and the provider sends the signing code by SMS: add a "
                    "mobile number to the signer (or to the contact).", name=name)))
            elif not (phone.startswith("+") and 8 <= len(phone) <= 16):
                problems.append(SendProblem("ESIGN_BAD_PHONE", _(
                    "The phone number of %(name)s must be in international form (+ and the country code): %(phone)s",
                    name=name, phone=signer.get("phone"))))
    companies = [s for s in signers if s.get("role") == "company"]
    if clients and companies and max(s.get("sequence") or 0 for s in clients) \
            >= min(s.get("sequence") or 0 for s in companies):
        problems.append(SendProblem("ESIGN_SIGNING_ORDER", _(
            "The client signs first: the company signer cannot sign before or with the client.")))
    return problems


def company_signer_problems(given, expected, provider):
    """The company signs through the provider's mode: its signer cannot be replaced or dropped."""
    if not expected:
        return []
    _ = provider.env._
    given = [s for s in given if s.get("role") == "company"]
    if len(given) > 1 or (given and (given[0].get("email") or "").strip().lower()
                          != (expected.get("email") or "").strip().lower()):
        who = expected.get("name") or expected.get("email")
        if provider.account_mode == "central":
            text = _("%(provider)s signs for the company through the representative %(who)s: the company "
                     "signer cannot be replaced.", provider=provider.name, who=who)
        else:
            text = _("With individual accounts, the sender signs for the company (%(who)s): the company "
                     "signer cannot be replaced.", who=who)
        return [SendProblem("ESIGN_COMPANY_SIGNER", text)]
    return []


def format_problems(problems):
    """One message listing every problem, for a :class:`UserError`."""
    seen, lines = set(), []
    for problem in problems:
        if problem.message not in seen:
            seen.add(problem.message)
            lines.append(problem.message)
    return "\n".join(lines)
