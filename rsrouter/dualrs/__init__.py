"""Full Dual RS (Sun, Mao, Vechev 2026): one classifier for every candidate sigma, its variance
estimator (a smoothed router over that classifier's sigmas), trained in alternating rounds.

``config`` holds the YAML schema, ``loop`` the rounds (train, label, fine-tune, benchmark) and
the export of a round's pair, ``rounds`` what each round did and which one is best. The pieces
are rsrouter's own: a classifier whose card serves several sigmas (``REF#sigma=S``),
:func:`..training.router.train_router` for the estimator and the benchmark harness for every
round's validation curves.
"""

from .config import DualRSConfig, load_dualrs_config, parse_dualrs_config
from .loop import export_round, train_dualrs
from .rounds import best_round

__all__ = ["DualRSConfig", "best_round", "export_round", "load_dualrs_config",
           "parse_dualrs_config", "train_dualrs"]
