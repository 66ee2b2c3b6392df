"""``kubectl perennial``: the command line, the commands and their exit codes.

kubectl runs ``kubectl-perennial`` from PATH with the arguments after ``perennial``.
The screens, the reasoning and the patches are pure (``view``, ``why``, ``changes``);
this module reads the objects, sends the patches and prints. Every failure is one line
on stderr and an exit code (``errors.ExitCode``), never a traceback (``-v`` shows one
for a failure nobody anticipated).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, NoReturn

import yaml

from perennial import __version__
from perennial.kubectl import changes, view, why
from perennial.kubectl.errors import ExitCode, PluginError
from perennial.kubectl.objects import Model, Policy, parse_model, policies_targeting
from perennial.kubectl.session import ConflictError, Session, connect

PROG = "kubectl perennial"
WATCH_INTERVAL = 2.0  # seconds between two reads in `status -w`
GUARDED_ATTEMPTS = 3  # a write derived from status is retried this often when the object changed meanwhile
CLEAR_SCREEN = "\x1b[H\x1b[2J"

EXIT_CODES_HELP = """exit codes:
  0  success
  1  usage error, or a request the object's state refuses (say, promoting a version that failed)
  2  the ModelDeployment (or Perennial's CRDs) not found
  3  forbidden or unauthorized: RBAC refused the request, or the credentials
  4  any other error: API server unreachable or failing, no usable kubeconfig

Writes change spec.suspend, spec.pinnedVersion or the perennial.dev/retrain-request
annotation with a JSON merge patch (field manager kubectl-perennial), as kubectl patch
would: if Git holds the ModelDeployment (Argo CD, Flux), make the same change there."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Usage errors exit 1 (argparse's own 2 is the not-found code here)."""
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def _connection_options(parser: argparse.ArgumentParser, *, inherited: bool) -> None:
    """Options every command takes, before or after the command's name (as kubectl's)."""
    default: Any = argparse.SUPPRESS if inherited else None
    group = parser.add_argument_group("connection")
    group.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
    group.add_argument("--context", default=default, help="kubeconfig context (default: the current context)")
    group.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's namespace, else default)"
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default if inherited else False,
        help="log requests and show tracebacks",
    )


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("json", "yaml"), help="print the screen's data as JSON or YAML")


