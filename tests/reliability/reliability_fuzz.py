"""Fuzzing harness for every input a user hands safecompress: artifacts, data files and YAML configs.

Mutations (all drawn from a seeded ``random.Random``, so a case is reproduced by its id):

* bytes of ``.tflite`` / ``.onnx`` / ``.ptl`` / ``.pte`` / ``.npz`` / YAML: truncation, byte and bit flips,
  overwritten 4-byte words (flatbuffer offsets), inserted / deleted / zeroed ranges, splices of two valid
  files; for zip containers (``.ptl``, ``.npz``) also a mutated member re-zipped with a correct CRC, so the
  mutation reaches the parser behind the zip layer;
* ``.npz`` contents: NaN/inf, wrong dtypes and shapes, labels out of range, missing arrays, object arrays,
  headers declaring huge arrays, zip bombs;
* YAML structure: wrong types, unknown and non-string keys, deep nesting, huge numbers, python tags,
  anchors/aliases ("billion laughs"), several documents, an oversized file.

* hostile artifacts (``hostile/make_hostile.py``: payload ``.ptl`` with file operators, ONNX external data, loop
  and allocation bombs) mutated like the artifacts above (target ``hostile``); these always run in the sandbox.

Targets (what a case is fed to): ``load_artifact(path)`` then ``predict_proba`` on valid samples (artifacts);
``toolkit.io.load_npz`` + ``validate_arrays`` (the audit's data path), ``load_npz_dataset`` (the run's) and a
query of the ONNX seed (npz); ``load_config(.., RunConfig)`` + candidate planning + the JSON the engine
fingerprints (run config), ``load_policy`` (gate policy), ``load_audit_config`` (audit config).

Verdicts: ``ok`` (success; artifacts returned finite probability rows of the right shape), ``error`` (a
:class:`~toolkit.errors.SafeCompressError` with a one-line message), ``bad`` (any other exception, a
multi-line message, or an invalid result), ``hang`` (> ``CASE_TIMEOUT_S``), ``crash`` (the process died).

Cases run in long-lived worker processes (``python reliability_fuzz.py worker MANIFEST START``) so that the
frameworks are imported once, not per case. :func:`device_tests.load_artifact` opens every artifact this
process did not produce in a sandbox child (:mod:`device_tests.sandbox`); to keep the bulk fast, the workers
mark most cases' bytes as their own (:func:`device_tests.sandbox.trust`) and open them in-process (the worker,
with its address-space limit, is then the one that may crash or hang), while a fraction (``sandboxed``), and
every ``hostile`` case, go through the real sandbox. A case that kills or hangs a worker is replayed through the
real CLI (``safecompress query``, sandbox included), which must end with exit 0 or 2 and one line: the verdict
is then ``sandboxed-crash`` / ``sandboxed-hang`` (contained), not a failure.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import selectors
import shutil
import struct
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
SEEDS = CORPUS / "seeds"
CASE_TIMEOUT_S = 30
ARTIFACTS = ("tflite", "onnx", "ptl", "pte")
YAMLS = ("run_config", "gate_policy", "audit_config")
TARGETS = (*ARTIFACTS, "hostile", "npz", *YAMLS)
#: Targets whose cases are artifacts (fed to load_artifact, replayed with `safecompress query`).
ARTIFACT_TARGETS = (*ARTIFACTS, "hostile")
SUFFIX = {**{f: f".{f}" for f in ARTIFACTS}, "npz": ".npz", **{y: ".yaml" for y in YAMLS}}
#: Hostile kinds mutated by the ``hostile`` target: cheap to build and to run (the ones that only end at the
#: sandbox's timeout, and the TensorFlow-built one, stay in test_hostile_artifacts.py).
HOSTILE_SEEDS = ("ptl_read_file", "ptl_write_file", "ptl_setstate_write", "ptl_print", "ptl_int_input",
                 "onnx_external_data", "onnx_loop_huge", "onnx_alloc_visible", "onnx_alloc_hidden",
                 "onnx_alloc_data")
#: Per-call timeout of sandboxed cases in the workers (below CASE_TIMEOUT_S, so a hang is the sandbox's verdict).
SANDBOX_TIMEOUT_S = 10
#: Array-size limit the workers run under (a zip bomb case decompresses to more than this).
ARRAY_LIMIT = 64 * 1024**2
#: Address-space limit of a worker: a file that makes a runtime allocate wildly fails instead of swapping.
WORKER_MEMORY = 4 * 1024**3

RUN_CONFIG = """\
seed: 0
data: {dataset: digits, members: 300, nonmembers: 300, population: 300}
model: {arch: mlp, hidden: [32]}
train: {epochs: 8, batch_size: 64, lr: 0.001}
candidates:
  - method: torch_global_unstructured
    grid: {sparsity: [0.5, 0.9]}
  - method: tflite_dynamic
  - method: safecompress
    params: {density: 0.3, rounds: 1, epochs_per_round: 1.0}
