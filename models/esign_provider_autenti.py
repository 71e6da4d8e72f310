# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""autenti connector: the ORM glue between esign.provider and api/autenti.py (filled in by its issue)."""
