"""The from-scratch network against the ImageNet-pretrained EfficientNet-Lite0, in one MLflow
search (a parent run, a child run per candidate).

    python experiments/search_backbone.py --data ../shared/data/chest_xray/train --quick

The from-scratch candidates vary their filters; the pretrained ones how many of their blocks
stay frozen. Compare them in `mlflow ui` (the search's parent run lists every candidate).
"""

from common import run_experiment

GRID = [
    {"backbone": [None], "filters": [(8, 16, 32, 64), (16, 32, 64, 128)]},
    {"backbone": ["efficientnet-lite0"], "freeze_blocks": [4, 8, 12]},
]
QUICK_GRID = [
    {"backbone": [None], "filters": [(8, 16, 32, 64)]},
    {"backbone": ["efficientnet-lite0"], "freeze_blocks": [8]},
]

if __name__ == "__main__":
    run_experiment("backbone", GRID, QUICK_GRID, __doc__)
