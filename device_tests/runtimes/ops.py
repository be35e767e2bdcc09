"""Operator allowlists for the artifact formats that are programs: TorchScript lite (``.ptl``) and ExecuTorch
(``.pte``). The sandbox child lists a program's operators *before* running any of it and refuses the artifact
(:class:`~toolkit.errors.ArtifactError`, naming the operator) when one falls outside the rule below. This is
defence in depth: the sandbox (:mod:`device_tests.sandbox`) already denies file and network access; the
allowlist makes a payload fail with a clear message instead of relying on a syscall being refused.

Rule for an operator ``ns::name.overload``:

1. **Never** (whatever its schema): the operators in :data:`NEVER` - file, storage, process, RPC and Python
   access (``aten::from_file``, ``aten::save``, ``prim::rpc_*``, ``prim::PythonOp``, futures/awaitables,
   profiling and stat hooks). The message says "file/storage/process access is never allowed".
2. The namespace must be an inference namespace: :data:`PTL_NAMESPACES` (``aten``, ``prim``, the torch.ao
   int8 kernels ``quantized`` / ``_quantized``, XNNPACK's ``prepacked``) for ``.ptl``;
   :data:`PTE_NAMESPACES` (``aten`` edge kernels, ``executorch_prim``, ``dim_order_ops``, the PT2E
   ``quantized_decomposed`` kernels) for ``.pte``.
3. ``.ptl`` (and ``aten`` ops of a ``.pte``, when this torch knows the schema): the operator's schema in this
   torch build (``torch._C._jit_get_schemas_for_operator``, matched by overload name) must exist (``.ptl``:
   an operator torch does not know cannot be checked, and the lite interpreter could not run it either), and
   * no argument or return mentions ``Storage``, ``Future``, ``RRef``, ``Await``, ``Stream`` or ``Event``,
     nor a TorchBind class other than the int8 packed-parameter classes (:data:`TORCHBIND_OK`);
   * every ``str`` argument (``str``, ``str?``, ``str[]``) has a name in :data:`SAFE_STR_ARGS`: the mode
     selectors of compute ops (``equation``, ``reduce``, ``mode``, ``approximate``, ``padding``,
     ``rounding_mode``, ``indexing``...) and the operands of TorchScript's string/dict operations (``self``,
     ``key``, ``substr``...). A ``filename``, ``path`` or ``name`` argument is never accepted.
4. ``.ptl`` only: the TorchBind classes a program *contains* must be in :data:`TORCHBIND_OK` too: those its
   bytecode names (``_get_mobile_model_contained_types``) and those its pickles instantiate (the ``GLOBAL``
   opcodes of ``data.pkl`` / ``constants.pkl``, read with :mod:`pickletools` - nothing is unpickled), since a
   class's ``__setstate__`` runs while the module loads.
5. ``.pte`` delegates: the backend id must be in :data:`PTE_BACKENDS` (``XnnpackBackend``: a compute-only CPU
   backend). Other backends registered in the runtime (QNN, OpenVINO) load libraries and caches from disk.

``prim::Print`` and ``aten::warn`` are allowed: what a program prints goes to the sandbox's private log and is
never relayed to the CLI's output.

The ``.ptl`` operator list is read from the archive's bytecode without loading the module
(``torch._C._get_model_ops_and_info_from_buffer``; loading runs ``__setstate__`` methods), and checked again on
the loaded module (``torch.jit.mobile._export_operator_list``). The ``.pte`` list is read from the program's
flatbuffer (``ExecutionPlan.operators`` and ``.delegates``) by :func:`pte_program_ops`, a small bounds-checked
reader (no ``flatc``, no ``executorch.exir``: the sandbox child can neither start processes nor write files).
"""

from __future__ import annotations

import struct
from functools import lru_cache

from toolkit.errors import ArtifactError

