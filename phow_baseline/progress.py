"""Progress and notes: ``logging`` for messages, tqdm bars only on a terminal.

Every module logs to ``logging.getLogger(__name__)``, a child of the
``"phow_baseline"`` logger; the library installs no handler but a
:class:`logging.NullHandler` (``phow_baseline/__init__.py``), so an
application decides where messages go.  The command line calls
:func:`configure_logging` once: notes (INFO) and warnings then reach stderr.

:func:`progress_bar` is the one progress helper: on a terminal (or in a
Jupyter notebook) a normal tqdm bar on stderr; anywhere else (a log file, a
pipe, a batch job) a plain line through the ``"phow_baseline.progress"``
logger at most every ``interval`` seconds (default 10 s), plus one at the
end, instead of a bar's carriage returns.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable

#: The library's logger: every module's logger is a child of it.
LOGGER_NAME = "phow_baseline"
#: The logger of the non-terminal progress lines (INFO).
PROGRESS_LOGGER_NAME = "phow_baseline.progress"
#: Seconds between two progress lines when stderr is not a terminal.
DEFAULT_INTERVAL = 10.0


class _CurrentStderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a record comes.

    So that a captured or redirected stderr (pytest's ``capsys``, click's
    ``CliRunner``, ``contextlib.redirect_stderr``) receives the messages.
    """

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the current stderr is always used
        pass


