"""The ``estimate`` command line: a thin typer app over the library.

``estimate MODEL.onnx --hw NAME`` is shorthand for ``estimate energy MODEL.onnx --hw NAME``. Every
:class:`~estimator.errors.EstimatorError` becomes one line on stderr and exit code 2, with no traceback.
One module per command group registers its commands on the shared app (``estimator.cli._app``).
"""

from __future__ import annotations

import importlib
import sys

from estimator.cli._app import EXIT_BAD_INPUT, app, parse_shapes

#: Command groups in the order `estimate --help` lists them; importing one registers its commands.
COMMAND_MODULES = ("estimate", "compare", "report", "llm", "hardware", "data", "learn")
for _module in COMMAND_MODULES:
    importlib.import_module(f"estimator.cli.{_module}")

__all__ = ["EXIT_BAD_INPUT", "app", "main", "parse_shapes", "run"]


def run(argv: list[str]) -> int:
    """Run the CLI on ``argv`` (without the program name); returns the exit code."""
    commands = {c.name or c.callback.__name__ for c in app.registered_commands} | {
        g.name for g in app.registered_groups
    }
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        argv = ["energy", *argv]
    try:
        app(args=argv, prog_name="estimate", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
