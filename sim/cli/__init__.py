"""The ``attnsim`` command line. Exit codes: 0 ok, 1 a check failed, 2 bad input."""
from __future__ import annotations

import sys

import click

from ..errors import AttnsimError
from .cases import cases
from .explain import explain
from .formula import formula
from .hw import hw
from .model import model
from .optical import sweep_optical
from .parallel import cp
from .predict import predict, speedup
from .sweep import sweep
from .tiles import tiles
from .validate import calibrate, compare, validate

EXIT_BAD_INPUT = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="attnsim")
def cli() -> None:
    """attnsim: exact counts, roofline and tile-level times for attention patterns."""


cli.add_command(predict)
cli.add_command(speedup)
cli.add_command(hw)
cli.add_command(tiles)
cli.add_command(explain)
cli.add_command(cases)
cli.add_command(formula)
cli.add_command(validate)
cli.add_command(calibrate)
cli.add_command(compare)
cli.add_command(sweep_optical)
cli.add_command(sweep)
cli.add_command(model)
cli.add_command(cp)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: every bad input becomes one line on stderr and exit code 2."""
    try:
        rv = cli.main(args=argv, prog_name="attnsim", standalone_mode=False)
    except AttnsimError as err:
        click.echo(f"attnsim: error: {err}", err=True)
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.Abort:
        click.echo("attnsim: aborted", err=True)
        return 130
    except click.ClickException as err:
        click.echo(f"attnsim: error: {err.format_message()}", err=True)
        return EXIT_BAD_INPUT
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
