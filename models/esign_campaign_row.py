# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""One signer of a campaign: a line of the uploaded file, then its contract and its request.

Why a row of its own, with its own progress (``stage``): a campaign of a thousand signers is sent by
background workers in many committed batches. Each row remembers how far it got — its contract,
then its request — so a worker that dies, a restart or a second worker only ever continues a row,
never repeats it: a row's contract is created and linked in the same transaction, a row links to
at most one request (unique), and the database allows one live request per contract.

The file is read here too (:func:`read_signer_file`): CSV with Python's ``csv`` (UTF-8, with or
without BOM, delimiter sniffed) or XLSX with ``openpyxl``; the first line names the columns.
Columns other than the signer's own (name, e-mail, phone, company, tax id) are kept as they are and
can be used in the campaign's subject and message as ``{{ row.<column> }}``: a plain substitution
of the text from the file, never evaluated (see :func:`render_row_text`).
"""
import contextlib
import csv
import datetime
import io
import json
import logging
import re
import unicodedata

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import SQL, email_normalize, escape_psql

from . import esign_send_checks as checks
from .esign_request import LIVE_STATES

_logger = logging.getLogger(__name__)

MAX_ROWS = 1000
MAX_FILE_BYTES = 5 * 1024 * 1024  # a thousand signers with a few columns is ~100 kB
MAX_COLUMNS = 100
MAX_CELL_LENGTH = 2000
MAX_ROW_ATTEMPTS = 3  # unexpected errors (a bug, a lost connection) before a row is given up

# The signer's own columns, by their normalised header (see column_key); anything else is an extra
# column, usable in the message.
STANDARD_COLUMNS = {
    "name": {"name", "full_name", "signer", "signer_name", "contact", "contact_name", "nom_complet",
             "imie_i_nazwisko", "jmeno_a_prijmeni"},
    "first_name": {"first_name", "firstname", "given_name", "prenom", "imie", "jmeno"},
    "last_name": {"last_name", "lastname", "surname", "family_name", "nom_de_famille", "nazwisko", "prijmeni"},
    "email": {"email", "e_mail", "mail", "email_address", "e_mail_address", "courriel", "adres_e_mail"},
    "phone": {"phone", "mobile", "telephone", "tel", "phone_number", "mobile_phone", "telefon", "portable"},
    "company": {"company", "company_name", "organisation", "organization", "societe", "firma", "nazwa_firmy",
                "spolecnost"},
    "vat": {"vat", "vat_number", "tax_id", "nip", "ico", "dic", "tva", "numero_tva", "siren", "siret"},
}
ALIASES = {alias: key for key, aliases in STANDARD_COLUMNS.items() for alias in aliases}
# Always available in the message, whatever the file's columns.
ROW_FIELDS = ("name", "email", "phone", "company", "vat")
ROW_PLACEHOLDER = re.compile(r"\{\{\s*row\.(\w+)\s*\}\}")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MARKER = "\x1e"  # stands for a row value while the contract's placeholders are rendered

STAGES = [
    ("draft", "To send"),
    ("contract", "Contract ready"),
    ("queued", "Request queued"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
]
ROW_STATES = [
    ("draft", "To send"),
    ("contract", "Contract ready"),
    ("queued", "Queued"),
    ("sent", "Sent"),
    ("signed", "Signed"),
    ("refused", "Refused"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
]
REQUEST_STATE_TO_ROW = {
    "sending": "queued", "sent": "sent", "signed": "signed", "refused": "refused",
    "cancelled": "cancelled", "expired": "failed", "error": "failed",
}
SIGNER_FIELDS = frozenset({"name", "email", "phone", "company_name", "vat"})
# Written by the campaign's own processing only (superuser), never by a user.
PROTECTED_FIELDS = frozenset({
    "campaign_id", "sequence", "extra_json", "partner_id", "agreement_id", "request_id", "stage",
    "error_code", "error_message", "attempts",
})


# ---------------------------------------------------------------------------------------- reading a file

def column_key(label):
    """The placeholder name of a column header: lower case, accents dropped, words joined by ``_``.

    ``"Monthly fee"`` -> ``monthly_fee``, ``"E-mail"`` -> ``e_mail``, ``"Opłata (zł)"`` -> ``opłata_zł``.
    """
    text = unicodedata.normalize("NFKD", str(label or ""))
    text = "".join(char for char in text if not unicodedata.combining(char))
    return re.sub(r"\W+", "_", text.lower()).strip("_")


def _cell_text(value):
    """A cell as the text a person reads in it (dates as ISO dates, 42.0 as 42)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, datetime.datetime):
        value = value.date() if value.time() == datetime.time() else value.replace(microsecond=0)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    return CONTROL_CHARACTERS.sub(" ", str(value)).strip()


