"""A synthetic chest-radiograph phantom with ground truth, in the ChestX-ray14 layout.

The library's oracle: every image is drawn from a seeded generator, every
finding is drawn where its box says, and the folder it writes reads exactly
like the NIH release (``images/``, ``Data_Entry_2017_v2020.csv``,
``train_val_list.txt``, ``test_list.txt``, ``BBox_List_2017.csv``), so every
command runs on it unchanged.  ``phantom_truth.json`` adds what the NIH files
cannot hold: every finding's box on every image, and the follow-up series
with what changed.

**These images are synthetic.** They show that the pipeline works end to end
and learns what is learnable; they say nothing about accuracy on real X-rays.

Anatomy (intensities: 0 = black, air; 1 = white, dense; then exposure,
blur and quantum noise): an elliptical body of soft tissue, two lung fields
(dark), the heart and mediastinum (bright, cardiothoracic ratio 0.40-0.48
when normal), domed hemidiaphragms, 9 posterior ribs per side drawn as arcs,
clavicles, soft-tissue texture, variable patient size and exposure.

Findings and their appearance:

=====================  =====================================================
Atelectasis            a plate-like band opacity at a lung base
Cardiomegaly           cardiothoracic ratio 0.55-0.65 (the heart box)
Effusion               a basal opacity with a meniscus, blunting the angle
Infiltration           faint patchy opacities in one lung (subtle on purpose)
Mass                   a round opacity of radius 5-8 % of the image width
Nodule                 a small round opacity of radius 1.5-2.5 % (subtle)
Pneumonia              a dense lobar patch with blurred edges
Pneumothorax           an apical-lateral rim without lung markings and a
                       visible pleural line
Consolidation          a large homogeneous opacity
Edema                  bilateral perihilar ("bat-wing") haziness
Emphysema              hyperlucent, over-expanded lungs, flat diaphragms
Fibrosis               a reticular network of thin lines at the bases
Pleural_Thickening     a bright band along the lateral chest wall
Hernia                 a round retrocardiac opacity with an air-fluid level
=====================  =====================================================

The modules: :mod:`._anatomy` (the normal chest and the imaging chain),
:mod:`._findings` (the findings' appearances, one radiograph),
:mod:`.dataset` (:func:`make_phantom_dataset`, :func:`load_truth`) and
:mod:`.like` (:func:`make_phantom_like`).
"""

from ..chestxray14 import LABELS  # noqa: F401  (0.1's phow_baseline.phantom gave it)
from ._anatomy import DEFAULT_SIZE, Anatomy, finish, make_anatomy, render_base
from ._findings import CONSPICUOUS, SUBTLE, draw_finding, render_case
from .dataset import DEFAULT_ENRICH, FOLLOWUP_STORIES, REAL_COMBINATIONS, load_truth, make_phantom_dataset
from .like import LIKE_CHUNK, LIKE_VERSION, image_seed, make_phantom_like, render_like

__all__ = [
    "CONSPICUOUS",
    "DEFAULT_ENRICH",
    "DEFAULT_SIZE",
    "FOLLOWUP_STORIES",
    "LIKE_CHUNK",
    "LIKE_VERSION",
    "REAL_COMBINATIONS",
    "SUBTLE",
    "Anatomy",
    "draw_finding",
    "finish",
    "image_seed",
    "load_truth",
    "make_anatomy",
    "make_phantom_dataset",
    "make_phantom_like",
    "render_base",
    "render_case",
    "render_like",
]
