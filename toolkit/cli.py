"""The ``safecompress`` command line.

Importing this module loads typer and the toolkit's light modules only; TensorFlow, PyTorch, NNI and
ONNX Runtime are imported inside the commands that need them. :func:`main` is the one place that
catches :class:`~toolkit.errors.SafeCompressError`: it prints ``error: <message>`` on one line and exits 2.

Exit codes: 0 success; 1 a gate threshold was exceeded; 2 bad usage or bad input; 3 internal error;
130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit.errors import SafeCompressError
from toolkit.seed import MAX_SEED

app = typer.Typer(
    name="safecompress",
    help="Compress models for edge devices, export them, query the artifacts as black boxes, "
         "measure membership leakage and gate releases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Data sets and membership splits.", no_args_is_help=True)
app.add_typer(data_app, name="data")

EXIT_OK, EXIT_THRESHOLD, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_ARGV: list[str] = []  # the arguments main() ran with: the command line recorded in reports (provenance)


def _argv() -> list[str]:
    return list(_ARGV or sys.argv[1:])


#: While a command that prints JSON runs: the real stdout (``sys.stdout`` then points at stderr, see main()).
_JSON_STDOUT: list = []
#: Commands whose output is always one JSON document, ``--json`` or not.
_JSON_COMMANDS = (("query",), ("export",), ("train",), ("data", "split"))


def _emit_json(obj) -> None:
    """Print ``obj`` as the command's one JSON document on (the real) stdout.

    Always valid JSON (RFC 8259): NaN and infinities, which ``json.dumps`` would write as bare ``NaN`` /
    ``Infinity``, become null, each named in a warning on stderr; non-ASCII characters (and the surrogates of
    a non-UTF-8 file name) are ``\\u`` escapes, so writing it can never fail on encoding."""
    from toolkit.io import finite_json

    clean, non_finite = finite_json(obj)
    for where in non_finite:
        print(f"warning: {where} is not a finite number; written as null", file=sys.stderr)
    out = _JSON_STDOUT[-1] if _JSON_STDOUT else sys.stdout
    out.write(json.dumps(clean, indent=2, default=str, allow_nan=False) + "\n")


def _parse_options(items: list[str] | None) -> dict:
    """``key=value`` pairs -> dict, values parsed as YAML scalars (numbers, bools, lists)."""
    import yaml

    from toolkit.errors import ConfigError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


# --------------------------------------------------------------------------- data (issue 2)
@data_app.command("list")
def data_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False):
    """List the registered data sets."""
    from toolkit.data import LOADERS

    rows = [{"name": n, **LOADERS.meta(n)} for n in LOADERS]
    if as_json:
        _emit_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['name']:<16} {r.get('description', '')}")


@data_app.command("split")
def data_split(
    dataset: Annotated[str, typer.Argument(help="Data set name (see `data list`) or a .npz/.csv path.")] = "digits",
    out: Annotated[Path, typer.Option("--out", help="Directory for split.json and the part .npz files.")] = Path("runs/split"),
    members: Annotated[float, typer.Option(help="Member count, or fraction if < 1.")] = 1 / 3,
    nonmembers: Annotated[Optional[float], typer.Option(help="Non-member count/fraction (default: as members).")] = None,
    population: Annotated[Optional[float], typer.Option(help="Population count/fraction (default: the rest).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first LIMIT samples (fashion_mnist).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split.", min=0, max=MAX_SEED)] = 0,
):
    """Draw a membership split; write its manifest and members/nonmembers/population .npz files."""
    from toolkit.data.cli import split_command

    _emit_json(split_command(dataset, out, members, nonmembers, population, limit, seed))


# --------------------------------------------------------------------------- models (issue 2)
@app.command("train")
def train(
    dataset: Annotated[str, typer.Option(help="Data set name or path.")] = "digits",
    arch: Annotated[str, typer.Option(help="mlp or cnn.")] = "mlp",
    framework: Annotated[str, typer.Option(help="torch or keras.")] = "torch",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    overfit: Annotated[bool, typer.Option(help="Train long enough to overfit (leakage studies).")] = False,
    members: Annotated[float, typer.Option(help="Member count, or fraction if < 1.")] = 1 / 3,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first LIMIT samples.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of split, initialization and data order.",
                                      min=0, max=MAX_SEED)] = 0,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/train"),
):
    """Train a reference model on the split's members; write weights, split and metrics.json."""
    from toolkit.models.cli import train_command

    _emit_json(train_command(dataset, arch, framework, epochs, overfit, members, limit, seed, out))


