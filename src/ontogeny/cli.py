"""The `ontogeny` command line: each command is a thin call into the library."""

from __future__ import annotations

import importlib

import typer

from ontogeny import __version__

app = typer.Typer(
    name="ontogeny",
    help="Developmental interpretability: how a network's features and capabilities are born, live and die "
         "during training.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Each module in ontogeny.commands adds its commands to the app with register(app).
COMMAND_MODULES = ("series", "cache", "dictionaries", "lifehistory", "crosscode", "slt", "emergence", "study", "imports")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ontogeny {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """ontogeny: track features and capabilities through a series of training checkpoints."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"ontogeny.commands.{_name}").register(app)

if __name__ == "__main__":
    app()
