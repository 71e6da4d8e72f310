"""Strict fake provider servers: real HTTP on loopback, built from each provider's documented API.

Plain Python (no Odoo import): the unit suite and the Odoo suite both drive them.
"""
