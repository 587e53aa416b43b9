"""Grid search over the robustness levers, scored within distribution AND under shift.

Every candidate gets the patient-grouped CV scores (roc_auc, sensitivity, specificity) and
the shift-stress scores of the same folds (stress_roc_auc, stress_specificity...): pick on
both, not on within-distribution AUC alone.

    python experiments/search_robustness.py --data ../shared/data/chest_xray/train --quick
"""

from common import run_experiment

GRID = {"augmentation": [None, "standard", "acquisition"],
        "intensity_norm": [None, "standardize", "clahe"],
        "label_smoothing": [0.0, 0.1]}
QUICK_GRID = {"augmentation": [None, "acquisition"], "intensity_norm": [None, "clahe"]}

if __name__ == "__main__":
    run_experiment("robustness", GRID, QUICK_GRID, __doc__, stress=True)
