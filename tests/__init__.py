# Odoo's own test runner collects the modules imported here; pytest-odoo collects the files.
from . import test_esign_demo_flow
from . import test_esign_webhook
from . import test_esign_security
from . import test_esign_trust
from . import test_esign_pace
from . import test_esign_http
from . import test_esign_concurrency
from . import test_esign_queue_job
from . import test_autenti_flow
from . import test_docusign_flow
from . import test_yousign_flow
from . import test_signi_flow
from . import test_sellandsign_flow
from . import test_esign_attack
from . import test_esign_agreement_legal