# --------------------------------------------------------------------------- audit (issue 5)
@app.command("run")
def run_pipeline(
    config: Annotated[Path, typer.Argument(help="Run config (YAML; see configs/README.md).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (resumed if it holds a finished part).")] = Path("runs/run"),
    executor: Annotated[Optional[str], typer.Option(help="inprocess | process | ray (overrides executor.name).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster HOST:PORT (with --executor ray).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Parallel workers (overrides executor.workers).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Use --out even if it is a non-empty directory that is not a run directory "
                        "(only the run's own files are written there).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
):
    """Compress, export, safety-test on the artifacts, select, audit the winner; write report.json/html."""
    from toolkit.config_io import load_config
    from toolkit.select.config import RunConfig
    from toolkit.select.engine import run

    cfg = load_config(config, RunConfig, "run config")
    overrides = {k: v for k, v in {"name": executor, "address": address, "workers": workers}.items() if v is not None}
    if overrides:
        from toolkit.config_io import parse_config

        cfg = parse_config({**cfg.model_dump(mode="json"),
                            "executor": {**cfg.executor.model_dump(mode="json"), **overrides}}, RunConfig, "run options")
    report = run(cfg, out, command=_argv(), force=force)
    if as_json:
        _emit_json(report)
        return
    from toolkit.select.summary import format_run

    typer.echo(format_run(report, out))


@app.command("audit")
def audit(
    artifact: Annotated[Path, typer.Argument(help="The artifact to audit (.tflite/.onnx/.ptl/.pte).")],
    members: Annotated[Path, typer.Option("--members", help=".npz (x, y) of samples the model was trained on.")],
    nonmembers: Annotated[Path, typer.Option("--nonmembers", help=".npz (x, y) of samples it was not trained on.")],
    reference: Annotated[Optional[list[Path]], typer.Option(
        "--reference", help="Another version of the model (repeatable); the first is the original for CompLeak SR.")] = None,
    attacks: Annotated[Optional[str], typer.Option("--attacks", help="Comma-separated attack names (docs/attacks.md).")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="YAML audit config: training recipe + population data (shadow, LiRA, RMIA).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Directory for report.json, report.html, summary.md, roc.png, risk.csv.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the attacker's known half, learned attacks and bootstrap.",
                                      min=0, max=MAX_SEED)] = 0,
    original: Annotated[bool, typer.Option(
        "--original/--no-original", help="Whether the first --reference is the uncompressed original.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON (only JSON on stdout).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars or status messages.")] = False,
):
    """Measure membership leakage of an artifact queried as a black box (metric, learned, LiRA/RMIA, CompLeak)."""
    from device_tests.audit_cli import audit_command, format_table

    if out is not None:  # before the audit: an --out that cannot be written must not cost an audit
        from toolkit.io import check_output_dir

        check_output_dir(out)
    report = audit_command(artifact, members, nonmembers, reference, attacks, config, out, seed, original)
    if out is not None:
        from toolkit.report import write_reports
        from toolkit.report.provenance import provenance

        report["provenance"] = provenance(_argv(), seed)
        write_reports(report, out)
    if as_json:
        _emit_json(report)
    else:
        typer.echo(format_table(report))


# --------------------------------------------------------------------------- gate (issue 7)
_METRIC_HELP = "METRIC=LIMIT (repeatable); metrics: auc, balanced_accuracy, tpr@0.001, tpr@0.01, accuracy, accuracy_gap"


@app.command("gate")
def gate(
    artifact: Annotated[Path, typer.Argument(help="The artifact to gate (.tflite/.onnx/.ptl/.pte).")],
    members: Annotated[Path, typer.Option("--members", help=".npz (x, y) of samples the model was trained on.")],
    nonmembers: Annotated[Path, typer.Option("--nonmembers", help=".npz (x, y) of held-out samples.")],
    reference: Annotated[Optional[list[Path]], typer.Option(
        "--reference", help="Another version of the model (repeatable); the first is the original.")] = None,
    attacks: Annotated[Optional[str], typer.Option("--attacks", help="Comma-separated attack names.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML audit config (LiRA/RMIA/shadow).")] = None,
    max_: Annotated[Optional[list[str]], typer.Option(
        "--max", help=f"Upper limit for the strongest attack (or accuracy_gap): {_METRIC_HELP}.")] = None,
    min_: Annotated[Optional[list[str]], typer.Option("--min", help="Lower limit, e.g. accuracy=0.85 (repeatable).")] = None,
    baseline: Annotated[Optional[Path], typer.Option(
        "--baseline", help="report.json of a previous audit/gate run to compare with.")] = None,
    max_increase: Annotated[Optional[list[str]], typer.Option(
        "--max-increase", help="Largest increase over --baseline per attack, e.g. auc=0.02 (repeatable).")] = None,
    max_decrease: Annotated[Optional[list[str]], typer.Option(
        "--max-decrease", help="Largest decrease below --baseline, e.g. accuracy=0.01 (repeatable).")] = None,
    policy: Annotated[Optional[Path], typer.Option(
        "--policy", help="YAML gate policy (configs/gate.example.yaml); flags override it per metric.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write JUnit XML here (one testcase per threshold x attack).")] = None,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="Write the Markdown summary here.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Directory for report.json, report.html, summary.md, roc.png, risk.csv.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the audit (default: the policy's, else 0).",
                                                min=0, max=MAX_SEED)] = None,
    original: Annotated[bool, typer.Option(
        "--original/--no-original", help="Whether the first --reference is the uncompressed original.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only violations, warnings and the verdict.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report (with its gate section) as JSON only.")] = False,
):
    """Audit an artifact and check leakage/accuracy limits: exit 0 all hold, 1 a limit is exceeded, 2 bad input."""
    from toolkit.gate.command import GateRequest, format_result, gate_command

    from toolkit.report.escape import printable

    report, result = gate_command(GateRequest(
        artifact, members, nonmembers, reference, attacks, config, out, seed, original, max_, min_, max_increase,
        max_decrease, baseline, policy, junit, summary, _argv()))
    for w in result.warnings:
        print(f"warning: {printable(w)}", file=sys.stderr)
    if as_json:
        _emit_json(report)
        for c in result.violations:
            print(c.line(), file=sys.stderr)
    else:
        typer.echo(format_result(report, result, quiet))
    raise typer.Exit(EXIT_OK if result.passed else EXIT_THRESHOLD)


