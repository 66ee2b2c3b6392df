"""The churn traffic generator: posts generated customers to a model server, at a limited rate.

Rows come from the same generator the trainer uses, as the world is now (the dataset
URI's drift clock), with every feature but contract_months moved by ``--shift`` times its
spread (a typical standard deviation): ``--shift 0`` is what a model trained on a recent
window expects, ``--shift 1`` moves the inputs one standard deviation up, enough for the
server's feature histograms to show a PSI well above 0.25.

Standard library only. Every option has an environment variable (TRAFFIC_*), so a
Deployment sets them without a command line; the flag wins over the variable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

import churnlib
from churnlib import ChurnError

LOG = logging.getLogger("churn.traffic")


@dataclass
class Tally:
    requests: int = 0
    rows: int = 0
    by_code: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return json.dumps(
            {"requests": self.requests, "rows": self.rows, "by_code": self.by_code, "errors": self.errors},
            sort_keys=True,
        )


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> argparse.Namespace:
    def option(name: str, kind: type, default: str, text: str) -> None:
        # A string default goes through `type` like a flag would: a bad TRAFFIC_* value is a usage error.
        variable = "TRAFFIC_" + name.upper().replace("-", "_")
        parser.add_argument(f"--{name}", type=kind, default=env.get(variable, default), help=f"{text} [{variable}]")

    parser = argparse.ArgumentParser(prog="python -m traffic", description=__doc__.split("\n\n")[0])
    option("url", str, "http://127.0.0.1:8080", "the server's base URL")
    option("rate", float, "5", "requests a second, > 0")
    option("batch", int, "10", "rows a request, 1-1000")
    option("shift", float, "0", "every feature but contract_months moved by this many spreads")
    option("requests", int, "0", "stop after this many requests (0: no limit)")
    option("duration", float, "0", "stop after this many seconds (0: no limit)")
    option("seed", int, "0", "random seed of the rows")
    option("dataset-uri", str, "", "the drift clock: synthetic://churn[?origin=..&horizon=..]")
    option("timeout", float, "5", "seconds a request may take")
    args = parser.parse_args(argv)
    if not args.rate > 0 or not 1 <= args.batch <= 1000 or args.requests < 0 or args.duration < 0:
        parser.error("--rate must be > 0, --batch in 1..1000, --requests and --duration >= 0")
    return args


# Straight to the server, never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url: str, rows: list[dict[str, float]], timeout: float) -> str:
    """POST the rows; the HTTP status code, or the kind of failure (refused, timeout, ...)."""
    request = urllib.request.Request(
        url, data=json.dumps({"rows": rows}).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
            return str(response.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return type(reason).__name__ if not isinstance(reason, str) else reason


def run(args: argparse.Namespace, stopping: list[bool]) -> Tally:
    source = churnlib.data_source(args.dataset_uri)
    rng = random.Random(args.seed)
    url = args.url.rstrip("/") + "/predict"
    tally = Tally()
    interval, began = 1 / args.rate, time.monotonic()
    next_at = began
    LOG.info("posting %d rows every %.3gs to %s, shift %g", args.batch, interval, url, args.shift)
    while not stopping[0]:
        if args.requests and tally.requests >= args.requests:
            break
        if args.duration and time.monotonic() - began >= args.duration:
            break
        rows = list(churnlib.traffic_rows(source, datetime.now(UTC), args.batch, args.shift, rng))
        outcome = post(url, rows, args.timeout)
        tally.requests += 1
        if outcome.isdigit():
            tally.by_code[outcome] += 1
            tally.rows += len(rows) if outcome == "200" else 0
        else:
            if not tally.errors[outcome]:
                LOG.warning("request failed: %s (counting, going on)", outcome)
            tally.errors[outcome] += 1
        # A fixed schedule: a slow answer is not made up for by a burst later.
        next_at = max(next_at + interval, time.monotonic())
        while not stopping[0] and (left := next_at - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))
    return tally


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, os.environ if env is None else env)
        churnlib.data_source(args.dataset_uri)
    except ChurnError as error:
        LOG.error("%s", error)
        return 2
    stopping = [False]

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tally = run(args, stopping)
    print(tally.summary(), flush=True)
    # Finite runs report whether anything got through; a stopped endless one ends quietly.
    return 0 if tally.by_code.get("200") or not (args.requests or args.duration) else 1
