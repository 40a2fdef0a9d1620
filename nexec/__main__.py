"""``python -m nexec``: the same as the ``nexec`` command."""
import sys

from nexec.cli import main

sys.exit(main())