# --------------------------------------------------------------------------- compress (issue 3)
@app.command("methods")
def methods(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    backend: Annotated[Optional[str], typer.Option(
        help="Only this backend's methods (tfmot, tflite, torch, nni).")] = None,
):
    """List the compression methods with their config fields (imports no framework)."""
    from toolkit.compress import METHODS, describe_methods
    from toolkit.errors import ConfigError

    backends = sorted({METHODS.meta(n)["backend"] for n in METHODS})
    if backend is not None and backend not in backends:
        raise ConfigError(f"unknown backend {backend!r}; known: {', '.join(backends)}")
    rows = describe_methods([n for n in METHODS if backend in (None, METHODS.meta(n)["backend"])])
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        fields = ", ".join(f"{f['name']}={f['default']!r}" for f in r["config"])
        typer.echo(f"{r['name']:<26} {r['backend']:<7} {r['kind']:<17} {fields}")


# --------------------------------------------------------------------------- text models (issue 10)
@app.command("text")
def text(
    config: Annotated[Path, typer.Argument(help="Text pipeline YAML (configs/text-quick.yaml, docs/text.md).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (report.json, report.md, artifacts).")] = Path("runs/text"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
):
    """Text models end to end: fortunes -> tokenizer -> BERT/GPT-2 -> compressed versions -> ONNX -> audit."""
    from toolkit.text.config import load_text_config
    from toolkit.text.pipeline import run_text_pipeline

    report = run_text_pipeline(load_text_config(config), out)
    if as_json:
        _emit_json(report)
    else:
        typer.echo(Path(report["files"]["markdown"]).read_text(encoding="utf-8").rstrip())


# --------------------------------------------------------------------------- export and query (issue 4)
@app.command("export")
def export(
    weights: Annotated[Path, typer.Argument(help="Model weights saved by `safecompress train` (with its JSON sidecar).")],
    fmt: Annotated[str, typer.Option("--format", help="Artifact format: tflite, onnx, ptl, pte.")],
    data: Annotated[Path, typer.Option("--data", help=".npz with x: sample for parity validation and int8 calibration.")],
    out: Annotated[Path, typer.Option("--out", help="Artifact path; <out>.json sidecar is written beside it.")],
    mode: Annotated[str, typer.Option("--mode", help="float, dynamic, float16 or int8 (docs/export-and-query.md).")] = "float",
    samples: Annotated[int, typer.Option("--samples", help="Samples of --data used (seeded pick).")] = 256,
):
    """Export a trained model to an artifact that validates itself in its runtime; print the sidecar JSON."""
    from exporters.cli import export_command

    _emit_json(export_command(weights, fmt, mode, data, out, samples))


@app.command("query")
def query(
    artifact: Annotated[Path, typer.Argument(help="The artifact (.tflite/.onnx/.ptl/.pte; format read from content).")],
    data: Annotated[Path, typer.Option("--data", help=".npz with x (and optionally y, to report accuracy).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the probabilities here (.npy).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per runtime call.")] = 256,
):
    """Query an artifact as a black box in its own runtime; print a JSON summary."""
    from device_tests.cli import query_command

    _emit_json(query_command(artifact, data, out, batch_size))


@app.command("inspect")
def inspect(
    artifact: Annotated[Path, typer.Argument(help="The artifact to inspect.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
):
    """Detected format, runtime, input shape/dtype, classes, size and hash of an artifact (and its sidecar)."""
    from device_tests.cli import format_inspect, inspect_command

    info = inspect_command(artifact)
    if as_json:
        _emit_json(info)
    else:
        typer.echo(format_inspect(info))


@app.command("doctor")
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False):
    """The sandbox protections active on this machine for untrusted artifacts, and its limits."""
    from device_tests.sandbox.client import probe_protections
    from device_tests.sandbox.limits import SandboxLimits

    report = {"sandbox": probe_protections().model_dump(), "limits": SandboxLimits.from_env().model_dump()}
    if as_json:
        _emit_json(report)
        return
    p, lim = report["sandbox"], report["limits"]
    rows = [("resource limits (address space, CPU, files, output size)", p["rlimits"]),
            ("dies with its parent (PR_SET_PDEATHSIG)", p["parent_death_signal"]),
            ("empty private working directory", p["private_workdir"]),
            (f"Landlock file-system confinement (ABI {p['landlock_abi']})", p["landlock_abi"] > 0),
            ("seccomp system-call filter", p["seccomp"])]
    for what, on in rows:
        typer.echo(f"{'on ' if on else 'OFF'}  {what}")
    for m in p["missing"]:
        typer.echo(f"     missing: {m}")
    typer.echo(f"limits: memory {lim['memory_bytes'] // 1024**2} MiB, {lim['call_timeout_s']:g} s per batch, "
               f"{lim['cpu_seconds']} CPU s per artifact (SAFECOMPRESS_SANDBOX_MEMORY / _TIMEOUT / _CPU)")


def _usage_error_types() -> tuple[type, ...]:
    """Click's exception base, wherever this typer version keeps its click (it may vendor one)."""
    types: list[type] = []
    try:
        from typer._click.exceptions import ClickException as vendored

        types.append(vendored)
    except ImportError:
        pass
    try:
        from click import ClickException

        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: `finally` blocks remove temp files, one line, exit


class _SigtermAsInterrupt:
    """While active, SIGTERM raises KeyboardInterrupt in the main thread instead of ending the process on the
    spot, which would leave temporary files and half-written outputs behind. Only where SIGTERM has its
    default action (an embedding program's own handler is kept) and only in the main thread (the only one
    Python lets install handlers); the previous handler is restored on exit."""

    def __enter__(self):
        import signal
        import threading

        self._previous = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            import signal

            signal.signal(signal.SIGTERM, self._previous)
        return False


def _prints_json(args: list[str]) -> bool:
    """Whether the command line asks for one JSON document on stdout (``--json``, or a JSON-only command)."""
    return "--json" in args or any(tuple(args[:len(c)]) == c for c in _JSON_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the CLI and map errors to one line + exit code.

    Contracts: stderr gets at most one ``error: ...`` line (made printable: no control characters from a
    file name), never a traceback; when the command prints JSON, stdout gets exactly that document --
    anything else printed meanwhile (a library, a model's Python code) goes to stderr; Ctrl-C is ``error:
    interrupted``, exit 130 (temporary files are removed by the ``finally`` / ``except BaseException`` of
    the writers that made them)."""
    from toolkit import progress
    from toolkit.report.escape import printable

    args = list(sys.argv[1:] if argv is None else argv)
    _ARGV[:] = args
    if "--quiet" in args or "--json" in args or os.environ.get("SAFECOMPRESS_QUIET") == "1":
        progress.set_quiet(True)
    if hasattr(sys.stdout, "reconfigure"):  # a non-UTF-8 file name in human output: escapes, not a crash
        sys.stdout.reconfigure(errors="backslashreplace")
    real_stdout = sys.stdout
    if _prints_json(args):  # stdout is the JSON document's alone: other prints meanwhile go to stderr
        _JSON_STDOUT.append(real_stdout)
        sys.stdout = sys.stderr
    command = typer.main.get_command(app)
    try:
        with _SigtermAsInterrupt():
            rc = command.main(args=args, prog_name="safecompress", standalone_mode=False)
        code = rc if isinstance(rc, int) else EXIT_OK
        if code == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt (Ctrl-C, SIGTERM) into a silent return 130
            print("error: interrupted", file=sys.stderr)
    except SafeCompressError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort as exc:  # EOF at a prompt; plain click (not typer's) also makes Ctrl-C an Abort
        print(f"error: {'interrupted' if isinstance(exc.__cause__, KeyboardInterrupt) else 'aborted'}",
              file=sys.stderr)
        code = EXIT_INTERRUPTED
    except _usage_error_types() as exc:  # unknown option, bad value, missing argument...
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            print(f"error: {printable(' '.join(exc.format_message().split()))}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one boundary that must never show a traceback
        if os.environ.get("SAFECOMPRESS_DEBUG") == "1":
            raise
        msg = printable(" ".join(str(exc).split())[:500])
        print(f"error: internal error: {type(exc).__name__}: {msg} (set SAFECOMPRESS_DEBUG=1 for the traceback)",
              file=sys.stderr)
        code = EXIT_INTERNAL
    finally:
        if sys.stdout is not real_stdout:
            sys.stdout = real_stdout
            _JSON_STDOUT.pop()
    sys.stdout.flush()
    return code


def run() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
