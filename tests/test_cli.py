"""The pneumonia-cnn command line."""

import json
import re
import subprocess
import sys

import pytest

from pneumonia_cnn.cli import build_parser, main

TINY_ARGS = ["--backbone", "none", "--image-size", "32", "--filters", "4,8", "--dense-units", "8",
             "--convs-per-block", "1", "--no-global-pooling", "--epochs", "2",
             "--augmentation", "none", "--intensity-norm", "none", "--n-networks", "1",
             "--threshold", "0.5", "--validation-fraction", "0.25", "--random-state", "0",
             "--quiet", "--no-tracking"]


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["run"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main(command + ["--help"])
    assert exc.value.code == 0
    assert "usage: pneumonia-cnn" in capsys.readouterr().out


def test_every_hyperparameter_has_an_option():
    import inspect

    from pneumonia_cnn import PneumoniaCNN

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions}
    params = set(inspect.signature(PneumoniaCNN.__init__).parameters) - {
        "self", "kwargs", "callbacks", "fit_hooks", "metrics", "verbose"}
    assert params <= dests


def test_options_parse_to_estimator_types():
    args = build_parser().parse_args(
        ["train", "d", "--model-out", "m", "--filters", "8,16", "--augmentation",
         '{"zoom": 0.1}', "--no-batch-norm", "--random-state", "none", "--patience", "3"])
    assert args.filters == (8, 16) and args.augmentation == {"zoom": 0.1}
    assert args.batch_norm is False and args.random_state is None and args.patience == 3


