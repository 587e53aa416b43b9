"""``pneumonia-cnn run``."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    DATA_HELP,
    add_data_options,
    add_estimator_options,
    check_data_arg,
    checked_settings,
    fmt,
    fmt_ci,
    load_data_arg,
    make_estimator,
    print_stress,
    print_view_link,
    refuse_inside_inputs,
)


#: Where the synthetic demo's runs go (never among real fits and evaluations).
DEMO_EXPERIMENT = "pneumonia-cnn-SYNTHETIC-demo"


def add_parser(sub) -> None:
    """Add the ``run`` command to the sub-parsers ``sub``."""
    p = sub.add_parser("run", help="the main job: train, evaluate, save model and plots",
                       description="Train on DATA (or, without DATA, on a small built-in "
                                   "SYNTHETIC set), evaluate, and save the model and the "
                                   "plots. A source with splits (Kaggle's chest_xray/, a "
                                   "MedMNIST .npz) trains on train + val and is evaluated on "
                                   "test; without a test split, 20%% of the patients are held "
                                   "out of training and evaluated. Seeded (random state 0) "
                                   "unless --random-state says otherwise, so that it "
                                   "repeats.")
    p.add_argument("data_dir", metavar="DATA", nargs="?", help=DATA_HELP)
    p.add_argument("--out", metavar="DIR", default="outputs", help="output folder [outputs]")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    add_data_options(p)
    add_estimator_options(p)


def run(args) -> int:
    # the data source (at once), then the settings (scikit-learn's checks, about a second),
    # before TensorFlow loads or any image is read
    if args.data_dir is not None:
        check_data_arg(args, "train")
        refuse_inside_inputs("--out", args.out, (args.data_dir,))
    settings = checked_settings(args)
    from ..analysis import evaluate
    from ..data import evaluation_split, grouped_split, make_synthetic_dataset
    from ..metrics import public_metrics

    out = Path(args.out)
    clf = make_estimator(args, settings)
    if "random_state" not in vars(args):  # the main job is reproducible (user's path, 8)
        clf.set_params(random_state=0)
    synthetic = args.data_dir is None
    if synthetic:  # every result of the demo says SYNTHETIC, its folder too
        out = out / "SYNTHETIC-demo"
        if "experiment" not in vars(args):  # its runs in an experiment of their own
            clf.set_params(experiment=DEMO_EXPERIMENT)
        out.mkdir(parents=True, exist_ok=True)
        # opacities brighter than the generator's default: every network of the demo
        # learns them within its epochs (at 0.25 one of three stayed at chance)
        args.data_dir = str(make_synthetic_dataset(out / "synthetic_data", n_normal=60,
                                                   n_pneumonia=120, opacity=0.45))
        print("=" * 78)
        print("No DATA given: using a small built-in SYNTHETIC data set "
              f"({args.data_dir}).\nThese are drawn images, not radiographs; the numbers below "
              "only show that the\npipeline works. Pass chest_xray/train (or chest_xray) for "
              "real results.")
        print("=" * 78, flush=True)
        # the demo set is small: more, smaller steps (unless the user chose otherwise)
        clf.set_params(**{k: v for k, v in {"epochs": 25, "batch_size": 16}.items()
                          if k not in vars(args)})
    out.mkdir(parents=True, exist_ok=True)
    data = load_data_arg(args, clf.input_size(), "train", verbose=int(not args.quiet))
    test_source = evaluation_split(args.data_dir)  # chest_xray:test, data.npz:test, or None
    if test_source is None:
        tr, te = grouped_split(data.y, data.groups, 0.2, random_state=0)
        train, held = data.subset(tr), data.subset(te)
        held_out = (f"20% of the patients of {data.root}, held out from training "
                    "(patient-grouped)")
        held_name = f"{data.root} (held-out 20% of patients)"
    else:
        train, held = data, None
        held_out = held_name = test_source
    print(f"Training on {len(train)} images {train.class_counts()} from {data.root}; "
          f"evaluating on {held_out}", flush=True)
    clf.fit(train)
    model_path = clf.save(out / "model")
    if held is None:
        held = load_data_arg(args, clf.input_size(), None, source=test_source)
    result = evaluate(clf, held, out_dir=out / "evaluation", data_name=held_name)
    metrics = public_metrics(result)
    print(f"\nEvaluation on {metrics['n_images']} images: {held_out}"
          + (" [SYNTHETIC DATA]" if synthetic else ""))
    print(fmt(metrics))
    print(fmt_ci(metrics))
    print(metrics["classification_report_text"])
    print_stress(clf)
    print(f"Training time: {clf.fit_time_:.1f} s")
    print(f"Model:   {model_path}")
    if getattr(clf, "mlflow_run_id_", None):
        print(f"MLflow:  run {clf.mlflow_run_id_}; logged model "
              f"models:/{clf.mlflow_model_id_}; evaluation run "
              f"{result.get('mlflow_run_id')}\n         register it: pneumonia-cnn register "
              f"{model_path} NAME")
        print_view_link(clf.mlflow_run_id_, clf.tracking_uri, "models",
                        "trained models on their validation hold-outs")
    print(f"Plots:   {', '.join(result['figures'].values())}")
    print(f"Metrics: {out / 'evaluation' / 'metrics.json'}")
    return 0
