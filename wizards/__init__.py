from . import esign_send_wizard
from . import esign_bulk_send_wizard
