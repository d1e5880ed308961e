"""``python -m histoclick`` runs the command line."""

import sys

from histoclick.cli import main

sys.exit(main())
