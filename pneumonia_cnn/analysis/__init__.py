"""What to do with a fitted model: evaluate it, stress-test it under synthetic shift, adapt it
to a new site's films, calibrate it on a site's labelled films, explain its calls, and load
any saved model back. Nothing here writes to MLflow: with ``track=True`` the results go to
:mod:`pneumonia_cnn.tracking` (see :mod:`pneumonia_cnn.utils`' plug-ins).
"""

# Layout (for developers):
# Modules (private, re-exported here): ``_evaluate``, ``_robustness`` (synthetic shift and the
# fit's stress test), ``_adaptation`` (label-free site adaptation), ``_calibration`` (site
# calibration on labelled films), ``_explain`` (HiResCAM / Grad-CAM), ``_wrappers`` (what
# post-fit wrappers share), ``_loading`` (one ``load_model``).

from ._adaptation import (
    ADAPTATION_FILE,
    MIN_SITE_FILMS,
    SiteAdaptedCNN,
    adapt,
    estimate_site_mixture,
    recalibrate_batch_norm,
)
from ._calibration import CALIBRATION_FILE, MIN_PER_CLASS, SiteCalibratedCNN, calibrate
from ._evaluate import (
    FIGURE_FILES,
    evaluate,
    image_arrays,
    save_evaluation,
    training_overlap,
    trust_warnings,
)
from ._explain import (
    BORDER_BAND,
    Explanation,
    error_gallery,
    explain,
    gradcam,
    heat_on_border,
    last_conv_layer,
    write_overlays,
)
from ._loading import load_model, load_model_folder
from ._robustness import (
    PERTURBATIONS,
    SEVERITIES,
    STRESS_MAX_IMAGES,
    StressOnFit,
    StressResult,
    perturb,
    stress_hold_out,
    stress_scores,
    stress_scoring,
    stress_test,
    summarize_stress,
)
from ._wrappers import NetworkWrapper, network_of

__all__ = [
    "ADAPTATION_FILE", "BORDER_BAND", "CALIBRATION_FILE", "Explanation", "FIGURE_FILES",
    "MIN_PER_CLASS", "MIN_SITE_FILMS", "NetworkWrapper", "PERTURBATIONS", "SEVERITIES",
    "STRESS_MAX_IMAGES",
    "SiteAdaptedCNN", "SiteCalibratedCNN", "StressOnFit", "StressResult", "adapt", "calibrate",
    "error_gallery", "estimate_site_mixture", "evaluate", "explain", "gradcam", "heat_on_border",
    "image_arrays", "last_conv_layer", "load_model", "load_model_folder", "network_of", "perturb",
    "recalibrate_batch_norm", "save_evaluation", "stress_hold_out", "stress_scores", "stress_scoring", "stress_test",
    "summarize_stress", "training_overlap", "trust_warnings", "write_overlays",
]
