"""Plain-Python e-signature provider clients.

Nothing in this package imports Odoo: each client speaks one provider's HTTP API and translates it
into the provider-neutral vocabulary of :mod:`.base`, so clients, crypto and webhook verification
are tested without a database (``tests/unit``) and the Odoo models never see HTTP details.
"""
