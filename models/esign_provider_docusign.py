# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""docusign connector: the ORM glue between esign.provider and api/docusign.py (filled in by its issue)."""