def test_train_evaluate_predict(synthetic_dir, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["train", str(synthetic_dir), "--model-out", str(model), *TINY_ARGS]) == 0
    assert "model saved to" in capsys.readouterr().out

    assert main(["evaluate", str(model), str(synthetic_dir), "--json",
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1",
                "n_images", "confusion_matrix"):
        assert key in metrics
    assert metrics["n_images"] == 60
    assert (tmp_path / "eval" / "roc_curve.png").is_file()

    one = next((synthetic_dir / "NORMAL").iterdir())
    assert main(["predict", str(model), str(one), str(synthetic_dir / "PNEUMONIA")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 36
    path, label, prob = lines[0].split("\t")
    assert path == str(one) and label in ("NORMAL", "PNEUMONIA") and 0 <= float(prob) <= 1


def test_run_main_job_without_data_uses_labelled_synthetic_set(tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = [a for a in TINY_ARGS if a != "--no-tracking"]
    code = main(["run", "--out", str(tmp_path), *args])
    out = capsys.readouterr().out
    assert code == 0
    assert "SYNTHETIC" in out
    demo = tmp_path / "SYNTHETIC-demo"   # the folder says it too
    assert (demo / "model" / "model.keras").is_file()
    assert (demo / "evaluation" / "confusion_matrix.png").is_file()
    assert (demo / "synthetic_data" / "SYNTHETIC_DATA_README.txt").is_file()
    metrics = json.loads((demo / "evaluation" / "metrics.json").read_text())
    assert metrics["synthetic"] is True
    assert (demo / "evaluation" / "classification_report.txt").read_text().startswith(
        "SYNTHETIC DATA")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # the demo's runs are in an experiment of their own, never among real ones (user's
    # path issue, item 3); the fit's name carries its films' count and digest
    assert client.get_experiment_by_name("pneumonia-cnn") is None
    exp = client.get_experiment_by_name("pneumonia-cnn-SYNTHETIC-demo")
    names = {r.info.run_name for r in client.search_runs(
        [exp.experiment_id], "tags.synthetic_data = 'true'")}
    fits = [n for n in names if not n.startswith("SYNTHETIC-eval ")]
    assert len(fits) == 1 and fits[0].startswith("SYNTHETIC-")
    assert re.search(r" \(\d+ films, [0-9a-f]{6}\)$", fits[0]), fits[0]
    fit_name = fits[0][len("SYNTHETIC-"):]
    assert any(n.startswith("SYNTHETIC-eval ") and n.endswith(fit_name) for n in names)


@pytest.mark.parametrize("argv, match", [
    (["train", "/no/such/folder", "--model-out", "x"], "does not exist"),
    (["evaluate", "/no/such/model", "/tmp"], "not a saved PneumoniaCNN"),
    (["train", ".", "--model-out", "x", "--augmentation", "wild"], None),
])
def test_errors_are_one_line_without_traceback(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and err.startswith("pneumonia-cnn ")
    if match:
        assert match in err


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "pneumonia_cnn", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("pneumonia-cnn ")


@pytest.mark.slow
def test_search_command_prints_table_and_parent_run(synthetic_dir, capsys):
    code = main(["search", str(synthetic_dir), "--grid", '{"filters": [[4], [4, 8]]}',
                 "--cv", "2", "--holdout", "0.25", "--name", "cli", "--quiet", *TINY_ARGS])
    out = capsys.readouterr().out
    assert code == 0
    assert "param_filters" in out and "mean_test_roc_auc" in out
    assert "4-8" in out and "MLflow parent run:" in out
    assert "Refit best on held-out patients" in out


def test_search_command_needs_a_grid(synthetic_dir, capsys):
    assert main(["search", str(synthetic_dir)]) == 2
    assert "--grid" in capsys.readouterr().err


def test_threshold_option_accepts_auto():
    args = build_parser().parse_args(["train", "d", "--model-out", "m", "--threshold", "auto"])
    assert args.threshold == "auto"


def test_help_does_not_import_tensorflow():
    """--help, --version and every sub-command's --help answer without TensorFlow (5 s of
    imports): the options are read from the estimator's source. Timing: benchmarks/cli_startup.py"""
    import subprocess
    import sys

    code = ("import sys; from pneumonia_cnn.cli import build_parser; p = build_parser(); "
            "p.format_help(); [a.choices[c].format_help() for a in p._subparsers._group_actions "
            "for c in a.choices]; print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_help_is_plain_text_and_lists_accepted_values(capsys):
    from pneumonia_cnn.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "``" not in out and ":mod:" not in out and ":func:" not in out
    assert 'accepts {"max", "average"}' in out and 'accepts {"cosine", "constant"}' in out
    assert 'accepts "balanced", a JSON dict or none' in out
    assert "routed optimizer__* parameters are Python-only" in out


def test_options_match_the_estimator_parameters():
    import inspect

    from pneumonia_cnn import PneumoniaCNN
    from pneumonia_cnn.cli._common import estimator_spec as _estimator_spec

    defaults, _ = _estimator_spec()
    params = inspect.signature(PneumoniaCNN.__init__).parameters
    assert defaults == {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY}


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_tensorflow_filters_its_start_up_lines_in_the_api(quiet):
    import subprocess
    import sys

    code = ("import pneumonia_cnn\n"
            + ("pneumonia_cnn.quiet_tensorflow()\n" if quiet else "")
            + "import sys, numpy as np\n"
              "from pneumonia_cnn import PneumoniaCNN\n"
              "X = np.random.RandomState(0).randint(0, 255, (16, 32, 32, 1)).astype(np.uint8)\n"
              "PneumoniaCNN(backbone=None, image_size=32, filters=(4,), epochs=1, n_networks=1, tracking=False,"
              " augmentation=None, intensity_norm=None, threshold=0.5,"
              " validation_fraction=0).fit(X, ['NORMAL', 'PNEUMONIA'] * 8)\n"
              "print('kept', file=sys.stderr)\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stderr
    assert "kept" in err  # the rest of stderr goes through
    assert ("oneDNN custom operations" in err) is (not quiet)


def test_readme_commands_run_as_written_after_the_set_up():
    """Every python / script line of the README uses the virtual environment's interpreter
    (a bare `python experiments/...` failed unless the environment was active), and every
    script it names exists."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert not re.findall(r"(?m)^(?:python|mlflow) ", readme)
    for script in re.findall(r"\.venv/bin/python ((?:experiments|benchmarks)/\w+\.py)", readme):
        assert (root / script).is_file(), script


def test_predict_quotes_file_names_that_hold_tabs_or_newlines(fitted_tiny, synthetic_dir,
                                                              tmp_path, capsys):
    """A tab or newline in a name must not forge rows (issue 22, finding 15)."""
    import csv
    import io
    import shutil

    fitted_tiny.save(tmp_path / "model")
    one = next((synthetic_dir / "NORMAL").iterdir())
    odd = tmp_path / "a\tb\nPNEUMONIA\t0.99.png"
    shutil.copy(one, odd)
    assert main(["predict", str(tmp_path / "model"), str(odd), str(one)]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out), delimiter="\t"))
    assert len(rows) == 2 and rows[0][0] == str(odd) and rows[1][0] == str(one)
    assert all(len(r) == 3 for r in rows)


@pytest.mark.parametrize("argv", [
    ["evaluate", "{tmp}/no-model", "{tmp}"],
    ["evaluate", "{fake}", "{tmp}/no-data"],
    ["evaluate", "{fake}", "{tmp}:test"],
    ["calibrate", "{tmp}/no-model", "{tmp}", "--model-out", "{tmp}/c"],
    ["adapt", "{fake}", "{tmp}/no-site", "--model-out", "{tmp}/a"],
    ["predict", "{fake}", "{tmp}/no-image.png"],
    ["register", "{tmp}/no-model", "name"],
])
def test_errors_come_before_tensorflow_and_mlflow_load(argv, tmp_path):
    """Bad paths are refused in a fraction of a second: before TensorFlow (4 s) or MLflow
    load (issue 20/21; times in benchmarks/cli_startup.py). `train` and `run` check their
    settings first, which takes the estimator (TensorFlow), then the data source."""
    import subprocess
    import sys

    fake = tmp_path / "model"  # passes the model check: the data check must refuse
    fake.mkdir()
    (fake / "model.keras").write_bytes(b"")
    (fake / "pneumonia_cnn.json").write_text("{}")
    args = [a.format(tmp=tmp_path, fake=fake) for a in argv]
    code = ("import sys; from pneumonia_cnn.cli import main; c = main(sys.argv[1:]); "
            "print(c, 'tensorflow' in sys.modules, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["2", "False", "False"], out.stdout + out.stderr
    assert "error:" in out.stderr and "Traceback" not in out.stderr


def test_calibrate_on_a_split_root_says_what_each_split_holds_and_what_to_do(tmp_path,
                                                                              capsys):
    """Issue 20: `calibrate MODEL chest_xray` suggested chest_xray:val, then refused it as
    too small (2 + 2 films): a dead end."""
    from PIL import Image

    for split, n in (("train", 30), ("val", 2)):
        for cls in ("NORMAL", "PNEUMONIA"):
            folder = tmp_path / "chest_xray" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("L", (8, 8), i).save(folder / f"IM-{i:04d}-0001.png")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.keras").write_bytes(b"")
    (model / "pneumonia_cnn.json").write_text("{}")
    code = main(["calibrate", str(model), str(tmp_path / "chest_xray"), "--model-out",
                 str(tmp_path / "cal")])
    err = capsys.readouterr().err
    assert code == 2
    assert "train: 30 NORMAL, 30 PNEUMONIA; val: 2 NORMAL, 2 PNEUMONIA" in err
    assert "--evaluate-fraction" in err and ":val" not in err


@pytest.mark.parametrize("model_out", [".", "./", "{model}", "{model}/inner", "{site}/m"])
def test_model_out_refuses_the_current_folder_and_the_inputs(fitted_tiny, synthetic_dir,
                                                             tmp_path, monkeypatch, capsys,
                                                             model_out):
    """Regression (site issue, findings 6 and 8): `--model-out .` trained, then failed and
    lost the model; `adapt MODEL ... --model-out MODEL` replaced the network it started
    from. Both are refused before any work, the input model untouched."""
    model = fitted_tiny.save(tmp_path / "model")
    before = sorted(p.name for p in model.iterdir())
    monkeypatch.chdir(tmp_path)
    out = model_out.format(model=model, site=synthetic_dir)
    for argv in (["adapt", str(model), str(synthetic_dir), "--model-out", out],
                 ["calibrate", str(model), str(synthetic_dir), "--model-out", out],
                 ["train", str(synthetic_dir), "--model-out", out, "--epochs", "1"]):
        if argv[0] == "train" and model_out in ("{model}", "{model}/inner"):
            continue  # train reads no model
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert "--model-out" in err and "Traceback" not in err
    assert sorted(p.name for p in model.iterdir()) == before


@pytest.mark.parametrize("argv", [
    ["calibrate", "{model}", "{data}", "--model-out", "{out}", "--confidence", "1.5"],
    ["calibrate", "{model}", "{data}", "--model-out", "{out}", "--target-sensitivity", "0"],
    ["calibrate", "{model}", "{data}", "--model-out", "{out}", "--threshold", "7"],
    ["calibrate", "{model}", "{data}", "--model-out", "{out}", "--unlabelled", "{missing}"],
    ["calibrate", "{model}", "{data}", "--model-out", "{out}", "--threshold", "0.4",
     "--unlabelled", "{data}"],
    ["stress", "{model}", "{data}", "--severities", "7"],
    ["explain", "{model}", "{data}", "--out", "{out}", "--layer", "nosuch"],
    ["register", "{model}", ""],
    ["close-runs", "--older-than", "-3"],
])
def test_argument_errors_come_before_tensorflow_loads(fitted_tiny, synthetic_dir, tmp_path,
                                                      argv):
    """Regression (site issue, finding 13, and 16's --threshold with --unlabelled): these
    were refused only after TensorFlow had loaded (6-8 s), or not at all."""
    model = fitted_tiny.save(tmp_path / "m")
    argv = [a.format(model=model, data=synthetic_dir, out=tmp_path / "out",
                     missing=tmp_path / "nowhere") for a in argv]
    code = ("import sys; from pneumonia_cnn.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:  # argparse's errors\n"
            "    rc = e.code\nprint('TF', 'tensorflow' in sys.modules); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "TF False" in done.stdout, done.stderr
    assert "error:" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("verb", ["adapt", "calibrate"])
def test_report_dir_without_evaluate_fraction_is_refused(fitted_tiny, synthetic_dir, tmp_path,
                                                         capsys, verb):
    """Regression (site issue, finding 16): --report-dir without --evaluate-fraction was
    ignored silently."""
    model = fitted_tiny.save(tmp_path / "m")
    code = main([verb, str(model), str(synthetic_dir), "--model-out", str(tmp_path / "out"),
                 "--report-dir", str(tmp_path / "report")])
    assert code == 2
    assert "needs --evaluate-fraction" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_hold_out_too_small_for_the_threshold_rule_is_refused_before_training(tmp_path,
                                                                               capsys):
    """Regression (site issue, finding 9): a hold-out with one PNEUMONIA film failed only
    after training, naming an internal function."""
    import numpy as np

    from conftest import TINY
    from pneumonia_cnn import PneumoniaCNN
    from pneumonia_cnn.data import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "few", n_normal=30, n_pneumonia=3, size=40,
                                  random_state=2)  # one PNEUMONIA film falls in the hold-out
    clf = PneumoniaCNN(**{**TINY, "validation_fraction": 0.3, "threshold": "target",
                          "random_state": 0})
    with pytest.raises(ValueError, match="needs at least 2 PNEUMONIA films.*validation_fraction"):
        clf.fit(str(root))
    assert not hasattr(clf, "history_")  # refused before any epoch
    assert main(["train", str(root), "--model-out", str(tmp_path / "m"),
                 *TINY_ARGS, "--validation-fraction", "0.3", "--threshold", "target",
                 "--random-state", "0"]) != 0
    assert "--validation-fraction" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    # one PNEUMONIA film, held out: the training part lacks the class (was an encoder error)
    one = make_synthetic_dataset(tmp_path / "one", n_normal=30, n_pneumonia=1, size=40,
                                 random_state=2)
    with pytest.raises(ValueError, match="training part holds no PNEUMONIA film"):
        clf.set_params(threshold=0.5).fit(str(one))


def test_train_says_what_its_threshold_keeps_of_the_hold_out(synthetic_dir, tmp_path, capsys):
    """Regression (site issue, finding 9): "keeps sensitivity 0.95" was printed where the
    threshold kept 14/15 of the hold-out's PNEUMONIA films."""
    import re

    from pneumonia_cnn import PneumoniaCNN

    assert main(["train", str(synthetic_dir), "--model-out", str(tmp_path / "m"),
                 *TINY_ARGS]) == 0
    out = capsys.readouterr().out
    kept, n = map(int, re.search(r"on the hold-out it keeps (\d+)/(\d+) = ", out).groups())
    model = PneumoniaCNN.load(tmp_path / "m")
    pos = model.validation_scores_[model.validation_labels_ == 1]
    assert (kept, n) == (int((pos >= model.threshold_).sum()), pos.size)


@pytest.mark.parametrize("argv", [
    ["evaluate", "{model}", "{site}", "--out", "{site}/NORMAL"],
    ["explain", "{model}", "{site}/PNEUMONIA", "--out", "{site}/PNEUMONIA/maps"],
    ["train", "{site}", "--model-out", "{tmp}/m2", "--report-dir", "{site}/reports"],
    ["adapt", "{model}", "{site}", "--model-out", "{tmp}/a", "--evaluate-fraction", "0.5",
     "--report-dir", "{site}/r"],
    ["run", "{site}", "--out", "{site}/outputs"],
])
def test_reports_are_not_written_into_the_data_they_read(fitted_tiny, synthetic_dir, tmp_path,
                                                        argv):
    """Regression (site issue, finding 7): reports written into a data folder became films
    of the next run. Refused before TensorFlow loads, nothing written."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(synthetic_dir, site)
    before = sorted(p for p in site.rglob("*"))
    model = fitted_tiny.save(tmp_path / "m")
    argv = [a.format(model=model, site=site, tmp=tmp_path) for a in argv]
    code = ("import sys; from pneumonia_cnn.cli import main; rc = main(sys.argv[1:]); "
            "print('TF', 'tensorflow' in sys.modules); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "which this command reads" in done.stderr and "TF False" in done.stdout
    assert sorted(p for p in site.rglob("*")) == before


def test_reports_already_in_a_data_folder_are_not_read_as_films(fitted_tiny, synthetic_dir,
                                                                tmp_path, capsys):
    """Regression (site issue, finding 7): a report written earlier into what is now a data
    folder (here: another copy's class folder) is skipped by every loader, with a warning."""
    import shutil

    from pneumonia_cnn.data import OUTPUT_MARKER, UnreadableImageWarning, load_image_folder

    model = fitted_tiny.save(tmp_path / "m")
    site = tmp_path / "site"
    shutil.copytree(synthetic_dir, site)
    assert main(["evaluate", str(model), str(synthetic_dir), "--out",
                 str(site / "NORMAL" / "report"), "--no-tracking"]) == 0
    assert (site / "NORMAL" / "report" / OUTPUT_MARKER).is_file()
    assert len(list((site / "NORMAL" / "report").glob("*.png"))) >= 3
    capsys.readouterr()
    with pytest.warns(UnreadableImageWarning, match="pneumonia-cnn wrote as reports"):
        assert len(load_image_folder(site, 32, cache=False)) == 60
    assert main(["evaluate", str(model), str(site), "--json", "--no-tracking"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == 60
