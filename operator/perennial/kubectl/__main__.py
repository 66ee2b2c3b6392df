"""``python -m perennial.kubectl``: the plugin without its console script."""

import sys

from perennial.kubectl.cli import main

sys.exit(main())
