"""Make the add-on's plain-Python parts importable without Odoo.

The repository root is the Odoo module, whose ``__init__`` imports the ORM. The unit suite needs
only ``api/`` and ``tests/fakes/``, so it registers bare package objects for
``esign_connector`` and ``esign_connector.tests`` whose ``__init__`` files are never executed.
"""
import os
import sys
import types

# realpath: under the Odoo suite this file is reached through the esign_connector link.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SHARED_PROVIDERS = os.environ.get(
    "ESIGN_SHARED_PROVIDERS", os.path.join(os.path.dirname(ROOT), "shared", "providers")
)


def _bare_package(name, path):
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module


_bare_package("esign_connector", ROOT)
_bare_package("esign_connector.tests", os.path.join(ROOT, "tests"))
