"""The package's architecture holds: no import cycles, no reaching into another module's
private names, imports inside functions only for heavy or optional libraries and the CLI's
fast start, MLflow only in ``tracking``, a thin estimator, every parameter declared, and a
short README (``tools/structure.py`` prints the same report)."""

import ast
import importlib.util
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("structure", ROOT / "tools" / "structure.py")
structure = importlib.util.module_from_spec(spec)
spec.loader.exec_module(structure)


@pytest.fixture(scope="module")
def report():
    return structure.analyse()


def test_no_import_cycles_counting_imports_inside_functions(report):
    assert report["cycles"] == []


def test_no_module_imports_another_modules_private_names(report):
    assert report["private"] == []


def test_package_imports_inside_functions_only_for_the_cli_and_optional_libraries(report):
    """The CLI imports the package inside its commands (``--help`` answers without
    TensorFlow); the Dask worker plugin imports ``distributed`` (optional extra)."""
    allowed = [line for line in report["inner_imports"]
               if line.startswith("pneumonia_cnn.cli.") or line.endswith("._dask_plugin")]
    assert sorted(set(report["inner_imports"])) == sorted(set(allowed))


def test_subpackages_form_layers(report):
    """Each subpackage imports only the ones below it: utils, data, network, metrics,
    estimator, analysis, tracking, cli (cluster beside them, used by tracking)."""
    order = ["utils", "data", "network", "metrics", "estimator", "analysis", "cluster",
             "tracking", "cli"]
    for name, info in report["modules"].items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in order:
            continue
        mine = order.index(parts[1])
        for dep in info["imports"]:
            dep_parts = dep.split(".")
            if len(dep_parts) > 1 and dep_parts[1] in order:
                assert order.index(dep_parts[1]) <= mine, f"{name} imports {dep}"


def test_mlflow_is_imported_only_by_tracking_and_the_cli():
    for path in (ROOT / "pneumonia_cnn").rglob("*.py"):
        rel = path.relative_to(ROOT / "pneumonia_cnn").parts
        if rel[0] in ("tracking", "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "mlflow" for n in names), path


def test_the_plugins_named_by_lower_layers_exist():
    from pneumonia_cnn.utils import PLUGINS, plugin

    for name in PLUGINS:
        assert callable(plugin(name))


def test_every_estimator_parameter_is_declared():
    from pneumonia_cnn import PneumoniaCNN

    init = inspect.signature(PneumoniaCNN.__init__).parameters
    named = {k for k, p in init.items() if p.kind is p.KEYWORD_ONLY}
    assert named <= set(PneumoniaCNN._parameter_constraints)


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_old_import_paths_still_answer():
    """Code (and MLflow models logged before the subpackages, which name
    ``pneumonia_cnn.serving.PneumoniaPyfunc``) keeps working."""
    from pneumonia_cnn.calibration import calibrate
    from pneumonia_cnn.evaluation import evaluate, threshold_for_sensitivity
    from pneumonia_cnn.serving import PneumoniaPyfunc

    import pneumonia_cnn.analysis as analysis
    import pneumonia_cnn.metrics as metrics
    import pneumonia_cnn.tracking as tracking

    assert calibrate is analysis.calibrate and evaluate is analysis.evaluate
    assert threshold_for_sensitivity is metrics.threshold_for_sensitivity
    assert PneumoniaPyfunc is tracking.PneumoniaPyfunc
    import pneumonia_cnn.calibration as old

    with pytest.raises(AttributeError, match="moved to pneumonia_cnn.analysis"):
        old.no_such_name


def test_a_pyfunc_model_pickled_under_the_old_module_path_loads():
    """MLflow pickles the pyfunc class by its module path; models logged before the
    subpackages say ``pneumonia_cnn.serving`` (checked by hand on such a model: it loads and
    predicts)."""
    import pickle

    from pneumonia_cnn.tracking import PneumoniaPyfunc

    raw = pickle.dumps(PneumoniaPyfunc(), protocol=0)
    old = raw.replace(PneumoniaPyfunc.__module__.encode(), b"pneumonia_cnn.serving")
    assert old != raw
    assert isinstance(pickle.loads(old), PneumoniaPyfunc)


@pytest.mark.parametrize("package", ["estimator", "network"])
def test_lazy_packages_export_what_their_static_imports_say(package):
    """``estimator`` and ``network`` import their names on first use (so the CLI checks
    settings without TensorFlow), read from the ``if TYPE_CHECKING:`` imports that
    documentation and type checkers read too: ``__all__`` must list the same names, and
    every name must load."""
    from pneumonia_cnn.utils import guarded_imports

    module = importlib.import_module(f"pneumonia_cnn.{package}")
    static = guarded_imports(module.__file__)
    assert static and set(module.__all__) == set(static)
    for name in module.__all__:
        assert getattr(module, name) is getattr(
            importlib.import_module(f"pneumonia_cnn.{package}.{static[name]}"), name)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(module, "nope")
