"""The ``dlscaler`` command line.

This is the one core module allowed to import the packages above the core. Commands import
their heavy dependencies inside the command body so ``dlscaler --help`` stays fast; the
other packages add their commands through a ``register(app)`` function in their own
``cli`` module (``predictors/cli.py``, ``providers/cli.py``, ``controller/cli.py``).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup


class _PlainErrorsWhereNoTerminal(TyperGroup):
    """Usage errors as plain lines when stderr is not a terminal.

    Typer draws usage errors in a rich panel wrapped at the console's width: 80 columns when
    stderr is not a terminal (CI logs, pipes), which splits paths and option names across
    lines. Without a markup mode it prints the plain message instead, one line each, never
    wrapped. The group is built anew for each invocation, so this holds for one run. On a
    terminal the panel stays. (The commands print their errors through ``typer.echo``;
    tune and simulate print messages that carry paths soft-wrapped, for the same reason.)
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not _is_terminal(sys.stderr):
            self.rich_markup_mode = None
        return super().main(*args, **kwargs)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


app = typer.Typer(
    name="dlscaler",
    cls=_PlainErrorsWhereNoTerminal,
    help="Cloud-agnostic autoscaler for deep-learning GPU clusters, and its trace simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_PLUGINS = ("simulator.cli", "predictors.cli", "providers.cli", "controller.cli")


@app.callback()
def _main() -> None:
    """dlscaler: simulate, tune and run GPU node-pool autoscaling policies."""


def _register_plugins() -> None:
    for name in _PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            raise
        module.register(app)


_register_plugins()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