#: Operators refused whatever their schema says (by ``ns::name``, any overload).
NEVER = frozenset({
    "aten::from_file", "aten::save", "aten::load", "aten::_save", "aten::_load", "aten::set_", "aten::set",
    "aten::record_stream", "aten::wait", "aten::to_here", "aten::local_value", "aten::owner", "aten::owner_name",
    "aten::is_owner", "aten::confirmed_by_owner", "aten::_cufft_set_plan_cache_max_size",
    "prim::rpc_async", "prim::rpc_sync", "prim::rpc_remote", "prim::PythonOp", "prim::IgnoredPythonOp",
    "prim::awaitable_nowait", "prim::awaitable_wait", "prim::fork", "prim::AddStatValue", "prim::TimePoint",
    "prim::profile", "prim::profile_ivalue", "prim::BailOut", "prim::FallbackGraph",
    "debugprims::load_tensor", "et_copy::_h2d_copy", "et_copy::_d2h_copy",
})
PTL_NAMESPACES = frozenset({"aten", "prim", "quantized", "_quantized", "prepacked"})
PTE_NAMESPACES = frozenset({"aten", "executorch_prim", "dim_order_ops", "quantized_decomposed"})
PTE_BACKENDS = frozenset({"XnnpackBackend"})
#: TorchBind classes an inference program may hold or pass to an operator (int8 packed weights, RNN cells).
TORCHBIND_OK = ("__torch__.torch.classes.quantized.", "__torch__.torch.classes.rnn.CellParamsBase",
                "__torch__.torch.classes.sparse.LinearPackedParamsBase", "__torch__.torch.classes.xnnpack.")
#: Schema types an inference operator never takes or returns.
FORBIDDEN_TYPES = ("Storage", "Future", "RRef", "Await", "Stream", "Event", "Capsule")
#: Names of ``str`` arguments that select a computation or are the operands of string/dict operations.
SAFE_STR_ARGS = frozenset({
    # mode selectors of compute kernels
    "equation", "reduce", "reduction", "mode", "approximate", "padding", "rounding_mode", "indexing", "side",
    "interpolation", "ord", "p", "norm", "UPLO", "driver", "padding_side", "pad_mode", "activation",
    # assertion and exception messages
    "assert_msg", "msg", "cls", "message",
    # TorchScript string / dict / list operations (values in memory, never paths)
    "self", "a", "b", "s", "string", "substr", "separator", "chars", "fillchar", "el", "key", "item", "l", "idx",
    "input", "values", "old", "new", "inputs", "to_add", "t", "dict", "ind", "type", "device_type",
})
_STR_TYPES = ("str", "Optional[str]", "List[str]", "Optional[List[str]]")


def _split(op: str) -> tuple[str, str, str]:
    """``ns::name.overload`` -> (ns, ``ns::name``, overload)."""
    ns, _, rest = op.partition("::")
    name, _, overload = rest.partition(".")
    return ns, f"{ns}::{name}", overload


@lru_cache(maxsize=4096)
def _schema_problem(base: str, overload: str) -> str | None:
    """Why the torch schema of ``base.overload`` is not an inference operator's (None: it is one; "unknown": no
    such schema in this torch build)."""
    import torch

    try:
        schemas = torch._C._jit_get_schemas_for_operator(base)
    except Exception:  # noqa: BLE001 - a malformed name
        schemas = []
    schema = next((s for s in schemas if s.overload_name == overload), None)
    if schema is None:
        return "unknown"
    for arg in (*schema.arguments, *schema.returns):
        t = str(arg.type)
        if any(word in t for word in FORBIDDEN_TYPES):
            return f"it takes or returns a {t} (file/storage/process access is never allowed)"
        if "__torch__.torch.classes." in t and not _torchbind_ok(t):
            return f"it uses the TorchBind class {t}, which is not an inference class"
    for arg in schema.arguments:
        if str(arg.type) in _STR_TYPES and arg.name not in SAFE_STR_ARGS:
            return (f"its string argument {arg.name!r} is not one of the mode selectors an inference operator takes "
                    "(file/storage/process access is never allowed)")
    return None


def _torchbind_ok(type_text: str) -> bool:
    import re

    return all(cls.startswith(TORCHBIND_OK) for cls in re.findall(r"__torch__\.torch\.classes\.[\w.]+", type_text))


