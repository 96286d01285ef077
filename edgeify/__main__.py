"""`python -m edgeify ...` (and `accelerate launch -m edgeify ...` for multi-GPU training)."""

import sys

from edgeify.cli import main

sys.exit(main())
