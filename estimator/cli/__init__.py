"""The ``estimate`` command line: a thin typer app over the library.

``estimate MODEL.onnx --hw NAME`` is shorthand for ``estimate energy MODEL.onnx --hw NAME``. Every
:class:`~estimator.errors.EstimatorError` becomes one line on stderr and exit code 2, with no traceback.
One module per command group registers its commands on the shared app (``estimator.cli._app``).
"""

from __future__ import annotations

import copy
import functools
import importlib
import sys

import typer

try:  # typer >= 0.20 vendors click; older ones use the click package
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _click_errors

from estimator.cli._app import EXIT_BAD_INPUT, app, one_line, parse_shapes
from estimator.errors import EstimatorError
from estimator.fileio import check_input_file

#: Command groups in the order `estimate --help` lists them; importing one registers its commands.
COMMAND_MODULES = ("estimate", "compare", "report", "llm", "hardware", "data", "learn")
for _module in COMMAND_MODULES:
    importlib.import_module(f"estimator.cli.{_module}")

#: Commands whose first positional argument is the model path.
_MODEL_COMMANDS = frozenset({"energy", "layers", "measure"})

__all__ = ["EXIT_BAD_INPUT", "app", "main", "parse_shapes", "run"]


def run(argv: list[str]) -> int:
    """Run the CLI on ``argv`` (without the program name); returns the exit code.

    Usage errors (a bad option value, a missing argument, an unknown option) are one line on stderr,
    ``estimate: error: ...``, with exit code 2, like every other bad input; ``--help`` is unchanged.
    """
    commands = {c.name or c.callback.__name__ for c in app.registered_commands} | {
        g.name for g in app.registered_groups
    }
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        argv = ["energy", *argv]
    if len(argv) > 1 and argv[0] in _MODEL_COMMANDS and not argv[1].startswith("-"):
        try:  # a bad model path is answered before typer builds its command (~0.1 s of CPU)
            check_input_file(argv[1], what="model", hint="give the path of an .onnx model file")
        except EstimatorError as exc:
            sys.stderr.write(f"estimate: error: {one_line(exc)}\n")
            return EXIT_BAD_INPUT
    name = argv[0] if argv and argv[0] in commands else None
    try:
        code = _command(name).main(args=argv, prog_name="estimate", standalone_mode=False)
    except _click_errors.NoArgsIsHelpError as exc:
        exc.show()  # `estimate` or a group alone: its help, as before
        return EXIT_BAD_INPUT
    except EstimatorError as exc:  # raised while parsing (an argument's check), before a command runs
        sys.stderr.write(f"estimate: error: {one_line(exc)}\n")
        return EXIT_BAD_INPUT
    except _click_errors.UsageError as exc:
        sys.stderr.write(f"estimate: error: {_usage_line(exc)}\n")
        return EXIT_BAD_INPUT
    except typer.Abort:
        sys.stderr.write("estimate: error: interrupted\n")
        return 130
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return code if isinstance(code, int) else 0


@functools.cache
def _command(name: str | None = None):
    """The click command typer builds from the app (built once per name): with ``name``, the app holding only
    that command or group - what running it needs; building all of them costs a command's start-up ~25 ms of
    CPU more - else the whole app (``estimate --help``, ``--version``)."""
    if name is None:
        return typer.main.get_command(app)
    one = copy.copy(app)
    one.registered_commands = [c for c in app.registered_commands if (c.name or c.callback.__name__) == name]
    one.registered_groups = [g for g in app.registered_groups if g.name == name]
    return typer.main.get_command(one)


def _usage_line(exc: Exception) -> str:
    """A usage error in one line: what is wrong and where to read how to call the command."""
    message = " ".join(exc.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    context = getattr(exc, "ctx", None)
    where = context.command_path if context is not None else "estimate"
    return f"{message}; see '{where} --help'"


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
