"""Text data: Debian's ``fortunes`` as a topic-classification data set, and texts stored as byte codes.

**Storage.** A :class:`~toolkit.data.dataset.Dataset` holds numeric arrays, and the membership protocol
(:func:`~toolkit.data.make_split`, content hashes, manifests) works on them. A text data set therefore stores
each text losslessly as its UTF-8 bytes, one row per text, zero-padded to the longest text:
``x`` is ``(n, max_bytes)`` int64 with values 0..255. :func:`texts` decodes the rows back. The split is made on
these rows, *before* any tokenizer exists: the tokenizer is then trained on a split part only (members by
default, see :mod:`toolkit.text.tokenizer`), and token ids are derived per part. Hashing the bytes means two
samples are the same sample exactly when their normalized texts are equal.

**fortunes.** ``/usr/share/games/fortunes/`` (package ``fortunes``) holds one plain-text file per topic;
quotes are separated by lines holding only ``%``. The loader

1. reads the chosen topic files (UTF-8; the ``.dat`` indexes and ``.u8`` links are ignored),
2. splits them into quotes, normalizes each (Unicode NFC, every whitespace run -> one space, NUL removed,
   cut to ``max_chars`` characters),
3. de-duplicates: the key is the case-folded text with punctuation runs collapsed, so ``"Foo, bar!"`` and
   ``"foo bar"`` are one quote. Repeats within a topic keep the first; a quote found under two topics is
   dropped from both (its label would be ambiguous and it would sit on both sides of the classes),
4. caps every class at ``max_per_class`` quotes (a seeded sample, file order kept) and refuses topics with
   fewer than ``min_per_class``,
5. labels each quote with the index of its topic in ``topics``.

Default topics (:data:`DEFAULT_TOPICS`): ``computers``, ``men-women``, ``politics``, ``science``,
``songs-poems``, ``zippy``: the six topic files with more than 500 quotes whose subjects differ most (a
TF-IDF + logistic-regression probe separates them at about 65% accuracy against 62% for the set with
``definitions`` and 56% for eight topics; the grab-bag files ``people``, ``cookie``, ``miscellaneous``,
``platitudes`` were left out for having no topic). ``source["topics"]`` records the label -> topic mapping.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import numpy as np

from toolkit.data.dataset import Dataset
from toolkit.errors import DataError, MissingDependencyError

FORTUNES_DIR = Path(os.environ.get("SAFECOMPRESS_FORTUNES_DIR", "/usr/share/games/fortunes"))
DEFAULT_TOPICS = ("computers", "men-women", "politics", "science", "songs-poems", "zippy")
_SEPARATOR = re.compile(r"^%[ \t]*$", re.MULTILINE)
_NON_WORD = re.compile(r"[\W_]+")


# --------------------------------------------------------------------------- texts <-> byte rows
def normalize_text(text: str, max_chars: int | None = None) -> str:
    """NFC, whitespace runs collapsed to one space, NUL removed, stripped, cut to ``max_chars`` characters."""
    text = " ".join(unicodedata.normalize("NFC", text).replace("\x00", " ").split())
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rstrip()
    return text


def dedup_key(text: str) -> str:
    """The identity of a quote for de-duplication: case-folded, punctuation runs collapsed."""
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def encode_texts(texts: list[str]) -> np.ndarray:
    """Texts -> ``(n, max_bytes)`` int64 UTF-8 byte codes, zero-padded (texts must not contain NUL)."""
    raw = [t.encode("utf-8") for t in texts]
    if any(b"\x00" in r for r in raw):
        raise DataError("texts must not contain NUL characters (NUL pads the byte rows)")
    width = max((len(r) for r in raw), default=0)
    if width == 0:
        raise DataError("no non-empty text to encode")
    out = np.zeros((len(raw), width), dtype=np.uint8)
    for i, r in enumerate(raw):
        out[i, :len(r)] = np.frombuffer(r, dtype=np.uint8)
    return out.astype(np.int64)


def texts(x: np.ndarray | Dataset) -> list[str]:
    """Decode byte-code rows (from :func:`encode_texts` or a text :class:`Dataset`) back to strings."""
    arr = np.asarray(x.x if isinstance(x, Dataset) else x)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"text rows must be a 2-D integer array of UTF-8 byte codes, got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise DataError("text rows must hold byte codes 0..255 (are these token ids rather than texts?)")
    out = []
    for i, row in enumerate(arr.astype(np.uint8)):
        try:
            out.append(row.tobytes().rstrip(b"\x00").decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"text row {i} is not valid UTF-8") from None
    return out


# --------------------------------------------------------------------------- fortunes
def parse_fortunes(content: str, max_chars: int | None = None) -> list[str]:
    """Quotes of one fortune file (``%`` separator lines), normalized, empty ones dropped, order kept."""
    quotes = (normalize_text(q, max_chars) for q in _SEPARATOR.split(content))
    return [q for q in quotes if q]


def available_topics(directory: Path | None = None) -> list[str]:
    """Topic files in the fortunes directory (plain files without a suffix)."""
    d = Path(directory or FORTUNES_DIR)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_file() and not p.is_symlink() and "." not in p.name)


def _read_topic(directory: Path, topic: str, max_chars: int) -> list[str]:
    path = directory / topic
    if "/" in topic or topic.startswith(".") or not path.is_file() or path.is_symlink():
        known = ", ".join(available_topics(directory)) or "none"
        raise DataError(f"fortunes has no topic {topic!r} in {directory}; topics: {known}")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc}") from None
    return parse_fortunes(content, max_chars)


def load_fortunes(topics: list[str] | tuple[str, ...] | None = None, max_per_class: int | None = 550,
                  min_per_class: int = 50, max_chars: int = 600, seed: int = 0,
                  directory: str | os.PathLike | None = None) -> Dataset:
    """Fortune quotes labelled by topic (see the module docstring); ``x`` holds UTF-8 byte codes."""
    d = Path(directory) if directory is not None else FORTUNES_DIR
    if not d.is_dir() or not available_topics(d):
        raise MissingDependencyError(f"fortunes not found in {d}: install the Debian package 'fortunes' "
                                     "(apt-get install -y fortunes)")
    topics = list(DEFAULT_TOPICS if topics is None else topics)
    if len(topics) < 2 or len(set(topics)) != len(topics):
        raise DataError(f"fortunes needs at least two distinct topics, got {topics}")
    if max_chars < 1 or min_per_class < 1 or (max_per_class is not None and max_per_class < min_per_class):
        raise DataError(f"need max_chars >= 1 and 1 <= min_per_class <= max_per_class, got max_chars={max_chars}, "
                        f"min_per_class={min_per_class}, max_per_class={max_per_class}")

    per_topic: list[dict[str, str]] = []  # dedup key -> first text, in file order
    counts = {"parsed": {}, "repeats_within_topic": {}}
    for topic in topics:
        quotes = _read_topic(d, topic, max_chars)
        first: dict[str, str] = {}
        for q in quotes:
            first.setdefault(dedup_key(q), q)
        counts["parsed"][topic] = len(quotes)
        counts["repeats_within_topic"][topic] = len(quotes) - len(first)
        per_topic.append(first)
    seen: dict[str, int] = {}
    for first in per_topic:
        for key in first:
            seen[key] = seen.get(key, 0) + 1
    ambiguous = {k for k, c in seen.items() if c > 1 or not k}

    rng = np.random.default_rng(seed)
    all_texts: list[str] = []
    labels: list[int] = []
    kept = {}
    for label, (topic, first) in enumerate(zip(topics, per_topic)):
        quotes = [q for k, q in first.items() if k not in ambiguous]
        if len(quotes) < min_per_class:
            raise DataError(f"fortunes topic {topic!r} has {len(quotes)} distinct quotes, fewer than "
                            f"min_per_class={min_per_class}")
        if max_per_class is not None and len(quotes) > max_per_class:
            pick = np.sort(rng.choice(len(quotes), size=max_per_class, replace=False))
            quotes = [quotes[i] for i in pick]
        kept[topic] = len(quotes)
        all_texts += quotes
        labels += [label] * len(quotes)
    source = {"loader": "fortunes", "dir": str(d), "topics": topics, "max_per_class": max_per_class,
              "min_per_class": min_per_class, "max_chars": max_chars, "seed": seed, "kept": kept,
              "dropped_cross_topic": len([k for k in ambiguous if k]), **counts}
    return Dataset("fortunes", encode_texts(all_texts), np.asarray(labels, dtype=np.int64), len(topics),
                   source).deduplicated()
