# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Who may do what with e-signatures: the one table, checked on the server.

Views hide buttons for convenience only; every public method that acts calls
:func:`check_esign_right` first, so an RPC call gets the same answer as the view. Record rules
(``security/esign_security.xml``) decide *which* records a user reaches; this table decides which
*actions* a group may take on them. Model ACLs give no one write access to requests, signers or
events: they change only through the methods below, which check the right and then act as
superuser.
"""
from odoo.exceptions import AccessError

GROUP_USER = "esign_connector.group_esign_user"
GROUP_MANAGER = "esign_connector.group_esign_manager"
GROUP_ADMIN = "base.group_system"

ACTION_GROUPS = {
    # salespeople
    "send": GROUP_USER,
    "refresh": GROUP_USER,
    "remind": GROUP_USER,
    # managers
    "cancel": GROUP_MANAGER,
    "resolve_sending": GROUP_MANAGER,
    "retry_event": GROUP_MANAGER,
    "read_events": GROUP_MANAGER,
    # administrators: credentials, keys, registrations at the provider
    "configure_provider": GROUP_ADMIN,
}


def _action_labels(env):
    _ = env._
    return {
        "send": _("send contracts for e-signature"),
        "refresh": _("refresh e-signature statuses"),
        "remind": _("send e-signature reminders"),
        "cancel": _("cancel e-signature requests"),
        "resolve_sending": _("settle e-signature requests whose sending is unclear"),
        "retry_event": _("retry e-signature events"),
        "read_events": _("read the e-signature event journal"),
        "configure_provider": _("configure e-signature providers"),
    }


def has_esign_right(env, action):
    """True when the environment's user may take ``action`` (the superuser always may)."""
    return env.su or env.user.has_group(ACTION_GROUPS[action])


def check_esign_right(env, action):
    """Raise :class:`AccessError` in the user's language unless they may take ``action``."""
    if not has_esign_right(env, action):
        raise AccessError(env._("You are not allowed to %(action)s. Ask an administrator for the "
                            "right E-Signature access.", action=_action_labels(env)[action]))
