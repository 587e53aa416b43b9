"""Grid search over filters x augmentation (plotted as a heat map on the parent run).

    python experiments/search_filters_augmentation.py --data ../shared/data/chest_xray/train --quick
"""

from common import run_experiment

GRID = {"filters": [(16, 32, 64), (16, 32, 64, 128), (32, 64, 128, 256)],
        "augmentation": [None, "light", "standard", "heavy"]}
QUICK_GRID = {"filters": [(8, 16, 32), (16, 32, 64)], "augmentation": [None, "standard"]}

if __name__ == "__main__":
    run_experiment("filters-x-augmentation", GRID, QUICK_GRID, __doc__)