def op_problem(op: str, fmt: str) -> str | None:
    """Why ``op`` may not run in a ``fmt`` (``"ptl"`` / ``"pte"``) program, or None when it may."""
    ns, base, overload = _split(op)
    if base in NEVER:
        return "which is not an inference operator (file/storage/process access is never allowed)"
    namespaces = PTL_NAMESPACES if fmt == "ptl" else PTE_NAMESPACES
    if ns not in namespaces:
        return (f"which is not on the inference-operator allowlist (namespace {ns!r}; allowed: "
                f"{', '.join(sorted(namespaces))})")
    if fmt == "pte" and ns != "aten":
        return None  # ExecuTorch's own compute kernels (views, symbolic ints, dim order, int8 (de)quantize)
    problem = _schema_problem(base, overload)
    if problem == "unknown":
        if fmt == "pte":  # an edge kernel torch has no schema for: the runtime's kernel registry decides
            return None
        return "which this torch build does not know (not an operator the lite interpreter can run)"
    return None if problem is None else f"which is not an inference operator: {problem}"


def check_ops(name: str, ops, fmt: str) -> list[str]:
    """Sorted ``ops`` when every one passes :func:`op_problem`; else :class:`ArtifactError` naming the first
    refused operator (in sorted order, so the message is stable)."""
    listed = sorted({str(op) for op in ops})
    for op in listed:
        problem = op_problem(op, fmt)
        if problem:
            raise ArtifactError(f"{name}: uses operator {_printable(op)}, {problem}; refused")
    return listed


def check_types(name: str, types) -> None:
    """Refuse a ``.ptl`` that contains a TorchBind class outside :data:`TORCHBIND_OK`."""
    for t in sorted({str(t) for t in types}):
        if "__torch__.torch.classes." in t and not _torchbind_ok(t):
            raise ArtifactError(f"{name}: contains an object of the TorchBind class {_printable(t)}, which is not an "
                                "inference class; refused")


def check_delegates(name: str, backends) -> list[str]:
    listed = sorted({str(b) for b in backends})
    for backend in listed:
        if backend not in PTE_BACKENDS:
            raise ArtifactError(f"{name}: delegates to the backend {_printable(backend)}, which is not on the "
                                f"allowlist ({', '.join(sorted(PTE_BACKENDS))}); refused")
    return listed


def _printable(text: str, limit: int = 120) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:limit]


# ---------------------------------------------------------------------------------------------- .ptl
def ptl_ops_before_load(content: bytes) -> tuple[list[str], list[str]]:
    """(operators, contained types) of a lite-interpreter archive, read from its bytecode without loading it."""
    import torch

    ops = torch._C._get_model_ops_and_info_from_buffer(content)
    types = torch._C._get_mobile_model_contained_types_from_buffer(content)
    return sorted(ops), sorted({*types, *pickled_classes(content)})


