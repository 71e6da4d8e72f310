"""pytest plugin for the Odoo suite (loaded by tools/test.sh with ``-p``; not part of the module).

Odoo logs an error ("Importing test framework ... when not running in test mode") when its test
framework is imported before test mode is on, which pytest-odoo always does: it switches test mode
on only after collection, so that loading the registry does not start Odoo's own test runner.
That one message is a false alarm under pytest-odoo; this filter drops it and nothing else.
"""
import logging


class _DropTestFrameworkImportWarning(logging.Filter):
    def filter(self, record):
        return not str(record.msg).startswith("Importing test framework")


logging.getLogger("odoo.tests.common").addFilter(_DropTestFrameworkImportWarning())
