# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Run a provider call once, after the caller's transaction has committed.

A provider call made inside a transaction is repeated when Odoo retries that transaction and
orphaned when it rolls back. What must reach a provider is therefore first committed as a record
(a request in ``sending``, a queued command) and only then acted on, by:

* a ``queue_job`` job, when that module is installed (and not switched off with the system
  parameter ``esign_connector.use_queue_job = False``): the way OCA users scale past one server;
* otherwise a post-commit hook in the same worker, so the user sees the result on the next reload;
* in every case the processing cron, which picks up whatever a dead worker left behind.

The method called must be safe to run twice (it claims its records first). It runs in superuser
mode with the caller's uid and context: rights were checked when the work was queued.
"""
import logging

from odoo import api

_logger = logging.getLogger(__name__)


def new_environment(registry, cr, uid, context, su=False):
    """An environment on a fresh cursor of ``registry``, without looking the registry up by name.

    ``api.Environment`` on a cursor without a transaction finds its registry through
    ``Registry(dbname)``, which takes the registries' global lock; Odoo's own test runner holds that
    lock for its whole run, so any other thread doing it waits forever. We hold the registry
    already: give the cursor its transaction directly.
    """
    if cr.transaction is None:
        cr.transaction = api.Transaction(registry)
    return api.Environment(cr, uid, context, su=su)


def use_queue_job(env):
    if "queue.job" not in env or not hasattr(env["res.partner"], "with_delay"):
        return False
    param = env["ir.config_parameter"].sudo().get_param("esign_connector.use_queue_job", "True")
    return param.strip().lower() not in ("0", "false", "no")


def schedule_after_commit(records, method_name, channel, description, identity_key=None):
    """Call ``records.<method_name>()`` once the current transaction has committed."""
    if not records:
        return
    env = records.env
    if use_queue_job(env):
        for record in records.sudo():
            delayable = record.with_delay(channel=channel, description=description,
                                          identity_key=identity_key(record) if identity_key else None)
            getattr(delayable, method_name)()
        return
    ids, model = tuple(records.ids), records._name
    registry, uid, context = env.registry, env.uid, dict(env.context)

    def run_after_commit():
        try:
            with registry.cursor() as cr:
                env = new_environment(registry, cr, uid, context, su=True)
                getattr(env[model].browse(ids), method_name)()
        except Exception:  # the cron retries; never break the caller's response
            _logger.exception("E-signature: %s.%s%s after commit failed", model, method_name, ids)

    env.cr.postcommit.add(run_after_commit)
