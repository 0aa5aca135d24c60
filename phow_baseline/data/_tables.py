"""Readers the dataset adapters share: find a file, read a CSV as strings, label cells to codes, scan image trees.

Every error names the file (and the column and line where there is one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .protocol import NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN, DatasetError

# --------------------------------------------------------------------------


def find_file(root: Path, candidates: Sequence[str], what: str, required: bool = True) -> Path | None:
    """The first of ``candidates`` present in ``root``.

    Parameters
    ----------
    root : Path
    candidates : sequence of str
        File names (or paths below ``root``), in order of preference.
    what : str
        What the file is, for the message.
    required : bool
        Raise when none is present (else return None).

    Returns
    -------
    Path or None

    Raises
    ------
    DatasetError
        Naming ``root`` and every candidate looked for.
    """
    for name in candidates:
        p = Path(root) / name
        if p.is_file():
            return p
    if required:
        raise DatasetError(f"{root}: no {what} found (looked for {', '.join(candidates)})")
    return None


def read_table(path, what: str, required: Sequence[str] = (), **kwargs) -> pd.DataFrame:
    """Read a CSV (plain or ``.gz``) as strings, blank cells as ``""``.

    Parameters
    ----------
    path : path
    what : str
        What the file is, for messages.
    required : sequence of str
        Columns that must be present.

    Returns
    -------
    DataFrame of str, columns stripped of surrounding spaces, ``Unnamed``
    index columns dropped.

    Raises
    ------
    DatasetError
        Naming the file: unreadable, empty, or a required column missing.
    """
    import gzip

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except (
        OSError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        EOFError,
        gzip.BadGzipFile,
    ) as exc:
        raise DatasetError(f"{path}: cannot read {what} ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.loc[:, [c for c in df.columns if not c.startswith("Unnamed")]]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: {what} lacks column(s) {missing}; found {list(df.columns)}")
    return df


def csv_line(row_position: int) -> int:
    """The line of a CSV file holding a data row.

    Parameters
    ----------
    row_position : int
        0-based position of the row in the table (after a one-line header).

    Returns
    -------
    int
        1-based line number in the file (``row_position + 2``).
    """
    return int(row_position) + 2


#: Cell spellings of the label codes (CheXpert writes ``1.0``, a user ``1``).
CELL_CODES = {
    "1": POSITIVE,
    "1.0": POSITIVE,
    "0": NEGATIVE,
    "0.0": NEGATIVE,
    "-1": UNCERTAIN,
    "-1.0": UNCERTAIN,
    "": NOT_MENTIONED,
}


def codes_from_cells(df: pd.DataFrame, columns: Sequence[str], source) -> np.ndarray:
    """The ``int8`` code matrix of label columns written ``1``/``0``/``-1``/blank (``.0`` allowed).

    Parameters
    ----------
    df : DataFrame of str
    columns : sequence of str
        The label columns, in the order of the matrix.
    source : path
        The file, for messages.

    Returns
    -------
    ndarray of int8, shape (len(df), len(columns))

    Raises
    ------
    DatasetError
        Naming the file, the column, the line and the value of the first bad cell.
    """
    out = np.empty((len(df), len(columns)), np.int8)
    for j, col in enumerate(columns):
        cells = df[col].astype(str).str.strip()
        mapped = cells.map(CELL_CODES)
        bad = mapped.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{source}: column {col!r}, line {csv_line(i)}: label value {cells.iloc[i]!r} "
                f"({int(bad.sum())} bad cell(s)); expected 1, 0, -1 or blank"
            )
        out[:, j] = mapped.to_numpy(dtype=np.int64)
    return out


def scan_files(folder, suffixes: Sequence[str]) -> dict[str, Path]:
    """Every file under ``folder`` (recursively) ending in one of ``suffixes``.

    Parameters
    ----------
    folder : path
        Searched recursively; a missing folder holds nothing.
    suffixes : sequence of str
        File name endings, compared case-insensitively (``".jpg"``).

    Returns
    -------
    dict
        Path relative to ``folder`` (POSIX, str) -> Path.
    """
    folder = Path(folder)
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    suffixes = tuple(s.lower() for s in suffixes)
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(suffixes):
                p = Path(dirpath) / f
                found[p.relative_to(folder).as_posix()] = p
    return found
