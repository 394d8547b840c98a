"""How a command ends: user errors become one line on stderr and exit code 2, never a traceback.

Shared by the ``workbench`` command (``workbench.cli``) and the ``probes/`` scripts
(``workbench.analysis.script``), so neither imports the other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from workbench.errors import WorkbenchError


def run_command(command: click.Command, argv: list[str] | None, prog_name: str,
                usage_hint: Callable[[click.UsageError], str]) -> None:
    """Run a click command and exit: 0, its own integer code, 2 on a user error, 130 when aborted.

    ``usage_hint(exc)`` is appended to a usage error's line (e.g. `` (see --help)``).
    """
    try:
        code = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except WorkbenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message()}{usage_hint(exc)}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["run_command"]
