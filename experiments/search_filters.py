"""Grid search over the convolution filter counts (depth and width of the CNN).

    python experiments/search_filters.py --data ../shared/data/chest_xray/train --quick
"""

from common import run_experiment

GRID = {"filters": [(16, 32, 64), (16, 32, 64, 128), (32, 64, 128, 256), (8, 16, 32, 64)]}
QUICK_GRID = {"filters": [(8, 16, 32), (16, 32, 64)]}

if __name__ == "__main__":
    run_experiment("filters", GRID, QUICK_GRID, __doc__)