export: {torch: onnx, keras: tflite, sample: 64}
selection: {objective: constrained, max_accuracy_drop: 0.1, attack_epochs: 10, attack_fine_tune_epochs: 2}
final_audit: {attacks: [loss, entropy, compleak_sr], reference_models: 2, n_bootstrap: 20}
executor: {name: inprocess, retries: 1}
"""

AUDIT_CONFIG = """\
model: {arch: mlp, input_shape: [8, 8, 1], n_classes: 10, hidden: [16]}
framework: torch
recipe: {epochs: 2, overfit: false, seed: 0}
population: POPULATION
n_reference_models: 2
online: null
fraction: 0.5
population_z: 20
attacks: [loss, lira_offline]
executor: inprocess
seed: 0
"""


def yaml_seeds() -> dict[str, str]:
    return {"run_config": RUN_CONFIG,
            "gate_policy": (ROOT / "configs" / "gate.example.yaml").read_text(encoding="utf-8"),
            "audit_config": AUDIT_CONFIG.replace("POPULATION", str(SEEDS / "data.npz"))}


@functools.cache
def hostile_seeds() -> list[tuple[str, bytes]]:
    """``(suffix, bytes)`` of the :data:`HOSTILE_SEEDS` kinds, built by ``hostile/make_hostile.py`` once per process
    (TorchScript numbers the classes it compiles: a second build in one process differs in its names)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from hostile import make_hostile as mh

    return [(Path(mh.KINDS[k][0]).suffix, mh.build(k)) for k in HOSTILE_SEEDS]


def artifact_seeds() -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for fmt in ARTIFACTS:
        out[fmt] = [p.read_bytes() for p in sorted(SEEDS.glob(f"*.{fmt}"))]
        assert out[fmt], f"no seed for {fmt} in {SEEDS} (run tests/reliability/make_seeds.py)"
    return out


# ============================================================================================ mutations
INTERESTING32 = (0, 1, 2, 4, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                 0xFFFFFFFF, 0xFFFFFFFE, 0x40000000)


def _flip(rng: random.Random, b: bytearray) -> str:
    n = rng.choice((1, 1, 2, 4, 8, 16))
    for _ in range(n):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return f"flip{n}"


def _bits(rng: random.Random, b: bytearray) -> str:
    n = rng.choice((1, 2, 3))
    for _ in range(n):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return f"bits{n}"


def _word(rng: random.Random, b: bytearray) -> str:
    if len(b) < 8:
        return _flip(rng, b)
    i = rng.randrange(0, len(b) - 4) & ~3
    v = rng.choice(INTERESTING32 + (len(b), len(b) - i, rng.randrange(1 << 32)))
    b[i:i + 4] = struct.pack("<I", v)
    return "word"


def byte_mutation(rng: random.Random, data: bytes, others: list[bytes]) -> tuple[str, bytes]:
    """One random byte-level mutation of ``data`` (``others``: valid files to splice with)."""
    b = bytearray(data)
    n = len(b)
    kind = rng.choice(("truncate", "truncate", "flip", "flip", "bits", "word", "word", "insert", "delete",
                       "fill", "splice", "splice", "stack"))
    if kind == "truncate":
        cut = rng.choice((rng.randrange(n), rng.randrange(min(n, 64)), n - 1 - rng.randrange(min(n, 64))))
        return kind, bytes(b[:max(cut, 0)])
    if kind == "flip":
        return _flip(rng, b), bytes(b)
    if kind == "bits":
        return _bits(rng, b), bytes(b)
    if kind == "word":
        return _word(rng, b), bytes(b)
    if kind == "insert":
        i = rng.randrange(n + 1)
        k = rng.choice((1, 4, 16, 256))
        blob = bytes(rng.randrange(256) for _ in range(k)) if rng.random() < 0.5 else bytes(b[i:i + k])
        return kind, bytes(b[:i] + blob + b[i:])
    if kind == "delete":
        i = rng.randrange(n)
        k = rng.choice((1, 4, 16, 256))
        return kind, bytes(b[:i] + b[i + k:])
    if kind == "fill":
        i = rng.randrange(n)
        k = rng.choice((4, 16, 64, 512))
        b[i:i + k] = bytes([rng.choice((0, 0xFF))]) * len(b[i:i + k])
        return kind, bytes(b)
    if kind == "stack" and others:  # two mutations in a row
        k1, d1 = byte_mutation(rng, bytes(b), others)
        if not d1:
            return k1, d1
        k2, d2 = byte_mutation(rng, d1, others)
        return f"{k1}+{k2}", d2
    other = rng.choice(others) if others else bytes(b)
    i, j = rng.randrange(n), rng.randrange(len(other))
    return "splice", bytes(b[:i] + other[j:])


