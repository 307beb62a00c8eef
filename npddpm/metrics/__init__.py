r"""Sample-quality metrics, each to be reported beside its real-vs-real floor.

Two-sample metrics take ``x`` (the samples under test, e.g. generated) and ``y`` (the
reference, real data), arrays of shape ``(n, ...)`` flattened to ``(n, d)``. All pairwise work
is chunked so no more than ~16 MB of distances exist at once (n up to ~10⁴ is fine).

==========================  ==================================================================
metric                      what it is (reference)
==========================  ==================================================================
:func:`energy_distance`     ``2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖``, U-statistic (Székely & Rizzo 2013)
:func:`sliced_wasserstein`  mean over directions θ of W₁ of the projections (Bonneel et al. 2015)
:func:`mmd2`                unbiased MMD² summed over RBF bandwidths (Gretton et al. 2012, Eq. 3)
:func:`c2st_1nn`            leave-one-out 1-NN two-sample accuracy (Lopez-Paz & Oquab 2017)
:func:`precision_recall`    k-NN precision/recall (Kynkäänniemi et al. 2019), density and
                            coverage (Naeem et al. 2020)
:func:`neg_log_likelihood`  exact ``E[−log p_data(x)]`` where the density is known (nats)
:func:`frechet_distance`    ``‖μx−μy‖² + tr(Σx + Σy − 2(Σx^½ Σy Σx^½)^½)``, e.g. in PCA space
:func:`class_coverage`      classes produced, via a classifier fitted on training images
:func:`nearest_distance`    distance of each sample to its nearest training image (copying)
==========================  ==================================================================

:func:`real_vs_real` evaluates any of them between two independent real samples of the same
size: the floor a perfect model would reach at that sample size. :func:`evaluate` computes
every metric that applies to a dataset, each beside its floor.
"""

from .density import entropy_estimate, inside_support_rate, neg_log_likelihood
from .evaluate import Floor, evaluate, real_vs_real
from .features import PCA, LogisticRegression
from .images import class_coverage, digits_classifier, digits_pca, frechet_distance
from .two_sample import (
    PrecisionRecall,
    c2st_1nn,
    default_bandwidths,
    energy_distance,
    mmd2,
    nearest_distance,
    precision_recall,
    sliced_wasserstein,
)

__all__ = [
    "PCA",
    "Floor",
    "LogisticRegression",
    "PrecisionRecall",
    "c2st_1nn",
    "class_coverage",
    "default_bandwidths",
    "digits_classifier",
    "digits_pca",
    "energy_distance",
    "entropy_estimate",
    "evaluate",
    "frechet_distance",
    "inside_support_rate",
    "mmd2",
    "nearest_distance",
    "neg_log_likelihood",
    "precision_recall",
    "real_vs_real",
    "sliced_wasserstein",
]
