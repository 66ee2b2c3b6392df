"""``python -m traffic``: post generated rows to a churn model server (see generate.py; --help)."""

import sys

from traffic.generate import main

sys.exit(main())
