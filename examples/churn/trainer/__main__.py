"""``python -m trainer``: one training run, configured by the PERENNIAL_* environment (see train.py)."""

import os
import sys

# One OpenMP thread unless told otherwise: on a busy or CPU-limited node, idle OpenMP
# workers spinning for work make one-row predictions (latency_p99_ms) 100x slower, and this
# small model fits faster on one thread anyway. Read when scikit-learn loads, so set first.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from trainer.train import main

sys.exit(main())
