"""``kubectl perennial``: day-2 operations on ModelDeployments from the command line.

Installed with the package as the console script ``kubectl-perennial``, which kubectl
runs as a plugin when it is on PATH. It talks to the API server as the user, with the
user's kubeconfig, through the operator's own client (``perennial.adapters``).

Layout: ``view`` (the status and history screens), ``why`` (what blocks retraining or
promotion) and ``changes`` (the patches the write commands send, and the rules that
refuse them) are pure functions of the objects read; ``session`` does the API requests;
``cli`` parses the command line, runs a command and maps failures to exit codes
(``errors``).
"""
