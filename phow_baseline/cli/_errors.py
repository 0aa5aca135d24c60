"""The one place where a library error becomes a one-line message of the command line.

Every command class of the CLI (:class:`phow_baseline.cli._group.Command`)
runs its callback through :func:`translate`: an error the user can act on
(a bad dataset folder, an unreadable or inconsistent file, a busy work
folder, a full disk, a missing extra) ends the command with ``Error: ...``
on one line and exit status 1, or, for a bad option value, with click's
usage error (exit status 2) naming the option; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno
import logging
import re

import click

#: Extras by the top-level module a missing import names: what to install.
MISSING_EXTRAS = {
    "torch": "this command needs the cnn extra (torch and torchvision): pip install -e '.[cnn]'",
    "torchvision": "this command needs the cnn extra (torch and torchvision): pip install -e '.[cnn]'",
    "distributed": "--backend dask needs the cluster extra (dask.distributed): pip install 'phow-baseline[cluster]'",
    "dask": "--backend dask needs the cluster extra (dask.distributed): pip install 'phow-baseline[cluster]'",
}

logger = logging.getLogger("phow_baseline.cli")


def library_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that end a command with their own message (all name the file or the value).

    Returns
    -------
    tuple of exception classes
        ``DatasetError``, ``DataFileError`` (and ``ModelFileError``), ``ConfigError``, ``ImageReadError``,
        ``PairError``, ``HeatmapsUnavailableError``, ``DecisionsUnavailableError`` (all ``ValueError``, which
        the library raises for any bad value it is given), ``FolderBusyError`` and ``DownloadError``.
    """
    from ..data.download import DownloadError
    from ..io import FolderBusyError

    # DatasetError, DataFileError, ModelFileError, ConfigError, ImageReadError, PairError and the model
    # protocol's errors are ValueErrors: the library's way of saying "this value or file is wrong"
    return ValueError, FolderBusyError, DownloadError


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and the reason, e.g. ``"runs/x: Read-only file system"``.

    Parameters
    ----------
    exc : OSError
        The error (``filename`` and ``filename2`` name the paths, when known).

    Returns
    -------
    str
        ``"PATH: reason"`` (``"A -> B: reason"`` for a rename); a full disk reads
        ``"PATH: no space left on device"`` (with the sizes when the library knew them).
    """
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        what = exc.strerror if exc.strerror and exc.strerror.startswith("no space") else "no space left on device"
    else:
        what = exc.strerror or str(exc)
    if exc.filename is None:
        return what
    both = f"{exc.filename} -> {exc.filename2}" if getattr(exc, "filename2", None) else str(exc.filename)
    return f"{both}: {what}"


def _config_option(ctx: click.Context | None, field: str) -> click.Parameter | None:
    """The option of the running command that sets config field ``field`` (its parameter name), if any."""
    if ctx is None:
        return None
    return next((p for p in ctx.command.params if isinstance(p, click.Option) and p.name == field), None)


def translate(exc: BaseException, ctx: click.Context | None = None) -> click.ClickException | None:
    """The click error that reports ``exc`` in one line, or None when ``exc`` is not the user's to fix.

    Parameters
    ----------
    exc : BaseException
        What a command raised.
    ctx : click.Context, optional
        The command's context: a :class:`~phow_baseline.config.ConfigError` on a field that one of its
        options sets becomes a usage error naming that option (exit status 2).

    Returns
    -------
    click.ClickException or None
        ``None`` for a broken pipe (click's own handling), an import error of a module that no extra
        provides, and every error that is not a library error (a bug: the traceback stays).
    """
    if isinstance(exc, OSError):  # before ValueError-like checks: a full disk, a read-only folder, ...
        if exc.errno == errno.EPIPE:
            return None
        return click.ClickException(describe_os_error(exc))
    if isinstance(exc, ImportError):
        named = re.search(r"No module named '([^']+)'", str(exc))  # exc.name is unset by some import hooks
        top = (exc.name or (named.group(1) if named else "")).split(".")[0]
        return click.ClickException(f"{MISSING_EXTRAS[top]} ({exc})") if top in MISSING_EXTRAS else None
    from ..config import ConfigError

    if isinstance(exc, ConfigError):
        option = _config_option(ctx, exc.field)
        if option is not None:
            return click.BadParameter(str(exc), ctx=ctx, param_hint=f"'{option.opts[0]}'")
    if isinstance(exc, library_errors()):
        return click.ClickException(str(exc))
    return None


def run_translated(ctx: click.Context, invoke):
    """Call ``invoke()`` (a command's callback) and report library errors in one line.

    Parameters
    ----------
    ctx : click.Context
        The command's context.
    invoke : callable
        ``invoke() -> result``.

    Returns
    -------
    The callback's result.

    Raises
    ------
    click.ClickException
        For every error :func:`translate` knows; the traceback goes to the log at DEBUG (``--verbose``).
    """
    try:
        return invoke()
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 -- translated or re-raised as it was
        mapped = translate(exc, ctx)
        if mapped is None:
            raise
        logger.debug("the error's traceback:", exc_info=exc)
        raise mapped from None
