# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""yousign connector: the ORM glue between esign.provider and api/yousign.py (filled in by its issue)."""