class _Placeholder:
    """Stands for every class a bytecode pickle names (``torch.device``...): built from its arguments, never
    the real thing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def ptl_forward_arguments(content: bytes) -> list[tuple[str, str]] | None:
    """``[(name, type), ...]`` of the root module's ``forward`` (``self`` excluded), read from the archive's
    ``bytecode.pkl`` (an unpickler whose every class is :class:`_Placeholder`: nothing of the archive's is
    built), or None when the archive does not say (older bytecode, no schema)."""
    import io
    import pickle
    import zipfile

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            return _Placeholder

        def persistent_load(self, pid):  # tensor constants: not needed for the schema
            return _Placeholder()

    zf = zipfile.ZipFile(io.BytesIO(content))
    names = zf.namelist()
    bytecode = next((n for n in names if n.endswith("/bytecode.pkl") or n == "bytecode.pkl"), None)
    data = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
    if bytecode is None or data is None or zf.getinfo(bytecode).file_size > MAX_PICKLE_BYTES:
        return None
    root = next(iter(_globals(zf.read(data))), None)  # the root module's class is the first one pickled
    if root is None:
        return None
    functions = _Unpickler(io.BytesIO(zf.read(bytecode))).load()
    for entry in functions[1:] if isinstance(functions, tuple) else ():
        if isinstance(entry, tuple) and len(entry) >= 3 and entry[0] == f"{root}.forward":
            schema = dict(item for item in entry[2] if isinstance(item, tuple) and len(item) == 2)
            args = [dict(a) for a in schema.get("arguments", ())]
            return [(str(a.get("name")), str(a.get("type"))) for a in args[1:]]
    return None


def _globals(pickle_bytes: bytes) -> list[str]:
    import pickletools

    found: list[str] = []
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(pickle_bytes):
        if op.name == "GLOBAL":
            found.append(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def check_forward(name: str, arguments: list[tuple[str, str]] | None) -> None:
    """Refuse a ``.ptl`` whose ``forward`` does not take one tensor (then only optional arguments): the lite
    interpreter crashes when handed a tensor for an ``int``."""
    if arguments is None:
        return
    if not arguments or arguments[0][1] != "Tensor" or any(not t.startswith("Optional[") for _, t in arguments[1:]):
        shown = ", ".join(f"{_printable(n, 40)}: {_printable(t, 60)}" for n, t in arguments[:8])
        raise ArtifactError(f"{name}: its forward takes ({shown}), not one tensor; only models queried with one "
                            "input tensor are supported; refused")


#: Largest pickle member of a ``.ptl`` whose opcodes are scanned (ours are a few KB; weights live elsewhere).
MAX_PICKLE_BYTES = 64 * 1024**2


def pickled_classes(content: bytes) -> set[str]:
    """Qualified names of the classes the pickles of a ``.ptl`` archive refer to (``GLOBAL`` / ``STACK_GLOBAL``
    opcodes), read with :func:`pickletools.genops` - no object is built."""
    import io
    import zipfile

    found: set[str] = set()
    zf = zipfile.ZipFile(io.BytesIO(content))
    for info in zf.infolist():
        if not info.filename.endswith((".pkl",)) or info.filename.endswith("bytecode.pkl"):
            continue
        if info.file_size > MAX_PICKLE_BYTES:
            raise ValueError(f"{info.filename} declares {info.file_size} bytes")
        found.update(_globals(zf.read(info)))
    return found


# ---------------------------------------------------------------------------------------------- .pte
class _FlatBuffer:
    """Just enough of the flatbuffers wire format to read tables, vectors of tables and strings, with every
    offset checked against the buffer (a hostile file gets a ValueError, never an out-of-range read)."""

    def __init__(self, buf: bytes):
        self.b = memoryview(buf)
        self.n = len(buf)

    def _get(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            raise ValueError(f"offset {pos} is outside the {self.n}-byte program")
        return struct.unpack_from(fmt, self.b, pos)[0]

    def root(self) -> int:
        return self._get("<I", 0)

    def _field(self, table: int, index: int) -> int | None:
        vtable = table - self._get("<i", table)
        if 4 + 2 * index >= self._get("<H", vtable):
            return None
        off = self._get("<H", vtable + 4 + 2 * index)
        return table + off if off else None

    def _deref(self, pos: int) -> int:
        return pos + self._get("<I", pos)

    def tables(self, table: int, index: int, limit: int = 1 << 16) -> list[int]:
        field = self._field(table, index)
        if field is None:
            return []
        vec = self._deref(field)
        count = self._get("<I", vec)
        if count > limit or vec + 4 + 4 * count > self.n:
            raise ValueError(f"a vector of {count} entries does not fit the program")
        return [self._deref(vec + 4 + 4 * k) for k in range(count)]

    def string(self, table: int, index: int) -> str:
        field = self._field(table, index)
        if field is None:
            return ""
        pos = self._deref(field)
        size = self._get("<I", pos)
        if size > 4096 or pos + 4 + size > self.n:
            raise ValueError("a string does not fit the program")
        return bytes(self.b[pos + 4:pos + 4 + size]).decode("utf-8", "replace")


# program.fbs field indices (executorch 1.x): Program.execution_plan = 1; ExecutionPlan.name = 0,
# .operators = 6, .delegates = 7; Operator.name = 0, .overload = 1; BackendDelegate.id = 0.
_PROGRAM_PLANS, _PLAN_NAME, _PLAN_OPS, _PLAN_DELEGATES = 1, 0, 6, 7


def pte_program_ops(content: bytes) -> dict[str, dict[str, list[str]]]:
    """``{method: {"operators": ["ns::name.overload", ...], "delegates": [backend id, ...]}}`` of a ``.pte``."""
    fb = _FlatBuffer(content)
    out: dict[str, dict[str, list[str]]] = {}
    for plan in fb.tables(fb.root(), _PROGRAM_PLANS, limit=1024):
        ops = []
        for op in fb.tables(plan, _PLAN_OPS):
            name, overload = fb.string(op, 0), fb.string(op, 1)
            ops.append(f"{name}.{overload}" if overload else name)
        delegates = [fb.string(d, 0) for d in fb.tables(plan, _PLAN_DELEGATES)]
        out[fb.string(plan, _PLAN_NAME)] = {"operators": ops, "delegates": delegates}
    return out
