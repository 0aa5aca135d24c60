"""One table of label synonyms, and the labels two datasets share (for cross-dataset evaluation).

Shared names are ChestX-ray14's spellings where ChestX-ray14 has the
finding (so a ChestX-ray14 model's labels are already shared names), and
CheXpert's otherwise.  Names are compared after :func:`label_key`
(lower case, ``_`` and ``-`` as spaces, spaces collapsed), so
``Pleural_Thickening`` = ``pleural thickening`` and CheXpert's
``Pleural Effusion`` = PadChest's ``pleural effusion``.

Choices (Irvin et al. 2019 define CheXpert's observations; Wang et al. 2017
ChestX-ray14's; Bustos et al. 2020 PadChest's terms):

* ``Effusion`` = CheXpert/MIMIC ``Pleural Effusion`` = PadChest ``pleural effusion``.
* ``Nodule`` and ``Mass`` are **not** CheXpert's ``Lung Lesion``: Lung
  Lesion is their union (nodule, mass, and other focal lesions), so scoring a
  Nodule classifier against Lung Lesion labels would count every mass as a
  miss.  Both sides are dropped; pass ``extra={"Lung Lesion": "Mass"}`` to
  :func:`shared_labels` to pair them knowingly.
* ``Pleural_Thickening`` is **not** ``Pleural Other`` (thickening, plaques,
  calcification, fibrothorax...): dropped, for the same reason.
* ``Infiltration`` and ``Consolidation`` are **not** ``Lung Opacity`` (any
  opacity: also edema, atelectasis, lesions); ``Cardiomegaly`` is **not**
  ``Enlarged Cardiomediastinum`` (which also holds mediastinal widening).
* ``Edema`` = ``Pulmonary Edema`` (PadChest's term); ``Fibrosis`` =
  ``Pulmonary Fibrosis``; ``Hernia`` = ``Hiatal Hernia`` (ChestX-ray14's
  hernias are hiatal); ``Infiltration`` = ``Infiltrate(s)`` (the NIH box
  list's and PadChest's spellings); ``No Finding`` = PadChest ``normal``.

:data:`PADCHEST_TERMS` groups PadChest's finer terms under the shared names
(subtypes included: ``lobar atelectasis`` is an Atelectasis), as exact terms,
never substrings: ``subcutaneous emphysema`` is not Emphysema.

One concept at this length: label synonyms across datasets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

#: Shared name -> its other spellings in the supported datasets (the shared
#: name itself always matches).  The order is ChestX-ray14's, then CheXpert's.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (),
    "Cardiomegaly": (),
    "Effusion": ("Pleural Effusion",),
    "Infiltration": ("Infiltrate", "Infiltrates"),
    "Mass": ("Pulmonary Mass",),
    "Nodule": (),
    "Pneumonia": (),
    "Pneumothorax": (),
    "Consolidation": (),
    "Edema": ("Pulmonary Edema", "Oedema"),
    "Emphysema": (),
    "Fibrosis": ("Pulmonary Fibrosis",),
    "Pleural_Thickening": ("Pleural Thickening",),
    "Hernia": ("Hiatal Hernia", "Hiatus Hernia"),
    # CheXpert's observations without a ChestX-ray14 equivalent
    "No Finding": ("Normal",),
    "Enlarged Cardiomediastinum": (),
    "Lung Opacity": (),
    "Lung Lesion": (),
    "Pleural Other": (),
    "Fracture": (),
    "Support Devices": (),
}

#: Pairs that look alike but are not the same finding, with the reason
#: (said by :func:`why_not_shared`; see the module docstring).
NOT_EQUIVALENT: dict[frozenset, str] = {
    frozenset({"Nodule", "Lung Lesion"}): "Lung Lesion is nodule or mass (or another focal lesion), not nodule alone",
    frozenset({"Mass", "Lung Lesion"}): "Lung Lesion is nodule or mass (or another focal lesion), not mass alone",
    frozenset({"Pleural_Thickening", "Pleural Other"}): "Pleural Other also holds plaques, calcification and "
    "fibrothorax",
    frozenset({"Infiltration", "Lung Opacity"}): "Lung Opacity is any opacity (edema, atelectasis, lesions too)",
    frozenset({"Consolidation", "Lung Opacity"}): "Lung Opacity is any opacity (edema, atelectasis, lesions too)",
    frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"}): "Enlarged Cardiomediastinum also holds mediastinal "
    "widening",
}

#: Shared name -> the PadChest terms (lower case, as in its ``Labels``
#: column) that make it positive.  Infiltration follows torchxrayvision's
#: PadChest mapping (infiltrates and the interstitial / alveolar / ground
#: glass patterns) less ``consolidation`` and ``air bronchogram``, which are
#: Consolidation here.
PADCHEST_TERMS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "atelectasis",
        "laminar atelectasis",
        "segmental atelectasis",
        "lobar atelectasis",
        "total atelectasis",
        "round atelectasis",
        "atelectasis basal",
    ),
    "Cardiomegaly": ("cardiomegaly",),
    "Effusion": ("pleural effusion", "loculated pleural effusion", "loculated fissural effusion"),
    "Infiltration": (
        "infiltrates",
        "interstitial pattern",
        "reticular interstitial pattern",
        "reticulonodular interstitial pattern",
        "ground glass pattern",
        "alveolar pattern",
    ),
    "Mass": ("mass", "pulmonary mass"),
    "Nodule": ("nodule", "multiple nodules"),
    "Pneumonia": ("pneumonia", "atypical pneumonia"),
    "Pneumothorax": ("pneumothorax", "hydropneumothorax"),
    "Consolidation": ("consolidation", "air bronchogram"),
    "Edema": ("pulmonary edema",),
    "Emphysema": ("emphysema",),
    "Fibrosis": ("pulmonary fibrosis",),
    "Pleural_Thickening": ("pleural thickening", "apical pleural thickening", "calcified pleural thickening"),
    "Hernia": ("hiatal hernia",),
    "Fracture": (
        "fracture",
        "rib fracture",
        "clavicle fracture",
        "humeral fracture",
        "vertebral fracture",
        "callus rib fracture",
    ),
    "No Finding": ("normal",),
}


def label_key(name: str) -> str:
    """The comparison key of a label name.

    Parameters
    ----------
    name : str
        A label name as a dataset spells it (anything ``str`` accepts).

    Returns
    -------
    str
        Lower case, ``_`` and ``-`` as spaces, spaces collapsed and stripped.
    """
    return " ".join(str(name).replace("_", " ").replace("-", " ").lower().split())


def _table(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    table = {}
    for shared, others in SYNONYMS.items():
        for n in (shared, *others):
            table[label_key(n)] = shared
    for name, shared in (extra or {}).items():
        table[label_key(name)] = table.get(label_key(shared), shared)
    return table


def shared_name(label: str, extra: Mapping[str, str] | None = None) -> str | None:
    """The shared name of ``label`` (None when the table does not know it).

    Parameters
    ----------
    label : str
        A label name as a dataset spells it.
    extra : mapping, optional
        More synonyms, ``{name: shared name or one of its synonyms}``.

    Returns
    -------
    str or None
        A key of :data:`SYNONYMS` (or the shared name ``extra`` gives).
    """
    return _table(extra).get(label_key(label))


class LabelPair(NamedTuple):
    """One label two datasets share: the shared name, each side's name and column index.

    Parameters
    ----------
    shared : str
        The shared name (a key of :data:`SYNONYMS`, or side a's name for a
        label the table does not know).
    a, b : str
        The label as each side spells it.
    index_a, index_b : int
        Its 0-based column in each side's label list.
    """

    shared: str
    a: str
    b: str
    index_a: int
    index_b: int


def shared_labels(
    labels_a: Sequence[str], labels_b: Sequence[str], extra: Mapping[str, str] | None = None
) -> tuple[list[LabelPair], list[str], list[str]]:
    """The labels of ``labels_a`` and ``labels_b`` that name the same finding.

    A label matches through :data:`SYNONYMS` (and ``extra``), or, when the
    table does not know it, by its :func:`label_key` alone (so a user's own
    label ``"Lipoma"`` meets ``"lipoma"``).

    Parameters
    ----------
    labels_a, labels_b : sequence of str
        E.g. a model's labels and an external dataset's.
    extra : mapping, optional
        More synonyms, ``{name: shared name}`` (e.g. ``{"Lung Lesion": "Mass"}``).

    Returns
    -------
    pairs : list of LabelPair
        In the order of ``labels_a``.
    dropped_a, dropped_b : list of str
        The labels of each side without a partner, in their order.

    Raises
    ------
    ValueError
        If two labels of one side map to the same shared name.
    """
    table = _table(extra)

    def keyed(labels, side):
        out = {}
        for i, l in enumerate(labels):
            k = table.get(label_key(l), label_key(l))
            if k in out:
                raise ValueError(f"labels {side}: {labels[out[k]]!r} and {l!r} are the same finding ({k})")
            out[k] = i
        return out

    ka, kb = keyed(list(labels_a), "a"), keyed(list(labels_b), "b")
    pairs = [
        LabelPair(k if k in SYNONYMS else labels_a[i], labels_a[i], labels_b[kb[k]], i, kb[k])
        for k, i in ka.items()
        if k in kb
    ]
    paired_a = {p.index_a for p in pairs}
    paired_b = {p.index_b for p in pairs}
    dropped_a = [l for i, l in enumerate(labels_a) if i not in paired_a]
    dropped_b = [l for i, l in enumerate(labels_b) if i not in paired_b]
    return pairs, dropped_a, dropped_b


def why_not_shared(label_a: str, label_b: str) -> str | None:
    """The documented reason two look-alike labels are not paired.

    Parameters
    ----------
    label_a, label_b : str
        Two label names, any spelling.

    Returns
    -------
    str or None
        From :data:`NOT_EQUIVALENT`; None when the table has no note.
    """
    a, b = shared_name(label_a) or label_a, shared_name(label_b) or label_b
    return NOT_EQUIVALENT.get(frozenset({a, b}))
