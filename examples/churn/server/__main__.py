"""``python -m server``: serve the model at MODEL_URI (see serve.py for the endpoints and the environment)."""

import os
import sys

# One OpenMP thread unless told otherwise: requests are answered one at a time on the event
# loop, and idle OpenMP workers spinning on a busy node make one-row predictions 100x slower.
# Read when scikit-learn loads (with the first model), so set first.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from server.serve import main

sys.exit(main())
