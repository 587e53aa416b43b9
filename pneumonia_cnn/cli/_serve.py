"""``pneumonia-cnn serve``."""

from __future__ import annotations

from ._common import MODEL_HELP, CLIError, check_model_arg


def add_parser(sub) -> None:
    """Add the ``serve`` command to the sub-parsers ``sub``."""
    p = sub.add_parser(
        "serve", help="serve a model over HTTP (MLflow's model server)",
        description="Serve MODEL with MLflow's model server, started from this package's own "
                    "environment (no activation needed): POST images to /invocations, get "
                    "P(PNEUMONIA) and the label at the model's operating point. Prints the "
                    "URL and a curl example; Ctrl-C stops it.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--port", type=int, default=5001, help="[5001]")
    p.add_argument("--host", default="127.0.0.1",
                   help="[127.0.0.1: this machine only; 0.0.0.0 serves the network]")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI that resolves a models:/ URI "
                        "[$MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")
    p.add_argument("--timeout", type=float, default=180, metavar="S",
                   help="seconds to wait for the server to answer [180]")


def run(args) -> int:
    import tempfile
    from pathlib import Path

    if not 0 < args.port < 65536:
        raise CLIError(f"--port must be in 1-65535, got {args.port}")
    check_model_arg(args.model)
    from ..tracking import save_pyfunc, start_server, stop_server, wait_until_serving
    from ..utils import is_model_uri, model_files_folder

    with tempfile.TemporaryDirectory(prefix="pneumonia-cnn-serve-") as tmp:
        uri = args.model
        if not is_model_uri(uri):  # a model folder: its pyfunc model, written here
            uri = str(save_pyfunc(model_files_folder(args.model), Path(tmp) / "pyfunc"))
        log = Path(tmp) / "server.log"
        proc = start_server(uri, args.port, tracking_uri=args.tracking_uri, host=args.host,
                            log_file=log)
        try:
            if not wait_until_serving(f"http://{args.host}:{args.port}/ping", proc,
                                      args.timeout):
                tail = log.read_text()[-2000:] if log.is_file() else ""
                raise CLIError(f"the model server did not start within {args.timeout:g} s "
                               f"(is port {args.port} free?); its output:\n{tail}")
            url = f"http://{args.host}:{args.port}/invocations"
            print(f"Serving {args.model} at {url} (Ctrl-C stops it). Try:", flush=True)
            print(f"  curl -s {url} -H 'Content-Type: application/json' -d "
                  "\"{\\\"inputs\\\": {\\\"image\\\": [\\\"$(base64 -w0 FILM.jpeg)\\\"]}}\"",
                  flush=True)
            try:
                proc.wait()
            except KeyboardInterrupt:  # the way to stop it: not an error
                stop_server(proc)
                print("Model server stopped.")
                return 0
            raise CLIError("the model server stopped:\n" + log.read_text()[-2000:])
        finally:
            stop_server(proc)
