"""``pneumonia-cnn explain``."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    MODEL_HELP,
    check_inputs_exist,
    check_layer_arg,
    check_model_arg,
    read_inputs,
    refuse_inside_inputs,
)


def add_parser(sub) -> None:
    """Add the ``explain`` command to the sub-parsers ``sub``."""
    p = sub.add_parser(
        "explain", help="heat maps (HiResCAM, or Grad-CAM): where the network looked",
        description="Write one overlay per image (film in grey, heat map in colour, "
                    "P(PNEUMONIA) and label in the title) and index.html showing them side "
                    "by side. The map shows the regions that raised the score of --target; "
                    "it does not show that the model is right.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("inputs", metavar="IMAGE_OR_DIR", nargs="+",
                   help="image files and/or folders (searched recursively), or data files: "
                        "a MedMNIST .npz[:split] (test by default) or a CSV of paths")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the overlays")
    p.add_argument("--layer", metavar="NAME",
                   help="convolution layer to explain [the last convolution block]")
    p.add_argument("--target", choices=["PNEUMONIA", "NORMAL", "both"], default="PNEUMONIA",
                   help="whose evidence: PNEUMONIA (what raised its probability), NORMAL "
                        "(what lowered it) or both [PNEUMONIA]")
    p.add_argument("--method", choices=["hirescam", "gradcam"], default="hirescam",
                   help="HiResCAM (position-wise gradients, faithful for the flatten head) "
                        "or the original Grad-CAM [hirescam]")


def run(args) -> int:
    check_model_arg(args.model)
    check_inputs_exist(args.inputs)
    check_layer_arg(args.model, args.layer)
    refuse_inside_inputs("--out", args.out, (*args.inputs, args.model))
    from ..analysis import explain, load_model

    clf = load_model(args.model)
    data = read_inputs(args.inputs, clf.input_size())
    targets = ["PNEUMONIA", "NORMAL"] if args.target == "both" else [args.target]
    for target in targets:
        out = Path(args.out) / target.lower() if len(targets) > 1 else Path(args.out)
        print(f"Explaining {len(data)} image(s): {target} evidence, layer "
              f"{args.layer or 'last convolution block'} -> {out}", flush=True)
        result = explain(clf, data, layer=args.layer, target=target, method=args.method,
                         out_dir=out, progress=len(data) > 20)
        print(f"{len(result.files)} overlays and {out / 'index.html'}")
    return 0
