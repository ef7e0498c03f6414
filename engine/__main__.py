"""``python -m engine`` is the ``diffrnn`` command."""

import sys

from .cli import main

sys.exit(main())
