# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""The contract's stage after a signature through us, when OCA ``agreement_legal`` is installed.

``agreement_legal`` gives contracts a stage (``agreement.stage``, field ``stage_id``);
``agreement_sign_oca`` moves a contract signed inside Odoo to its "Signed Agreements Stage". We do the
same for our flow, with stages chosen in Settings > E-Signature. We do not depend on
``agreement_legal``: its model exists only where it is installed, so a Many2one to it cannot be declared
here (the registry would not load without it). The chosen stages are stored as plain ids on the
company (``esign_*_stage_res_id``, like ``res_id`` elsewhere in Odoo), offered in the settings as a
selection of the existing stages, and read back through ``agreement.stage`` only when that model
exists. Without ``agreement_legal`` these columns stay empty and nothing happens.
"""
from odoo import fields, models

# Which company setting holds the stage a contract goes to when our request reaches a state.
OUTCOME_STAGE_FIELDS = {
    "signed": "esign_signed_stage_res_id",
    "refused": "esign_refused_stage_res_id",
}
STAGE_MODEL = "agreement.stage"
# agreement_legal's stages have a type; only the "agreement" ones are a contract's stages.
STAGE_DOMAIN = [("stage_type", "=", "agreement")]


def stages_available(env):
    """Whether contracts have stages here (``agreement_legal`` is installed)."""
    return STAGE_MODEL in env and "stage_id" in env["agreement"]._fields


def stage_choices(env):
    """The stages a setting may name, as ``(key, label)`` pairs for a selection: active contract
    stages in their order; none without ``agreement_legal``."""
    if not stages_available(env):
        return []
    return [(str(stage.id), stage.name) for stage in env[STAGE_MODEL].sudo().search(STAGE_DOMAIN)]


def stage_by_res_id(env, res_id):
    """The active contract stage with this id, or ``None`` (no id, no stages, or the stage was
    deleted or archived since it was chosen: the setting then shows it empty, and it is not used)."""
    if not res_id or not stages_available(env):
        return None
    return env[STAGE_MODEL].sudo().search([("id", "=", res_id)] + STAGE_DOMAIN, limit=1) or None


class ResCompany(models.Model):
    _inherit = "res.company"

    esign_signed_stage_res_id = fields.Integer(
        string="E-Signature: Stage When Signed",
        help="Id of the agreement_legal stage a contract moves to when it is signed through an "
        "e-signature provider; 0: it stays where it is.")
    esign_refused_stage_res_id = fields.Integer(
        string="E-Signature: Stage When Refused",
        help="Id of the agreement_legal stage a contract moves to when a signer refuses it; 0: it "
        "stays where it is.")


class Agreement(models.Model):
    _inherit = "agreement"

    def _esign_on_signature_outcome(self, new_state, request):
        """Move the contract to the stage the request's company chose for this outcome.

        The provider decided it, so the stage change (tracked by agreement_legal) is authored by
        OdooBot, like our other notes about what the provider did. A contract already in that stage
        is not written (no empty revision, no tracking line).
        """
        result = super()._esign_on_signature_outcome(new_state, request)
        fname = OUTCOME_STAGE_FIELDS.get(new_state)
        stage = stage_by_res_id(self.env, fname and request.company_id[fname])
        if stage:
            to_move = self.filtered(lambda agreement: agreement.stage_id != stage)
            to_move._track_set_author(self.env.ref("base.partner_root"))
            to_move.write({"stage_id": stage.id})
        return result