def zip_member_mutation(rng: random.Random, data: bytes, others: list[bytes]) -> tuple[str, bytes]:
    """Mutate one member of a zip archive and write the archive again (correct CRCs, same member names)."""
    try:
        zin = zipfile.ZipFile(io.BytesIO(data))
        members = [(i, zin.read(i)) for i in zin.infolist()]
    except Exception:
        return byte_mutation(rng, data, others)
    pick = rng.randrange(len(members))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
        for k, (info, content) in enumerate(members):
            if k == pick and content:
                kind, content = byte_mutation(rng, content, [c for _, c in members if c])
            zout.writestr(info.filename, content)
    return f"zip:{Path(members[pick][0].filename).name}:{kind if members[pick][1] else 'empty'}", buf.getvalue()


def artifact_case(rng: random.Random, fmt: str, seeds: dict[str, list[bytes]]) -> tuple[str, bytes]:
    base = rng.choice(seeds[fmt])
    same = [s for s in seeds[fmt] if s is not base]
    pool = same + [s for f, ss in seeds.items() if f != fmt for s in ss]
    others = same if (same and rng.random() < 0.7) else pool
    if fmt == "ptl" and rng.random() < 0.5:
        return zip_member_mutation(rng, base, others)
    return byte_mutation(rng, base, others)


# ---------------------------------------------------------------------------------------------- npz
def _npz(**arrays) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy_header_only(shape: tuple, dtype: str = "<f4") -> bytes:
    """An .npy member whose header declares ``shape`` but that holds (almost) no data."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64


def npz_structural(rng: random.Random, x, y) -> tuple[str, bytes]:
    import numpy as np

    n = len(x)
    kind = rng.choice(("nan", "inf", "label_big", "label_neg", "label_float", "label_2d", "x_1d", "x_str",
                       "x_complex", "x_bool", "x_int_big", "x_uint", "x_structured", "y_bool", "len_mismatch",
                       "empty", "missing_y", "missing_x", "extra", "object", "huge_header", "zip_bomb",
                       "x_f16", "x_transposed", "x_scalar", "nested_zip", "y_uint64"))
    xx, yy = x.copy(), y.copy()
    if kind == "nan":
        xx.reshape(n, -1)[rng.randrange(n), 0] = np.nan
    elif kind == "inf":
        xx.reshape(n, -1)[rng.randrange(n), -1] = -np.inf
    elif kind == "label_big":
        yy[rng.randrange(n)] = rng.choice((10, 11, 255, 10**12, 2**62))
    elif kind == "label_neg":
        yy[rng.randrange(n)] = -rng.choice((1, 2**40))
    elif kind == "label_float":
        return kind, _npz(x=xx, y=yy.astype(np.float64) + rng.choice((0.5, 0.0, np.nan)))
    elif kind == "label_2d":
        return kind, _npz(x=xx, y=yy.reshape(n, 1))
    elif kind == "x_1d":
        return kind, _npz(x=xx.reshape(-1), y=yy)
    elif kind == "x_str":
        return kind, _npz(x=np.array(["a"] * n), y=yy)
    elif kind == "x_complex":
        return kind, _npz(x=xx.astype(np.complex64) * 1j, y=yy)
    elif kind == "x_bool":
        return kind, _npz(x=xx > 0.5, y=yy)
    elif kind == "x_int_big":
        return kind, _npz(x=(xx * 2**40).astype(np.int64), y=yy)
    elif kind == "x_uint":
        return kind, _npz(x=(xx * 255).astype(np.uint8), y=yy)
    elif kind == "x_structured":
        return kind, _npz(x=np.zeros(n, dtype=[("a", "<f4"), ("b", "<i4")]), y=yy)
    elif kind == "y_bool":
        return kind, _npz(x=xx, y=yy > 4)
    elif kind == "y_uint64":
        return kind, _npz(x=xx, y=np.full(n, 2**64 - 1, dtype=np.uint64))
    elif kind == "len_mismatch":
        return kind, _npz(x=xx, y=yy[: n - 1 - rng.randrange(n - 1)])
    elif kind == "empty":
        return kind, _npz(x=xx[:0], y=yy[:0])
    elif kind == "missing_y":
        return kind, _npz(x=xx)
    elif kind == "missing_x":
        return kind, _npz(y=yy)
    elif kind == "extra":
        return kind, _npz(x=xx, y=yy, z=np.arange(3))
    elif kind == "object":
        buf = io.BytesIO()
        np.savez(buf, x=np.array([{"a": 1}] * n, dtype=object), y=yy)
        return kind, buf.getvalue()
    elif kind == "huge_header":
        shape = rng.choice(((10**12,), (2**31, 64), (n, 10**9), (-1,), (2**63,)))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("x.npy", _npy_header_only(shape))
            z.writestr("y.npy", _npy_header_only((n,), "<i8"))
        return kind, buf.getvalue()
    elif kind == "zip_bomb":  # ~130 KB on disk, 128 MiB of zeros once decompressed: over ARRAY_LIMIT
        buf = io.BytesIO()
        np.savez_compressed(buf, x=np.zeros((2048, 16384), np.float32), y=np.zeros(2048, np.int64))
        return kind, buf.getvalue()
    elif kind == "x_f16":
        return kind, _npz(x=xx.astype(np.float16), y=yy)
    elif kind == "x_transposed":
        return kind, _npz(x=np.ascontiguousarray(xx.transpose(0, 3, 1, 2)), y=yy)
    elif kind == "x_scalar":
        return kind, _npz(x=np.float32(1.0), y=np.int64(0))
    elif kind == "nested_zip":
        inner = _npz(x=xx, y=yy)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("x.npy", inner)
            z.writestr("y.npy", inner)
        return kind, buf.getvalue()
    return kind, _npz(x=xx, y=yy)


def npz_case(rng: random.Random, valid: list[bytes], x, y) -> tuple[str, bytes]:
    r = rng.random()
    if r < 0.35:
        return npz_structural(rng, x, y)
    base = rng.choice(valid)
    if r < 0.7:
        return zip_member_mutation(rng, base, valid)
    return byte_mutation(rng, base, valid)


# ---------------------------------------------------------------------------------------------- yaml
WEIRD = ([], {}, "", "x" * 10_000, 10**100, -(10**30), float("inf"), float("-inf"), float("nan"), None, True,
         False, -1, 0, 1, 2**63, -(2**63) - 1, 0.5, "1e400", [[]], {"a": 1}, [1, "two", None], "digits",
         "../../etc/passwd", "\x00", "ünïcødé", 1e-320)


def _paths(obj, prefix=()):
    """Every path (tuple of keys/indices) into a parsed YAML tree."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _dump(obj) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=10**6)


