"""Grid search over augmentation settings (presets and a horizontal-flip variant).

    python experiments/search_augmentation.py --data ../shared/data/chest_xray/train --quick
"""

from common import run_experiment

GRID = {"augmentation": [None, "light", "standard", "heavy",
                         {"rotation": 0.02, "zoom": 0.1, "translation": 0.08,
                          "flip": "horizontal"}]}
QUICK_GRID = {"augmentation": [None, "standard"]}

if __name__ == "__main__":
    run_experiment("augmentation", GRID, QUICK_GRID, __doc__)
