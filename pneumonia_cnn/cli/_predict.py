"""``pneumonia-cnn predict``."""

from __future__ import annotations

import json
import sys

from ._common import MODEL_HELP, check_inputs_exist, check_model_arg, read_inputs


def add_parser(sub) -> None:
    """Add the ``predict`` command to the sub-parsers ``sub``."""
    p = sub.add_parser("predict", help="predict images or folders of images",
                       description="Print one line per image: path, label, P(PNEUMONIA).")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+",
                   help="image files and/or folders (searched recursively), or data files: "
                        "a MedMNIST .npz[:split] (test by default) or a CSV of paths")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of tab-"
                                                       "separated text")


def run(args) -> int:
    check_model_arg(args.model)
    check_inputs_exist(args.inputs)
    from ..analysis import load_model

    clf = load_model(args.model)
    data = read_inputs(args.inputs, clf.input_size())
    proba = clf.predict_proba(data.X)[:, list(clf.classes_).index("PNEUMONIA")]
    labels = clf.predict(data.X)
    import csv

    # a real TSV writer: a tab, newline or quote in a file name is quoted, never a new row
    writer = None if args.json else csv.writer(sys.stdout, delimiter="\t",
                                               lineterminator="\n")
    for path, label, p in zip(data.paths, labels, proba):
        if args.json:
            print(json.dumps({"path": str(path), "label": str(label),
                              "probability_pneumonia": round(float(p), 6)}))
        else:
            writer.writerow([str(path), str(label), f"{p:.4f}"])
    return 0
