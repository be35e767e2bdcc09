"""Artifact format detection from the file's *content* (never from its extension).

Rules, in order (``content`` is the whole file):

1. ``TFL3`` at offset 4 (the FlatBuffers file identifier) -> ``tflite``.
2. ``ET`` + two digits at offset 4 (ExecuTorch's flatbuffer identifier, ``ET12`` for executorch 1.x) -> ``pte``.
3. A zip archive (``PK\\x03\\x04``): a TorchScript *mobile* archive holds ``<root>/bytecode.pkl`` -> ``ptl``.
   A zip with ``data.pkl`` but no bytecode (``torch.save`` checkpoints, full TorchScript ``torch.jit.save``
   archives) is refused: loading it means unpickling. Any other zip is refused as unknown.
4. A raw pickle (first byte ``0x80``, the PROTO opcode) is refused.
5. Otherwise the bytes must parse as an ONNX ``ModelProto`` with a graph that has nodes -> ``onnx``.

Nothing is executed or unpickled here; the zip's member *names* are read, not its members.
"""

from __future__ import annotations

import io
import re
import zipfile

from toolkit.errors import ArtifactError

SAFE_FORMATS = ".tflite, .onnx, .ptl, .pte"
PICKLE_REFUSED = f"pickle files are refused; safe formats: {SAFE_FORMATS}"
_PTE_ID = re.compile(rb"ET\d\d")


def _zip_format(content: bytes, name: str) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    except Exception as exc:  # BadZipFile, OSError, EOFError, NotImplementedError ("zip file version 14.6")...
        raise ArtifactError(f"{name}: a corrupt zip archive ({' '.join(str(exc).split())[:200]}); "
                            f"safe formats: {SAFE_FORMATS}") from None
    base = {n.split("/", 1)[-1] for n in names}
    if "bytecode.pkl" in base:
        return "ptl"
    if "data.pkl" in base:
        what = "a full TorchScript archive (torch.jit.save)" if "constants.pkl" in base else "a torch.save checkpoint"
        raise ArtifactError(f"{name}: is {what} that can only be loaded by unpickling: {PICKLE_REFUSED} "
                            "(save TorchScript with _save_for_lite_interpreter for .ptl)")
    raise ArtifactError(f"{name}: a zip archive that is not a PyTorch lite-interpreter model (no bytecode.pkl); "
                        f"safe formats: {SAFE_FORMATS}")


def _is_onnx(content: bytes) -> bool:
    import onnx

    try:
        model = onnx.load_from_string(content)
    except Exception:  # protobuf's DecodeError and friends
        return False
    return model.HasField("graph") and len(model.graph.node) > 0


def detect_format(content: bytes, name: str = "artifact") -> str:
    """The format name (a :data:`device_tests.runtimes.RUNTIMES` key) of ``content``; ``name`` is for errors."""
    if len(content) < 8:
        raise ArtifactError(f"{name}: only {len(content)} bytes, too short to be a model artifact")
    if content[4:8] == b"TFL3":
        return "tflite"
    if _PTE_ID.fullmatch(content[4:8]):
        return "pte"
    if content[:4] == b"PK\x03\x04":
        return _zip_format(content, name)
    if content[0] == 0x80:
        raise ArtifactError(f"{name}: {PICKLE_REFUSED}")
    if _is_onnx(content):
        return "onnx"
    raise ArtifactError(f"{name}: unrecognized or corrupt artifact (not a TFLite flatbuffer, ExecuTorch program, "
                        f"lite-interpreter archive or ONNX model); safe formats: {SAFE_FORMATS}")
