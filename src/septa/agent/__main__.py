"""Run the guest agent: ``python3 -m septa.agent [--port DEVICE | --name NAME]``."""

import sys

from .main import main

sys.exit(main())
