# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""sellandsign connector: the ORM glue between esign.provider and api/sellandsign.py (filled in by its issue)."""
