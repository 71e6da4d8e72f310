# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""signi connector: the ORM glue between esign.provider and api/signi.py (filled in by its issue)."""
