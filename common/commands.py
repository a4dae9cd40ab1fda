"""What the three commands (``direct-train``, ``direct-export``, ``direct-run``) share.

:func:`command` declares a click command with the common conventions: ``-h/--help``,
``-V/--version`` and one error contract.  Any :class:`~direct_edge.errors.UserError` or OSError
raised while the command runs ends it with one line on stderr, ``PROG: error: ...``, and exit
code 2, never a traceback.
"""

from __future__ import annotations

import click

from direct_edge import __version__
from direct_edge.errors import UserError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line (an OSError's ``strerror`` and file name)."""
    if isinstance(exc, OSError) and not isinstance(exc, UserError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


class Command(click.Command):
    """A click command whose user errors end in one line and exit code 2."""

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