def _laughs(depth: int, width: int = 9) -> str:
    lines = [f"  l0: &l0 [{', '.join(['lol'] * width)}]"]
    for d in range(1, depth + 1):
        lines.append(f"  l{d}: &l{d} [{', '.join([f'*l{d - 1}'] * width)}]")
    return "\n".join(lines)


def yaml_structural(rng: random.Random, target: str, text: str) -> tuple[str, str]:
    import yaml

    tree = yaml.safe_load(text)
    paths = [p for p in _paths(tree) if p]
    kind = rng.choice(("wrong_type", "wrong_type", "wrong_type", "unknown_key", "nonstr_key", "deep_list",
                       "deep_map", "huge_int", "huge_float", "python_tag", "laughs", "laughs_in_place",
                       "multi_doc", "root_type", "binary", "set", "date", "merge_key", "long_key",
                       "delete_key", "dup_key", "tabs", "null_doc", "oversized", "alias_self"))
    if kind == "wrong_type":
        path = rng.choice(paths)
        _set(tree, path, rng.choice(WEIRD))
        return f"{kind}:{'.'.join(map(str, path))}", _dump(tree)
    if kind in ("unknown_key", "nonstr_key"):
        dicts = [p for p in [()] + paths if isinstance(_get(tree, p), dict)]
        where = _get(tree, rng.choice(dicts))
        key = rng.choice(("epoch", "seeed", "__class__", "!!python", "max_increse")) if kind == "unknown_key" else \
            rng.choice((1, 2.5, None, True))
        where[key] = rng.choice(WEIRD)
        return kind, _dump(tree)
    if kind in ("deep_list", "deep_map"):
        depth = rng.choice((50, 500, 5000, 50_000))
        value = "[" * depth + "]" * depth if kind == "deep_list" else "{a: " * depth + "1" + "}" * depth
        key = rng.choice([k for k in tree]) if isinstance(tree, dict) and tree else "x"
        return f"{kind}{depth}", _dump({**tree, key: None}).replace(f"{key}: null", f"{key}: {value}", 1)
    if kind in ("huge_int", "huge_float"):
        path = rng.choice(paths)
        literal = rng.choice(("9" * 5000, "-" + "9" * 400, "0x" + "f" * 300, "1" * 40)) if kind == "huge_int" else \
            rng.choice(("1e400", "-1e400", ".inf", ".nan", "-.inf", "1e-400", "0.1e99999"))
        _set(tree, path, "@@NUM@@")
        return f"{kind}:{'.'.join(map(str, path))}", _dump(tree).replace("'@@NUM@@'", literal).replace("@@NUM@@", literal)
    if kind == "python_tag":
        tag = rng.choice(("!!python/object/apply:os.system ['echo pwned']", "!!python/name:os.system",
                          "!!python/object:builtins.dict {}", "!<tag:yaml.org,2002:python/tuple> [1, 2]"))
        path = rng.choice(paths)
        _set(tree, path, "@@TAG@@")
        return kind, _dump(tree).replace("'@@TAG@@'", tag).replace("@@TAG@@", tag)
    if kind in ("laughs", "laughs_in_place"):
        depth = rng.choice((4, 6, 9))
        if kind == "laughs":  # anchors in an unknown top-level key, used by a real one
            field_ = {"run_config": "candidates", "gate_policy": "attacks", "audit_config": "attacks"}[target]
            return f"{kind}{depth}", f"bombs:\n{_laughs(depth)}\n" + _dump({**tree, field_: "@@B@@"}).replace(
                "'@@B@@'", f"*l{depth}").replace("@@B@@", f"*l{depth}")
        # anchors defined inside a free-form mapping the schema accepts as is (candidate params)
        if target == "run_config":
            tree["candidates"][0]["params"] = {"junk": "@@B@@"}
            body = _dump(tree).replace("junk: '@@B@@'", "junk:\n" + "\n".join(
                "        " + ln.strip() for ln in _laughs(depth).splitlines()))
            return f"{kind}{depth}", body
        return f"{kind}{depth}", _dump(tree) + "\n" + _laughs(depth).replace("  l", "l")
    if kind == "multi_doc":
        return kind, text + "\n---\n" + text
    if kind == "root_type":
        return kind, rng.choice(("[1, 2, 3]\n", "just a string\n", "42\n", "- a\n- b\n", "~\n", "!!binary aGVsbG8=\n"))
    if kind == "binary":
        path = rng.choice(paths)
        _set(tree, path, b"\x00\x01binary")
        return kind, _dump(tree)
    if kind == "set":
        path = rng.choice(paths)
        _set(tree, path, "@@SET@@")
        return kind, _dump(tree).replace("'@@SET@@'", "!!set {a, b}").replace("@@SET@@", "!!set {a, b}")
    if kind == "date":
        import datetime

        path = rng.choice(paths)
        _set(tree, path, rng.choice((datetime.date(2001, 12, 14), datetime.datetime(2001, 12, 14, 21, 59, 43))))
        return kind, _dump(tree)
    if kind == "merge_key":
        return kind, "base: &base {seed: 1}\n<<: *base\n" + text
    if kind == "long_key":
        return kind, "k" * 2000 + ": 1\n" + text
    if kind == "delete_key":
        path = rng.choice(paths)
        parent = _get(tree, path[:-1])
        del parent[path[-1]]
        return kind, _dump(tree)
    if kind == "dup_key":
        return kind, text + "\n" + text.splitlines()[0] + "\n"
    if kind == "tabs":
        return kind, text.replace("  ", "\t", 3)
    if kind == "null_doc":
        return kind, rng.choice(("", "\n", "---\n", "# only a comment\n", "null\n"))
    if kind == "oversized":
        return kind, text + "# " + "x" * (1024**2 + 10) + "\n"
    if kind == "alias_self":
        return kind, "a: &a [*a]\n" + text
    return "identity", text


