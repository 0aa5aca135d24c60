"""The ``phow-baseline`` group and the command class every command uses.

:class:`Command` runs each command through :func:`phow_baseline.cli._errors.run_translated`
(library errors become one line), accepts the hidden per-command ``--quiet``
of 0.1, and states the default of an optional argument in its help.
:func:`main` is the group: ``--quiet`` / ``--verbose`` set the library's
logging and the progress bars for whichever command follows.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import click

from .. import __version__
from ._errors import run_translated
from ._options import QUIET_KEY

logger = logging.getLogger("phow_baseline.cli")


def set_verbosity(ctx: click.Context, level: int) -> None:
    """Send the library's log records at ``level`` and above to stderr; progress bars off above INFO.

    Parameters
    ----------
    ctx : click.Context
        Any context of the invocation (``ctx.meta`` is shared by the group and its command).
    level : int
        ``logging.WARNING`` (``--quiet``), ``logging.INFO`` (the default) or ``logging.DEBUG`` (``--verbose``).
    """
    from ..progress import configure_logging

    configure_logging(level)
    ctx.meta[QUIET_KEY] = level > logging.INFO


def _quiet_after_the_command(ctx, param, value):
    """``COMMAND --quiet``, 0.1's spelling: progress bars off (its notes still reach stderr, as in 0.1)."""
    if value:
        ctx.meta[QUIET_KEY] = True


def _warning_to_log(message, category, filename, lineno, file=None, line=None):
    logger.warning(f"warning: {message}")


def _has_default(param) -> bool:
    """Whether an argument has a real default (click 8.2+ marks "none given" with a sentinel object)."""
    d = param.default
    return d is not None and not callable(d) and isinstance(d, (str, int, float, Path, tuple, list))


class Command(click.Command):
    """A ``phow-baseline`` command: library errors in one line, 0.1's ``--quiet`` (no progress bars) accepted
    after it, hidden.

    Its help names the default of each optional argument (click shows those of options).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not any(p.name == "quiet" for p in self.params):  # 0.1 took --quiet after each command
            self.params.append(
                click.Option(
                    ["--quiet"], is_flag=True, hidden=True, expose_value=False, callback=_quiet_after_the_command
                )
            )

    def format_help_text(self, ctx, formatter):
        super().format_help_text(ctx, formatter)
        notes = [
            f"{p.human_readable_name} defaults to {p.default}."
            for p in self.get_params(ctx)
            if isinstance(p, click.Argument) and not p.required and _has_default(p)
        ]
        if notes:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(" ".join(notes))

    def invoke(self, ctx):
        return run_translated(ctx, lambda: click.Command.invoke(self, ctx))


class Group(click.Group):
    """A group of :class:`Command` s; old command names (0.1 spelt them -ise) are accepted, not listed."""

    command_class = Command
    group_class = type  # subgroups are Groups too
    #: old name -> name
    aliases = {"localise": "localize", "localise-eval": "localize-eval"}

    def get_command(self, ctx, cmd_name):
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="phow-baseline")
@click.option("--quiet", "-q", is_flag=True, help="Warnings and errors only on stderr; no progress bars.")
@click.option("--verbose", "-v", is_flag=True, help="Debug messages too, and the traceback behind an error.")
@click.pass_context
def main(ctx, quiet, verbose):
    """PHOW + SVM baseline (and CNN comparison) for NIH ChestX-ray14.

    Summaries go to stdout, progress and warnings to stderr, results to files.
    """
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    set_verbosity(ctx, logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    warnings.showwarning = _warning_to_log