def _csv_lines(env, content):
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(env._("The file is not UTF-8 text. In Excel, save it as “CSV UTF-8”, or upload the "
                              ".xlsx workbook itself.")) from error
    sample = text[:16384]
    first_line = next((line for line in sample.splitlines() if line.strip()), "")
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = None
    if not delimiter or delimiter not in first_line:  # the header line decides when the sniffer cannot
        delimiter = max(",;\t|", key=first_line.count) if any(d in first_line for d in ",;\t|") else ","
    yield from csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def _xlsx_lines(env, content):
    import openpyxl  # noqa: PLC0415 (an Odoo dependency, needed for this format only)

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as error:  # a damaged or foreign file: say so, in the user's words
        raise UserError(env._("The file cannot be read as an Excel workbook (.xlsx): %s", error)) from error
    try:
        for values in workbook.worksheets[0].iter_rows(values_only=True):
            yield list(values)
    finally:
        workbook.close()


def read_signer_file(env, content, filename=""):
    """The signers of a CSV or XLSX file: ``(extra_columns, rows)``.

    ``extra_columns`` is a list of ``[key, header]`` for the columns that are not the signer's own;
    each row is a dict with ``sequence`` (its line in the file), ``name``, ``email``, ``phone``,
    ``company_name``, ``vat`` and ``extra`` (``{key: text}``). Raises :class:`UserError` with a
    clear message for what cannot be a campaign (no e-mail column, more than :data:`MAX_ROWS`...).
    """
    _ = env._
    if not content:
        raise UserError(_("The file is empty."))
    if len(content) > MAX_FILE_BYTES:
        raise UserError(_("The file is larger than %s MB: a campaign holds at most %s signers.",
                          MAX_FILE_BYTES // (1024 * 1024), MAX_ROWS))
    name = (filename or "").lower()
    is_xlsx = content[:4] == b"PK\x03\x04"
    if name.endswith(".xls") and not is_xlsx:
        raise UserError(_("Old Excel files (.xls) cannot be read: save the file as .xlsx or as CSV UTF-8."))
    if name.endswith((".ods", ".numbers")):
        raise UserError(_("Save the file as .xlsx or as CSV UTF-8 first."))
    header, rows = None, []
    with contextlib.closing(_xlsx_lines(env, content) if is_xlsx else _csv_lines(env, content)) as lines:
        for number, raw in enumerate(lines, start=1):
            cells = [_cell_text(value) for value in raw]
            if not any(cells):
                continue
            if header is None:
                header = cells
                continue
            if len(rows) >= MAX_ROWS:
                raise UserError(_(
                    "The file has more than %(max)s signers (lines after the header). A campaign sends to at "
                    "most %(max)s: split the file into several campaigns.", max=MAX_ROWS))
            rows.append((number, cells))
    if header is None:
        raise UserError(_("The file has no lines. Its first line names the columns, e.g. "
                          "name;email;phone;company;vat."))
    if len(header) > MAX_COLUMNS:
        raise UserError(_("The file has %(count)s columns; a campaign reads at most %(max)s.",
                          count=len(header), max=MAX_COLUMNS))
    standard, extras, used = {}, [], set()
    for index, label in enumerate(header):
        key = column_key(label) or f"column_{index + 1}"
        target = ALIASES.get(key)
        if target and target not in standard:
            standard[target] = index
            if target in ("first_name", "last_name"):  # "Dear {{ row.first_name }}" is common
                extras.append([target, label or key, index])
                used.add(target)
            continue
        unique, suffix = key, 2
        while unique in used or unique in ROW_FIELDS:
            unique, suffix = f"{key}_{suffix}", suffix + 1
        used.add(unique)
        extras.append([unique, label or unique, index])
    if "email" not in standard:
        raise UserError(_("The file has no e-mail column. Its first line must name the columns, e.g. "
                          "name;email;phone;company;vat (found: %s).", ", ".join(h for h in header if h) or "-"))
    if "name" not in standard and "first_name" not in standard and "last_name" not in standard:
        raise UserError(_("The file has no name column (name, or first name and last name)."))

    def cell(cells, index):
        return cells[index][:MAX_CELL_LENGTH] if index is not None and index < len(cells) else ""

    signers = []
    for number, cells in rows:
        full_name = cell(cells, standard.get("name")) or " ".join(
            part for part in (cell(cells, standard.get("first_name")), cell(cells, standard.get("last_name"))) if part)
        signers.append({
            "sequence": number,
            "name": full_name,
            "email": cell(cells, standard.get("email")),
            "phone": cell(cells, standard.get("phone")),
            "company_name": cell(cells, standard.get("company")),
            "vat": cell(cells, standard.get("vat")),
            "extra": {key: cell(cells, index) for key, _label, index in extras},
        })
    return [[key, label] for key, label, _index in extras], signers


def signer_problems(env, signers, phone_required=False):
    """The problems of each signer line (dicts as :func:`read_signer_file` makes them), in order.

    The e-mail (and, for providers that send codes by SMS, ``phone_required``, phone) checks are
    the send's own (:func:`~.esign_send_checks.signer_problems`); a campaign adds a missing name and
    a repeated e-mail address (each signer gets one contract).
    """
    _ = env._
    first_line = {}
    result = []
    for signer in signers:
        line = signer.get("sequence")
        name = (signer.get("name") or "").strip()
        problems = []
        if not name:
            problems.append(checks.SendProblem("ESIGN_CAMPAIGN_NO_NAME", _(
                "Line %(line)s has no name: the signer's name is printed on the contract.", line=line)))
        problems += checks.signer_problems(env, [{
            "name": name or _("Line %s", line), "email": (signer.get("email") or "").strip(),
            "phone": signer.get("phone") or "", "role": "client", "sequence": 1}], phone_required=phone_required)
        normalized = email_normalize(signer.get("email") or "")
        if normalized:
            if normalized in first_line:
                problems.append(checks.SendProblem("ESIGN_CAMPAIGN_DUPLICATE", _(
                    "Line %(line)s repeats the e-mail address %(email)s of line %(first)s: each signer gets one "
                    "contract.", line=line, email=normalized, first=first_line[normalized])))
            else:
                first_line[normalized] = line
        result.append(problems)
    return result


def render_row_text(text, values, render_contract=None):
    """``text`` with ``{{ row.<column> }}`` replaced by the row's values, and nothing left to evaluate.

    Row values come from a file anyone may have written: they are substituted as plain text, after
    the contract's own placeholders (``{{ object.name }}``) were rendered by ``render_contract``
    (Odoo's inline templates, with the sender's rights). Any ``{{`` that remains (from a value or a
    contract field) is broken up, so the send's own rendering finds nothing to evaluate.
    """
    if not text:
        return ""
    tokens = []

    def mark(match):
        tokens.append(str(values.get(match.group(1), "") or ""))
        return f"{MARKER}{len(tokens) - 1}{MARKER}"

    marked = ROW_PLACEHOLDER.sub(mark, text.replace(MARKER, " "))
    if render_contract and "{{" in marked:
        marked = render_contract(marked)
    rendered = re.sub(f"{MARKER}(\\d+){MARKER}", lambda match: tokens[int(match.group(1))], marked)
    while "{{" in rendered:
        rendered = rendered.replace("{{", "{ {")
    return rendered


# ---------------------------------------------------------------------------------------- the row

class EsignCampaignRow(models.Model):
    _name = "esign.campaign.row"
    _description = "E-Signature Campaign Signer"
    _order = "campaign_id, sequence, id"
    _rec_name = "name"

    campaign_id = fields.Many2one("esign.campaign", required=True, ondelete="cascade", index=True, readonly=True)
    company_id = fields.Many2one(related="campaign_id.company_id", store=True, index=True)
    kind = fields.Selection(related="campaign_id.kind")
    sequence = fields.Integer(string="Line", readonly=True, help="The line of the file this signer comes from.")
    name = fields.Char()
    email = fields.Char(string="E-mail")
    phone = fields.Char()
    company_name = fields.Char(string="Company Name")
    vat = fields.Char(string="Tax ID")
    extra_json = fields.Text(string="Other Columns (JSON)", readonly=True)
    extra_summary = fields.Char(string="Other Columns", compute="_compute_extra_summary")
    partner_id = fields.Many2one("res.partner", string="Contact", readonly=True)
    agreement_id = fields.Many2one("agreement", string="Contract", readonly=True, ondelete="set null", index=True)
    request_id = fields.Many2one("esign.request", string="Request", readonly=True, ondelete="restrict", index=True)
    stage = fields.Selection(STAGES, default="draft", required=True, readonly=True, index=True,
                             help="How far the campaign itself got with this signer.")
    state = fields.Selection(ROW_STATES, compute="_compute_state", store=True, index=True, string="Status",
                             help="The row's progress, then its request's: queued, sent, signed, refused...")
    result_code = fields.Char(string="Code", compute="_compute_state", store=True, index=True,
                              help="Why it did not go or failed, as a stable code (see the README).")
    result_message = fields.Text(string="Problem", compute="_compute_result_message")
    error_code = fields.Char(readonly=True, help="The campaign's own finding: a problem of the line, or why "
                                                 "its send did not go.")
    error_message = fields.Text(readonly=True)
    attempts = fields.Integer(readonly=True, help="Unexpected errors met while processing this row.")

    _sql_constraints = [
        ("request_uniq", "unique(request_id)", "A request belongs to one campaign row."),
        ("agreement_uniq", "unique(campaign_id, agreement_id)", "A contract appears once in a campaign."),
    ]

    @api.depends("stage", "error_code", "request_id.state", "request_id.last_error_code")
    def _compute_state(self):
        for row in self:
            request = row.request_id
            if request:
                row.state = REQUEST_STATE_TO_ROW.get(request.state, "queued")
                code = request.last_error_code if request.state in ("sending", "error", "expired") else False
                row.result_code = code or ("ESIGN_EXPIRED" if request.state == "expired" else False)
            else:
                row.state = row.stage
                row.result_code = row.error_code if row.stage in ("draft", "failed") else False

    @api.depends("error_message", "request_id.last_error")
    def _compute_result_message(self):
        for row in self:
            row.result_message = row.request_id.last_error if row.request_id else row.error_message

    @api.depends("extra_json")
    def _compute_extra_summary(self):
        for row in self:
            values = json.loads(row.extra_json or "{}")
            row.extra_summary = "; ".join(f"{key}: {value}" for key, value in values.items() if value)

    def write(self, vals):
        protected = PROTECTED_FIELDS.intersection(vals)
        if protected and not self.env.su:
            raise AccessError(_("Campaign signers change only through the campaign (these fields cannot be "
                                "written: %s).", ", ".join(sorted(protected))))
        if SIGNER_FIELDS.intersection(vals) and any(row.stage != "draft" or row.campaign_id.state != "draft"
                                                    for row in self):
            raise UserError(_("A signer can be corrected only before the campaign starts."))
        result = super().write(vals)
        if SIGNER_FIELDS.intersection(vals):
            self.campaign_id._esign_check_rows()
        return result

    def unlink(self):
        if not self.env.su and any(row.campaign_id.state != "draft" for row in self):
            raise UserError(_("Signers of a started campaign cannot be removed: cancel the rest of the campaign "
                              "instead."))
        campaigns = self.campaign_id
        result = super().unlink()
        if not self.env.context.get("esign_campaign_import"):
            campaigns.exists()._esign_check_rows()
        return result

    # ------------------------------------------------------------------ values

    def _esign_signer_values(self):
        self.ensure_one()
        return {"sequence": self.sequence, "name": self.name, "email": self.email, "phone": self.phone}

    def _esign_placeholder_values(self):
        """What ``{{ row.<key> }}`` stands for in this row's message."""
        self.ensure_one()
        values = json.loads(self.extra_json or "{}")
        values.update({"name": self.name or "", "email": self.email or "", "phone": self.phone or "",
                       "company": self.company_name or "", "vat": self.vat or ""})
        return values

    # ------------------------------------------------------------------ processing (superuser, in batches)

    @api.model
    def _esign_claim(self, batch_size, campaigns=None):
        """Lock up to ``batch_size`` rows of running campaigns that still need work, for this worker.

        ``SKIP LOCKED``: several workers (cron threads, queue_job jobs, servers) share a campaign,
        each taking rows nobody holds; the lock lasts until the batch's transaction ends, so a row is
        never processed by two workers at once, and a worker that dies releases its rows unchanged.
        """
        campaign_filter = SQL("AND r.campaign_id IN %s", tuple(campaigns.ids)) if campaigns else SQL()
        self.env["esign.campaign"].flush_model(["state"])
        self.flush_model(["stage", "campaign_id", "sequence"])
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(SQL("""
                    SELECT r.id FROM esign_campaign_row r JOIN esign_campaign c ON c.id = r.campaign_id
                     WHERE c.state = 'running' AND r.stage IN ('draft', 'contract') %s
                     ORDER BY r.campaign_id, r.sequence, r.id
                     LIMIT %s
                       FOR UPDATE OF r SKIP LOCKED
                """, campaign_filter, batch_size))
                ids = [row_id for row_id, in self.env.cr.fetchall()]
        except Exception as error:  # noqa: BLE001 a row changed by another worker since our snapshot
            if getattr(error, "pgcode", None) not in ("40001", "40P01"):
                raise
            _logger.info("E-signature campaign: rows taken by another worker, trying again later")
            return self.browse()
        rows = self.sudo().browse(ids)
        rows.invalidate_recordset()
        return rows

    def _esign_partner_cache(self):
        """The contacts and companies the batch's rows name, found in a few queries for the whole batch."""
        Partner = self.env["res.partner"].sudo()
        todo = self.filtered(lambda row: row.stage == "draft")
        emails = {email_normalize(row.email) for row in todo} - {False}
        names = {row.company_name.strip() for row in todo if row.company_name and row.company_name.strip()}
        vats = {row.vat.strip() for row in todo if row.vat and row.vat.strip()}
        vats |= {vat.replace(" ", "").upper() for vat in vats}
        cache = {"email": {}, "vat": {}, "name": {}, "pdf": {}}
        if emails:
            for partner in Partner.search([("email_normalized", "in", list(emails))], order="is_company, id"):
                cache["email"].setdefault((partner.email_normalized, partner.company_id.id), partner)
        company_domain = []
        if vats:
            company_domain = [("vat", "in", list(vats))]
        if names:
            name_domain = ["|"] * (len(names) - 1) + [("name", "=ilike", escape_psql(name)) for name in names]
            company_domain = ["|"] + company_domain + name_domain if company_domain else name_domain
        if company_domain:
            for company in Partner.search([("is_company", "=", True)] + company_domain, order="id"):
                if company.vat:
                    cache["vat"].setdefault((company.vat.replace(" ", "").upper(), company.company_id.id), company)
                cache["name"].setdefault((company.name.strip().lower(), company.company_id.id), company)
        return cache

    @staticmethod
    def _esign_cached(cache, kind, key, company):
        return cache[kind].get((key, company.id)) or cache[kind].get((key, False))

    def _esign_find_or_create_partner(self, cache):
        """The signer's contact: the one with this e-mail when there is one (kept as it is), else a new
        contact, under the company named by its tax id or name (found, or created)."""
        self.ensure_one()
        company = self.campaign_id.company_id
        email = email_normalize(self.email)
        partner = self._esign_cached(cache, "email", email, company)
        if partner:
            return partner
        Partner = self.env["res.partner"].with_user(self.campaign_id.user_id).sudo().with_context(
            tracking_disable=True, mail_create_nolog=True, mail_create_nosubscribe=True)
        vat = (self.vat or "").strip()
        company_name = (self.company_name or "").strip()
        parent = self.env["res.partner"]
        if company_name:
            parent = (vat and self._esign_cached(cache, "vat", vat.replace(" ", "").upper(), company)) \
                or self._esign_cached(cache, "name", company_name.lower(), company)
            if not parent:
                parent = Partner.create({"name": company_name, "is_company": True, "vat": vat or False})
                if vat:
                    cache["vat"][(vat.replace(" ", "").upper(), False)] = parent
                cache["name"][(company_name.lower(), False)] = parent
        partner = Partner.create({
            "name": self.name.strip(), "email": self.email.strip(), "phone": self.phone or False,
            "parent_id": parent.id or False, "vat": (vat or False) if not parent else False,
        })
        cache["email"][(email, False)] = partner
        return partner

    def _esign_run(self, cache):
        """Take this row one step further: its contract, then its request. Never raises."""
        self.ensure_one()
        code = "ESIGN_CAMPAIGN_CONTRACT"
        try:
            if self.stage == "draft":
                with self.env.cr.savepoint():
                    self._esign_make_contract(cache)
            if self.stage == "contract":
                code = "ESIGN_NOT_SENT"
                with self.env.cr.savepoint():
                    self._esign_send()
        except (UserError, ValidationError) as error:  # the data says no (a tax id refused, a placeholder
            # the sender may not use): final, with the reason
            self.invalidate_recordset()
            self.write({"stage": "failed", "error_code": code,
                        "error_message": str(error.args[0] if error.args else error)})
        except Exception as error:  # a bug or a lost connection: the row is tried again, a few times
            _logger.exception("E-signature campaign row %s failed", self.id)
            self.invalidate_recordset()
            attempts = self.attempts + 1
            vals = {"attempts": attempts, "error_message": f"{type(error).__name__}: {error}"}
            if attempts >= MAX_ROW_ATTEMPTS:
                vals.update(stage="failed", error_code="ESIGN_CAMPAIGN_ERROR")
            self.write(vals)

    def _esign_make_contract(self, cache):
        campaign = self.campaign_id
        user = campaign.user_id
        partner = self._esign_find_or_create_partner(cache)
        agreement = self.env["agreement"].with_user(user).with_company(campaign.company_id) \
            ._esign_create_from_template(campaign.template_id.with_user(user), partner, origin=self)
        if campaign.template_document == "template":
            pdf = cache["pdf"].get(campaign.id)
            if pdf is None:
                template_pdf = campaign.template_id.sudo()._esign_attached_pdf()
                pdf = cache["pdf"][campaign.id] = (template_pdf.name, template_pdf.raw)
            if pdf[1]:
                # The same document for everyone: the file is stored once (the filestore keeps one copy
                # per content), attached to each contract so that the send's checks accept it.
                self.env["ir.attachment"].with_user(user).sudo().create({
                    "name": pdf[0], "raw": pdf[1], "mimetype": "application/pdf",
                    "res_model": "agreement", "res_id": agreement.id,
                })
        self.write({"stage": "contract", "partner_id": partner.id, "agreement_id": agreement.id,
                    "error_code": False, "error_message": False})

    def _esign_send(self):
        campaign = self.campaign_id
        agreement = self.agreement_id
        if not agreement:
            self.write({"stage": "failed", "error_code": "ESIGN_CAMPAIGN_NO_CONTRACT", "error_message": _(
                "The contract made for this signer was deleted before it was sent.")})
            return
        user = campaign.user_id
        sender = agreement.with_user(user).with_company(agreement.company_id or campaign.company_id)
        if campaign.kind == "file":
            values = self._esign_placeholder_values()
            subject = render_row_text(campaign.subject, values, sender._esign_render)
            message = render_row_text(campaign.message, values, sender._esign_render)
            source = "attachment" if campaign.template_document == "template" else "report"
        else:
            subject, message, source = campaign.subject, campaign.message, campaign.document_source
        results = sender._esign_send_unattended(provider=campaign.provider_id or None, source=source,
                                                subject=subject, message=message, user=user)
        problems = next(iter(results.values()))
        Request = self.env["esign.request"].sudo()
        if problems:
            if campaign.kind == "file" and problems[0].code == "ESIGN_ALREADY_OUT" and self._esign_adopt_request():
                return
            self.write({"stage": "failed", "error_code": problems[0].code,
                        "error_message": checks.format_problems(problems)})
            return
        request = Request.search([("agreement_id", "=", agreement.id), ("state", "in", LIVE_STATES)], limit=1)
        self.write({"stage": "queued", "request_id": request.id, "error_code": False, "error_message": False})

    def _esign_adopt_request(self):
        """The contract this row made is already out, by a request no row holds: it is this row's.

        (A row's contract and request are committed together, so this only happens when a row's
        link was lost, e.g. restored from an older backup: the row takes it instead of failing.)
        """
        agreement = self.agreement_id
        if agreement.esign_origin_ref != self:
            return False
        request = self.env["esign.request"].sudo().search(
            [("agreement_id", "=", agreement.id), ("state", "in", LIVE_STATES)], limit=1)
        if not request or self.search_count([("request_id", "=", request.id)]):
            return False
        self.write({"stage": "queued", "request_id": request.id, "error_code": False, "error_message": False})
        return True