def _dry_run_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="let the API server check the change without storing it")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Watch, retrain, promote, roll back and pause Perennial ModelDeployments.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kubectl-perennial {__version__}")
    _connection_options(parser, inherited=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        sub.add_argument("name", metavar="NAME", help="the ModelDeployment")
        _connection_options(sub, inherited=True)
        return sub

    status = command("status", "serving and latest version, rollout, drift policies, decisions, conditions")
    status.add_argument("-w", "--watch", action="store_true", help="redraw when the model or its policies change")
    status.add_argument(
        "--interval",
        type=float,
        default=WATCH_INTERVAL,
        help=f"seconds between reads with -w (default {WATCH_INTERVAL:g})",
    )
    _output_option(status)
    _output_option(command("history", "the lineage: every version's trigger, data, metrics and decision"))
    _output_option(command("why", "why it is not retraining or not promoting: the rule that blocks it"))
    retrain = command("retrain", "ask for a retrain now (the perennial.dev/retrain-request annotation)")
    retrain.add_argument("--reason", default="", help="why, recorded in the version's lineage (trigger source)")
    _dry_run_option(retrain)
    promote = command("promote", "serve VERSION: set spec.pinnedVersion")
    promote.add_argument("version", metavar="VERSION", help="a trained version from `history`")
    _dry_run_option(promote)
    for name, help_text in (
        ("unpin", "remove spec.pinnedVersion: promotion chooses what serves again"),
        ("rollback", "serve the version that served before the current one (pins it)"),
        ("pause", "stop automatic retrains: spec.suspend true"),
        ("resume", "allow automatic retrains again: spec.suspend false"),
    ):
        _dry_run_option(command(name, help_text))
    return parser


# ---------------------------------------------------------------- output
def _now() -> datetime:
    return datetime.now(UTC)


def _document(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


class Printer:
    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out = out
        self.err = err

    def print(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


# ---------------------------------------------------------------- reading
async def _read(session: Session, name: str) -> tuple[Model, list[Policy], str | None]:
    """The model and the DriftPolicies targeting it; a policy list the user may not read is
    reported on the screen, not fatal."""
    model = parse_model(await session.get_model(name))
    try:
        bodies = await session.list_policies()
    except PluginError as error:
        if error.code in (ExitCode.FORBIDDEN, ExitCode.NOT_FOUND):
            return model, [], error.message
        raise
    return model, policies_targeting(name, bodies), None


# ---------------------------------------------------------------- commands
async def _status(session: Session, args: argparse.Namespace, printer: Printer) -> int:
    if args.watch:
        return await _watch(session, args, printer)
    model, policies, problem = await _read(session, args.name)
    printer.print(_status_frame(model, policies, problem, args.output))
    return ExitCode.OK


def _status_frame(model: Model, policies: list[Policy], problem: str | None, output: str | None) -> str:
    now = _now()
    screen = view.status_view(model, policies, now, policies_error=problem)
    return _document(screen.to_dict(), output) if output else view.render_status(screen, now)


async def _watch(session: Session, args: argparse.Namespace, printer: Printer) -> int:
    """Redraw when the model or one of its policies changes; Ctrl-C (or SIGTERM) ends it with 0.

    A short poll: two reads every ``--interval`` seconds (cheap for one person's terminal),
    compared by resourceVersion. On a terminal the screen is also redrawn when only its
    ages moved; piped, a new frame (a new document with -o) is written only on a change.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    terminal = printer.out.isatty() and not args.output
    interval = max(0.2, args.interval)
    drawn: str | None = None
    seen: tuple[str, ...] = ()
    try:
        while not stop.is_set():
            try:
                model, policies, problem = await _read(session, args.name)
            except PluginError as error:
                if error.code != ExitCode.API_ERROR:
                    raise  # deleted, or no longer allowed: nothing to wait for
                printer.note(f"warning: {error.message} (retrying)")
            else:
                versions = (model.resource_version, *(f"{p.name}={p.resource_version}" for p in policies))
                frame = _status_frame(model, policies, problem, args.output)
                if terminal and frame != drawn:
                    stamp = _now().strftime("%H:%M:%S")
                    printer.out.write(CLEAR_SCREEN)
                    printer.print(f"Every {interval:g}s, redrawn on change ({stamp} UTC); Ctrl-C to stop\n\n{frame}")
                elif not terminal and versions != seen:
                    separator = "" if drawn is None else ("---\n" if args.output == "yaml" else "\n")
                    printer.print(separator + frame)
                drawn, seen = frame, versions
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    return ExitCode.OK


async def _history(session: Session, args: argparse.Namespace, printer: Printer) -> int:
    model = parse_model(await session.get_model(args.name))
    if args.output:
        printer.print(_document(view.history_document(model), args.output))
    else:
        printer.print(view.render_history(model))
    return ExitCode.OK


async def _why(session: Session, args: argparse.Namespace, printer: Printer) -> int:
    model, policies, problem = await _read(session, args.name)
    explanation = why.explain(model, policies, _now())
    if args.output:
        printer.print(_document(explanation.to_dict(), args.output))
    else:
        printer.print(why.render_explanation(explanation))
        if problem:
            printer.note(f"warning: DriftPolicies not considered: {problem}")
    return ExitCode.OK


async def _change(
    session: Session, args: argparse.Namespace, printer: Printer, compute: Callable[[Model], changes.Change]
) -> int:
    """Read, compute the change, patch; a change derived from status is sent only against the
    object it was derived from, and computed again if the object changed meanwhile."""
    for _ in range(GUARDED_ATTEMPTS):
        model = parse_model(await session.get_model(args.name))
        change = compute(model)
        if change.noop:
            printer.print(change.message)
            return ExitCode.OK
        patch = dict(change.patch)
        if change.guarded:
            patch["metadata"] = {**patch.get("metadata", {}), "resourceVersion": model.resource_version}
        try:
            await session.patch_model(args.name, patch, dry_run=args.dry_run)
        except ConflictError:
            if change.guarded:
                continue
            raise
        suffix = " (dry run: nothing stored)" if args.dry_run else ""
        printer.print(f"modeldeployment.perennial.dev/{model.name} patched{suffix}")
        for line in change.changed:
            printer.print(f"  {line}")
        printer.print(change.message)
        printer.note(changes.gitops_note(model))
        return ExitCode.OK
    raise PluginError(ExitCode.API_ERROR, f"modeldeployment {args.name} kept changing while it was read: try again")


async def _dispatch(session: Session, args: argparse.Namespace, printer: Printer) -> int:
    command = args.command
    if command == "status":
        return await _status(session, args, printer)
    if command == "history":
        return await _history(session, args, printer)
    if command == "why":
        return await _why(session, args, printer)
    computations: dict[str, Callable[[Model], changes.Change]] = {
        "retrain": lambda m: changes.retrain(m, _now(), args.reason),
        "promote": lambda m: changes.promote(m, args.version),
        "unpin": changes.unpin,
        "rollback": changes.rollback,
        "pause": lambda m: changes.set_suspend(m, True),
        "resume": lambda m: changes.set_suspend(m, False),
    }
    return await _change(session, args, printer, computations[command])


async def _run(args: argparse.Namespace, printer: Printer) -> int:
    session = Session(connect(args.kubeconfig, args.context, args.namespace))
    try:
        return await _dispatch(session, args, printer)
    finally:
        await session.close()


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kubectl-perennial: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)


def main(argv: list[str] | None = None, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    printer = Printer(out or sys.stdout, err or sys.stderr)
    _configure_logging(args.verbose)
    try:
        return asyncio.run(_run(args, printer))
    except PluginError as error:
        printer.note(f"error: {error.message}")
        return error.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # A reader such as `head` stopped reading: not an error; say nothing more.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as error:
        if args.verbose:
            logging.getLogger("perennial").exception("unexpected failure")
        printer.note(f"error: unexpected {type(error).__name__}: {error} (-v shows where)")
        return ExitCode.API_ERROR


if __name__ == "__main__":
    sys.exit(main())
