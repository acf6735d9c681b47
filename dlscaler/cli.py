"""The ``dlscaler`` command line.

This is the one core module allowed to import the packages above the core. Commands import
their heavy dependencies inside the command body so ``dlscaler --help`` stays fast; the
other packages add their commands through a ``register(app)`` function in their own
``cli`` module (``predictors/cli.py``, ``providers/cli.py``, ``controller/cli.py``).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="dlscaler",
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
