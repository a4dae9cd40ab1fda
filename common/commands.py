"""What the three commands (``direct-train``, ``direct-export``, ``direct-run``) share.

:func:`command` declares a click command with the common conventions: ``-h/--help``,
``-V/--version`` and one error contract.  A bad option value, and any
:class:`~direct_edge.errors.UserError` or OSError raised while the command runs, end it with one line
on stderr, ``PROG: error: ...``, and exit code 2, never a traceback.
"""

from __future__ import annotations

import click

from direct_edge import __version__
from direct_edge.errors import UserError, one_line

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class OneLineUsageError(click.UsageError):
    """A bad option or argument, shown as one line (click's own format adds the usage and a hint)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog

    def show(self, file=None) -> None:
        click.echo(f"{self.prog}: error: {' '.join(self.format_message().split())}", err=True)


class Command(click.Command):
    """A click command whose user errors end in one line and exit code 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise OneLineUsageError(self.name, exc.format_message()) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (UserError, OSError) as exc:
            click.echo(f"{self.name}: error: {one_line(exc)}", err=True)
            ctx.exit(2)


def command(prog: str):
    """Decorator: ``func`` becomes the click command ``prog`` with the shared conventions."""

    def decorate(func):
        func = click.version_option(
            __version__, "-V", "--version", prog_name=prog, message="%(prog)s %(version)s"
        )(func)
        return click.command(name=prog, cls=Command, context_settings=CONTEXT_SETTINGS)(func)

    return decorate