def yaml_case(rng: random.Random, target: str, seeds: dict[str, str]) -> tuple[str, bytes]:
    text = seeds[target]
    if rng.random() < 0.55:
        kind, body = yaml_structural(rng, target, text)
        return kind, body.encode("utf-8")
    return byte_mutation(rng, text.encode("utf-8"), [s.encode("utf-8") for s in seeds.values()])


# ============================================================================================ cases
@dataclass
class Case:
    id: str
    target: str
    path: str
    kind: str
    sandboxed: bool = False  # open through the real sandbox (else in-process in the worker)


@dataclass
class Result:
    id: str
    target: str
    kind: str
    status: str
    message: str = ""
    seconds: float = 0.0
    detail: str = ""
    cli: dict | None = field(default=None)


def generate(counts: dict[str, int], out_dir: Path, seed: int = 0, sandbox_every: dict[str, int] | None = None,
             ) -> list[Case]:
    """Write ``counts[target]`` mutated cases per target under ``out_dir``; return them (order: by target).
    Every ``sandbox_every[target]``-th case (and every ``hostile`` case) is opened through the real sandbox."""
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    art = artifact_seeds()
    ys = yaml_seeds()
    with np.load(SEEDS / "data.npz", allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    npz_valid = [(SEEDS / "data.npz").read_bytes(), _npz(x=x[:8], y=y[:8]),
                 _npz(x=x.reshape(len(x), -1), y=y)]
    sandbox_every = sandbox_every or {}
    hostile = hostile_seeds() if counts.get("hostile") else []
    cases = []
    for target in TARGETS:
        rng = random.Random(f"{seed}:{target}")
        every = 1 if target == "hostile" else sandbox_every.get(target, 0)
        for i in range(counts.get(target, 0)):
            suffix = SUFFIX.get(target, "")
            if target in ARTIFACTS:
                kind, data = artifact_case(rng, target, art)
            elif target == "hostile":
                k = i % len(hostile)  # every seed once before any twice; the first round unmutated
                suffix, base = hostile[k]
                same = [b for s, b in hostile if s == suffix and b is not base]
                kind, data = ("as-built", base) if i < len(hostile) else (
                    zip_member_mutation(rng, base, same) if suffix == ".ptl" and rng.random() < 0.5
                    else byte_mutation(rng, base, same))
                kind = f"{HOSTILE_SEEDS[k]}:{kind}"
            elif target == "npz":
                kind, data = npz_case(rng, npz_valid, x, y)
            else:
                kind, data = yaml_case(rng, target, ys)
            cid = f"{target}-{seed}-{i:05d}"
            p = out_dir / f"{cid}{suffix}"
            p.write_bytes(data)
            cases.append(Case(cid, target, str(p), kind, sandboxed=bool(every) and i % every == 0))
    return cases


def corpus_cases() -> list[Case]:
    """Every saved regression input under ``corpus/<target>/`` (the seeds are not cases)."""
    cases = []
    for target in TARGETS:
        d = CORPUS / target
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file() and not p.name.startswith("."):
                    cases.append(Case(f"corpus-{target}-{p.name}", target, str(p), "corpus",
                                      sandboxed=target == "hostile"))
    return cases


# ============================================================================================ worker side
class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case (a BaseException so that no `except Exception` swallows it)."""


def _check_probs(probs, n: int) -> str | None:
    import numpy as np

    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] != n or probs.shape[1] < 1:
        return f"predict_proba returned shape {probs.shape} for {n} samples"
    if not np.isfinite(probs).all():
        return "predict_proba returned NaN or inf"
    if (probs < -1e-6).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=0.05):
        return "predict_proba rows are not probability distributions"
    return None


class Checker:
    """Feeds one case to its real loader (in this process)."""

    def __init__(self):
        import numpy as np

        with np.load(SEEDS / "data.npz", allow_pickle=False) as d:
            self.x = d["x"][:5]
        self._onnx = None

    def artifact(self, case: Case) -> str | None:
        from device_tests import load_artifact
        from device_tests.sandbox import trust
        from toolkit.io import sha256_bytes

        if not case.sandboxed:  # the worker is the sandbox: open the bytes in-process
            trust(sha256_bytes(Path(case.path).read_bytes()))
        rt = load_artifact(case.path, sandbox=True if case.sandboxed else None)
        try:
            rt.describe()
            return _check_probs(rt.predict_proba(self.x), len(self.x))
        finally:
            close = getattr(rt, "close", None)
            if close is not None:
                close()

    def npz(self, case: Case) -> str | None:
        from device_tests import load_artifact
        from toolkit.data import validate_arrays
        from toolkit.data.loaders import load_npz_dataset
        from toolkit.errors import SafeCompressError
        from toolkit.io import load_npz

        problems = []
        steps = [
            lambda: validate_arrays(*_xy(load_npz(case.path)), "members", 10),   # audit / gate data path
            lambda: load_npz_dataset(case.path),                                 # run's data.dataset: npz
        ]

        def query():                                                             # query's data path
            if self._onnx is None:
                self._onnx = load_artifact(SEEDS / "mlp.onnx")
            x = load_npz(case.path, keys=("x",))["x"]
            return _check_probs(self._onnx.predict_proba(x), len(x))

        steps.append(query)
        first_error = None
        for step in steps:
            try:
                out = step()
                if isinstance(out, str):
                    problems.append(out)
            except SafeCompressError as exc:
                first_error = first_error or exc
        if problems:
            return problems[0]
        if first_error is not None:
            raise first_error
        return None

    def run_config(self, case: Case) -> str | None:
        from toolkit.config_io import load_config
        from toolkit.select.config import RunConfig
        from toolkit.select.engine import _fingerprint, expand_candidates
        from toolkit.select.sources import input_framework

        cfg = load_config(case.path, RunConfig, "run config")
        plan = expand_candidates(cfg)
        for name, section, params in plan:       # what the engine does before any training
            input_framework(section.method, section.framework)
            _fingerprint(name, section.method, params, section.export)
        json.dumps(cfg.model_dump(mode="json"))  # the report embeds the config
        return None

    def gate_policy(self, case: Case) -> str | None:
        from toolkit.gate.policy import load_policy

        policy = load_policy(case.path)
        policy.thresholds()
        json.dumps(policy.model_dump(mode="json"))
        return None

    def audit_config(self, case: Case) -> str | None:
        from toolkit.attacks.config import load_audit_config

        cfg = load_audit_config(case.path)
        cfg.load_population()
        json.dumps(cfg.model_dump(mode="json"))
        return None


def _xy(arrays):
    return arrays["x"], arrays["y"]


def run_case(checker: Checker, case: Case) -> Result:
    import signal

    from toolkit.errors import SafeCompressError

    def alarm(signum, frame):
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, alarm)
    t0 = time.perf_counter()
    status, message, detail = "ok", "", ""
    try:
        signal.alarm(CASE_TIMEOUT_S)
        try:
            problem = getattr(checker, case.target if case.target not in ARTIFACT_TARGETS else "artifact")(case)
        finally:
            signal.alarm(0)
        if problem:
            status, message = "bad", problem
    except SafeCompressError as exc:
        msg = str(exc)
        status, message = ("error", msg) if msg and "\n" not in msg and "Traceback" not in msg else ("bad", repr(msg))
    except CaseTimeout:
        status, message = "hang", f"no verdict within {CASE_TIMEOUT_S} s"
        detail = traceback.format_exc(limit=-8)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - anything else is what the fuzzer is looking for
        status, message = "bad", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        detail = traceback.format_exc(limit=-12)
    return Result(case.id, case.target, case.kind, status, message[:500], round(time.perf_counter() - t0, 4), detail)


def worker_main(manifest: str, start: int) -> int:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    cases = [Case(**c) for c in json.loads(Path(manifest).read_text())]
    checker = Checker()
    out = sys.stdout
    for i in range(start, len(cases)):
        out.write(json.dumps({"start": i}) + "\n")
        out.flush()
        res = run_case(checker, cases[i])
        out.write(json.dumps({"end": i, "result": asdict(res)}) + "\n")
        out.flush()
    return 0


# ============================================================================================ driver side
def worker_env() -> dict[str, str]:
    env = dict(os.environ, SAFECOMPRESS_THREADS="1", SAFECOMPRESS_QUIET="1", TF_USE_LEGACY_KERAS="1",
               SAFECOMPRESS_MAX_ARRAY_BYTES=str(ARRAY_LIMIT), SAFECOMPRESS_SANDBOX_TIMEOUT=str(SANDBOX_TIMEOUT_S),
               OMP_NUM_THREADS="1", PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def cli_check(args: list[str], timeout: float = 120) -> dict:
    """Run ``safecompress ARGS`` and judge it: exit 0 or 2 (gate: also 1), one ``error:`` line with exit 2, no
    traceback, no signal, no hang."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                           env=worker_env(), cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "why": f"hang: no exit within {timeout} s", "args": list(map(str, args))}
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    why = None
    if r.returncode < 0:
        why = f"killed by signal {-r.returncode}"
    elif r.returncode not in ((0, 1, 2) if args[0] == "gate" else (0, 2)):  # gate: 1 = a limit is exceeded
        why = f"exit {r.returncode}"
    elif "Traceback" in r.stderr or "Traceback" in r.stdout:
        why = "traceback"
    elif r.returncode == 2 and (len(errors) != 1 or not lines[-1].startswith("error:")):
        why = "not one error line"
    return {"ok": why is None, "why": why, "rc": r.returncode, "stderr": r.stderr[-600:],
            "args": list(map(str, args)), "seconds": round(time.perf_counter() - t0, 2)}


def cli_args_for(case: Case, scratch: Path) -> list[list[str]]:
    """The CLI invocations a case is replayed through."""
    import numpy as np

    data = SEEDS / "data.npz"
    if case.target in ARTIFACT_TARGETS:
        return [["query", case.path, "--data", str(data)]]
    if case.target == "npz":
        other = scratch / "cli-nonmembers.npz"
        if not other.exists():
            with np.load(data) as d:
                np.savez(other, x=np.clip(d["x"][:8] + 0.01, 0, 1), y=d["y"][:8])
        return [["query", str(SEEDS / "mlp.onnx"), "--data", case.path],
                ["audit", str(SEEDS / "mlp.onnx"), "--members", case.path, "--nonmembers", str(other),
                 "--attacks", "loss"]]
    if case.target == "gate_policy":
        members = scratch / "cli-members.npz"
        nonmembers = scratch / "cli-nonmembers2.npz"
        if not members.exists():
            with np.load(data) as d:
                np.savez(members, x=d["x"][:16], y=d["y"][:16])
                np.savez(nonmembers, x=d["x"][16:], y=d["y"][16:])
        return [["gate", str(SEEDS / "mlp.onnx"), "--members", str(members), "--nonmembers", str(nonmembers),
                 "--policy", case.path, "--attacks", "loss", "--quiet"]]
    if case.target == "audit_config":
        return [["audit", str(SEEDS / "mlp.onnx"), "--members", str(SEEDS / "data.npz"), "--nonmembers",
                 str(scratch / "cli-nonmembers.npz"), "--config", case.path, "--attacks", "loss"]]
    return [["run", case.path, "--out", str(scratch / f"run-{case.id}"), "--quiet"]]


class Lane(threading.Thread):
    """Runs a list of cases through worker processes, restarting a worker after a crash or a hang."""

    def __init__(self, cases: list[Case], scratch: Path, name: str):
        super().__init__(name=name, daemon=True)
        self.cases, self.scratch = cases, scratch
        self.results: dict[str, Result] = {}
        self.error: BaseException | None = None

    def run(self):
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the driver
            self.error = exc

    def _run(self):
        if not self.cases:
            return
        manifest = self.scratch / f"{self.name}.json"
        manifest.write_text(json.dumps([asdict(c) for c in self.cases]))
        start = 0
        while start < len(self.cases):
            start = self._worker(manifest, start)

    def _worker(self, manifest: Path, start: int) -> int:
        log = open(self.scratch / f"{self.name}-{start}.stderr", "wb")
        proc = subprocess.Popen([sys.executable, str(Path(__file__)), "worker", str(manifest), str(start)],
                                stdout=subprocess.PIPE, stderr=log, env=worker_env(), cwd=ROOT,
                                start_new_session=True)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        current, buf = None, b""
        deadline = time.monotonic() + 180  # start-up: importing the frameworks
        try:
            while True:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    _kill_group(proc)
                    return self._died(current, start, f"hang: no verdict within {CASE_TIMEOUT_S} s (worker killed)")
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    rc = proc.wait()
                    if current is None:
                        if rc == 0:
                            return len(self.cases)
                        raise RuntimeError(f"fuzz worker exited {rc} before a case; see {log.name}")
                    return self._died(current, start, f"crash: worker died (exit {rc}) in this case")
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    at = line.find(b'{"')  # a native library may have written to stdout without a newline
                    try:
                        msg = json.loads(line[at:]) if at >= 0 else None
                    except ValueError:
                        msg = None
                    if not isinstance(msg, dict):
                        continue
                    if "start" in msg:
                        current = msg["start"]
                        deadline = time.monotonic() + CASE_TIMEOUT_S + 15
                    else:
                        res = Result(**msg["result"])
                        self.results[res.id] = res
                        current = None
                        deadline = time.monotonic() + 60
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            proc.stdout.close()
            log.close()

    def _died(self, index: int | None, start: int, why: str) -> int:
        if index is None:
            raise RuntimeError(f"fuzz worker failed outside a case: {why}")
        case = self.cases[index]
        status = "hang" if why.startswith("hang") else "crash"
        res = Result(case.id, case.target, case.kind, status, why)
        # The real user path runs every artifact in the sandbox: the CLI must survive what killed the worker.
        checks = [cli_check(a, timeout=CASE_TIMEOUT_S * 4) for a in cli_args_for(case, self.scratch)]
        res.cli = {"checks": checks}
        if case.target in ARTIFACT_TARGETS and all(c["ok"] for c in checks):
            res.status = f"sandboxed-{status}"  # the in-process worker died, the sandboxed CLI did not
        self.results[case.id] = res
        return index + 1


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a worker (its sandbox children die with it: parent-death signal); the worker leads its own
    session."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_cases(cases: list[Case], scratch: Path, lanes: int = 2) -> list[Result]:
    """Run ``cases`` on ``lanes`` parallel worker processes; results in case order."""
    scratch.mkdir(parents=True, exist_ok=True)
    groups = [g for g in (cases[i::lanes] for i in range(max(1, lanes))) if g]  # interleaved: balanced lanes
    threads = [Lane(g, scratch, f"lane{i}") for i, g in enumerate(groups)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in threads:
        if t.error is not None:
            raise t.error
    merged = {k: v for t in threads for k, v in t.results.items()}
    return [merged[c.id] for c in cases if c.id in merged]


FAILING = ("bad", "hang", "crash")


def failures(results: list[Result]) -> list[Result]:
    return [r for r in results if r.status in FAILING]


def summarize(results: list[Result]) -> dict:
    out: dict[str, dict[str, int]] = {}
    for r in results:
        row = out.setdefault(r.target, {})
        row[r.status] = row.get(r.status, 0) + 1
    for target, row in out.items():
        row["total"] = sum(row.values())
        row["seconds"] = round(sum(r.seconds for r in results if r.target == target), 2)
    return {"per_target": out, "total": len(results)}


def save_failures(results: list[Result], cases: list[Case], dest: Path) -> list[Path]:
    """Copy the inputs of failed cases to ``dest/<target>/`` (for the corpus) and return their paths."""
    by_id = {c.id: c for c in cases}
    saved = []
    for r in failures(results):
        case = by_id[r.id]
        d = dest / case.target
        d.mkdir(parents=True, exist_ok=True)
        p = d / Path(case.path).name
        shutil.copyfile(case.path, p)
        saved.append(p)
    return saved


def describe_failures(results: list[Result]) -> str:
    lines = []
    for r in failures(results):
        lines.append(f"{r.id} [{r.kind}] {r.status}: {r.message}")
        if r.detail:
            lines.append("    " + r.detail.strip().replace("\n", "\n    ")[-1500:])
        if r.cli:
            lines.append(f"    cli: {json.dumps(r.cli)[:800]}")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.path.insert(0, str(ROOT))
        sys.exit(worker_main(sys.argv[2], int(sys.argv[3])))
    # Ad-hoc: python reliability_fuzz.py N [SEED] -> N cases per target, summary and failures.
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    scratch = Path(os.environ.get("FUZZ_SCRATCH", f"/tmp/fuzz-{seed}"))
    shutil.rmtree(scratch, ignore_errors=True)
    t0 = time.perf_counter()
    cs = generate({t: n for t in TARGETS}, scratch / "cases", seed,
                  sandbox_every={"tflite": 8, "ptl": 25, "pte": 100})
    rs = run_cases(cs, scratch)
    print(json.dumps(summarize(rs), indent=1))
    print(describe_failures(rs))
    print(f"{len(rs)} cases in {time.perf_counter() - t0:.1f} s")