def configure_logging(level: int = logging.INFO) -> logging.Handler:
    """Send the library's messages at ``level`` and above to stderr, one line each (for the CLI).

    Idempotent: a second call replaces the handler the first one added
    (only that one: handlers an application added stay).

    Parameters
    ----------
    level : int
        ``logging.INFO`` (notes and progress lines: the CLI's default),
        ``logging.WARNING`` (``--quiet``) or ``logging.DEBUG`` (``--verbose``).

    Returns
    -------
    logging.Handler
        The handler added to the ``"phow_baseline"`` logger.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        if isinstance(h, _CurrentStderrHandler):
            logger.removeHandler(h)
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def _interactive(stream) -> bool:
    """Whether a bar can be drawn: ``stream`` is a terminal, or tqdm.auto found a Jupyter notebook."""
    try:
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        pass
    import tqdm.auto  # noqa: F401  (it picks the notebook bar in a Jupyter kernel, through tqdm.autonotebook)
    from tqdm.autonotebook import tqdm as picked
    from tqdm.std import tqdm as std_tqdm

    return picked is not std_tqdm


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str | None = None,
    total: int | float | None = None,
    disable: bool = False,
    interval: float = DEFAULT_INTERVAL,
    **tqdm_kwargs,
):
    """A tqdm bar on a terminal; elsewhere, log lines at most every ``interval`` seconds and one at the end.

    Parameters
    ----------
    iterable : iterable, optional
        Items to iterate over (as ``tqdm(iterable)``).
    desc : str, optional
        What is progressing (``"encode"``): the bar's label, the log line's start.
    total : int or float, optional
        Expected number of steps (default ``len(iterable)`` when it has one).
    disable : bool
        No bar and no lines at all.
    interval : float
        Seconds between two log lines when stderr is not a terminal.
    **tqdm_kwargs
        Passed to tqdm (``unit``, ``initial``, ``unit_scale``, ``leave``,
        ``file``, ``mininterval``, ...); the log lines use ``unit``,
        ``initial`` and ``unit_scale``.

    Returns
    -------
    tqdm.tqdm or LogProgress
        Either supports iteration, ``update(n)``, ``set_postfix(**kw)``,
        ``set_postfix_str(s)``, ``set_description(s)``, ``close()`` and ``with``.
    """
    from tqdm.auto import tqdm

    if disable:
        return tqdm(iterable, desc=desc, total=total, disable=True, **tqdm_kwargs)
    stream = tqdm_kwargs.get("file") or sys.stderr
    if _interactive(stream):
        return tqdm(iterable, desc=desc, total=total, **tqdm_kwargs)
    return LogProgress(
        iterable,
        desc=desc,
        total=total,
        interval=interval,
        unit=tqdm_kwargs.get("unit", "it"),
        initial=tqdm_kwargs.get("initial", 0),
        unit_scale=bool(tqdm_kwargs.get("unit_scale", False)),
    )


class LogProgress:
    """Progress as plain log lines: at most one every ``interval`` seconds, and one when closed.

    The stand-in for a tqdm bar where stderr is not a terminal (see
    :func:`progress_bar`); it offers the part of tqdm's interface the
    library uses.  A line reads
    ``"encode: 120/338 shard (36%), 1:02 elapsed, 1:53 left, 1.9 shard/s"``
    (plus the postfix, e.g. ``", inertia=1.2e+06"``).

    Parameters
    ----------
    iterable : iterable, optional
        Items to iterate over.
    desc : str, optional
        The line's start.
    total : int or float, optional
        Expected steps (default ``len(iterable)`` when it has one).
    interval : float
        Seconds between two lines (the first comes ``interval`` seconds
        after the start).
    unit : str
        What a step is (``"img"``, ``"shard"``).
    initial : int or float
        Steps already done (a resumed job).
    unit_scale : bool
        Counts shown with SI prefixes (bytes of a download).
    logger : logging.Logger, optional
        Where the lines go (default ``"phow_baseline.progress"``, INFO).
    clock : callable, optional
        Seconds, monotonic (default :func:`time.monotonic`; a test passes a
        fake clock).

    Attributes
    ----------
    n : int or float
        Steps done so far, ``initial`` included.
    total : int, float or None
        As given, or ``len(iterable)``.
    desc : str
        The line's start (``""`` when none).
    postfix : str
        Text appended to each line (see :meth:`set_postfix`).
    start_t : float
        The clock's reading when the object was made, in seconds.
    closed : bool
        Whether :meth:`close` has written the last line.
    """

    def __init__(
        self,
        iterable=None,
        desc=None,
        total=None,
        interval=DEFAULT_INTERVAL,
        unit="it",
        initial=0,
        unit_scale=False,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] | None = None,
    ):
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.interval = float(interval)
        self.unit = unit
        self.unit_scale = unit_scale
        self.n = self.initial = initial
        self.postfix = ""
        self.logger = logger or logging.getLogger(PROGRESS_LOGGER_NAME)
        self._clock = clock or time.monotonic
        self.start_t = self._clock()
        self._last_line_t = self.start_t
        self.closed = False

    # -- tqdm's interface -------------------------------------------------
    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self):
        return int(self.total) if self.total is not None else len(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int | float = 1) -> None:
        """``n`` more steps done; a line if ``interval`` seconds passed since the last.

        Parameters
        ----------
        n : int or float, default=1
            Steps (in ``unit``) done since the previous call.
        """
        self.n += n
        now = self._clock()
        if now - self._last_line_t >= self.interval:
            self._last_line_t = now
            self.logger.info(self.line(now))

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs) -> None:
        """Values shown after the counts (``inertia=1.2e+06``), as tqdm's ``set_postfix``.

        Parameters
        ----------
        ordered_dict : mapping, optional
            Name -> value pairs, shown first.
        refresh : bool, default=True
            Accepted for tqdm's interface; lines come on their own schedule.
        **kwargs
            More name -> value pairs (they win over ``ordered_dict``).
        """
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh=True) -> None:
        """Text shown after the counts, as tqdm's ``set_postfix_str``.

        Parameters
        ----------
        s : str, default=""
            The text (``str(s)`` is kept).
        refresh : bool, default=True
            Accepted for tqdm's interface; lines come on their own schedule.
        """
        self.postfix = str(s)

    def set_description(self, desc=None, refresh=True) -> None:
        """Change the line's start, as tqdm's ``set_description``.

        Parameters
        ----------
        desc : str, optional
            The new start; None or ``""`` removes it.
        refresh : bool, default=True
            Accepted for tqdm's interface; lines come on their own schedule.
        """
        self.desc = desc or ""

    def refresh(self, *args, **kwargs) -> None:
        """Do nothing: tqdm's ``refresh``, but lines come on their own schedule.

        Parameters
        ----------
        *args, **kwargs
            Accepted for tqdm's interface and ignored.
        """

    def close(self) -> None:
        """The last line (always), once."""
        if self.closed:
            return
        self.closed = True
        self.logger.info(self.line(self._clock(), final=True))

    # -- the line ---------------------------------------------------------
    def _count(self, n) -> str:
        from tqdm.std import tqdm as std_tqdm

        return std_tqdm.format_sizeof(n) if self.unit_scale else f"{n:g}" if isinstance(n, float) else str(n)

    def line(self, now: float, final: bool = False) -> str:
        """The progress line at time ``now`` (``final``: the closing line).

        The rate is (``n`` - ``initial``) / elapsed seconds; the time left is
        (``total`` - ``n``) / rate, shown only while not final.

        Parameters
        ----------
        now : float
            The clock's reading, in seconds (same clock as ``start_t``).
        final : bool, default=False
            The closing line: no time left, and ``"done, "`` before the counts
            when ``n`` reached ``total``.

        Returns
        -------
        str
            ``"DESC: N/TOTAL UNIT (P%), MM:SS elapsed, MM:SS left, R UNIT/s, POSTFIX"``
            (times as tqdm writes them, ``H:MM:SS`` past an hour; parts
            without a value left out).
        """
        from tqdm.std import tqdm as std_tqdm

        elapsed = max(now - self.start_t, 0.0)
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else None
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            counts = f"{self._count(self.n)}/{self._count(self.total)} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            counts = f"{self._count(self.n)} {self.unit}"
        parts = [counts, f"{std_tqdm.format_interval(elapsed)} elapsed"]
        if not final and rate and self.total and self.n < self.total:
            parts.append(f"{std_tqdm.format_interval((self.total - self.n) / rate)} left")
        if rate:
            parts.append(f"{self._count(rate) if self.unit_scale else f'{rate:.3g}'} {self.unit}/s")
        if final and self.total and self.n >= self.total:
            parts[0] = "done, " + parts[0]
        return head + ", ".join(parts) + (f", {self.postfix}" if self.postfix else "")
