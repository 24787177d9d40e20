"""Corpora, tokenization and batches.

* The embedded default corpus is the running Python's standard-library source (~30 MB of real code,
  always present): files in sorted order, a fixed validation split by path hash (~2% of files),
  and a content hash recorded with every run.
* Byte-level tokens by default (vocab 256); a BPE tokenizer trained on the training split with the
  ``tokenizers`` package as an option.
* Tokens are cached as memory-mapped arrays keyed by the corpus content, so a second run starts at once.
* The batch of step ``s`` is a pure function of ``(seed, s)``: identical for every model in a ladder,
  and exact to resume.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import socket
import sysconfig
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

VAL_PERCENT = 2
TEXT_SUFFIXES = {".py", ".txt", ".md", ".rst", ".json", ".c", ".h", ".js", ".ts", ".html", ".css", ".toml", ".yaml",
                 ".yml", ".cfg", ".ini", ".sh", ".tex", ".csv", ""}


def cache_dir() -> Path:
    root = os.environ.get("SCALINGLAB_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
                                                              "scalinglab")
    return Path(root)


def stdlib_files() -> tuple[Path, list[Path]]:
    """The standard library's ``.py`` files (site-packages excluded), in sorted order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts
                   and p.is_file())
    return root, files


def _user_documents(spec: str) -> tuple[Path, list[tuple[str, bytes]]]:
    if spec.startswith("task:"):
        from ..testtime.tasks import task_corpus_documents
        return Path(spec), task_corpus_documents(spec)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"corpus {spec!r}: no such file or folder (use 'stdlib' for the embedded corpus)")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        docs = [(str(p.relative_to(path)), p.read_bytes()) for p in files]
    elif path.suffix.lower() in {".jsonl", ".ndjson"}:
        docs = []
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                docs.append((f"{path.name}:{i}", obj["text"].encode()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{path}, line {i}: expected a JSON object with a string field 'text'") from None
    else:
        docs = [(path.name, path.read_bytes())]
    if not docs:
        raise ValueError(f"corpus {spec!r}: no text files found (suffixes read: {', '.join(sorted(s for s in TEXT_SUFFIXES if s))})")
    return path, docs


def is_val(name: str) -> bool:
    """The fixed validation split: ~2% of documents, chosen by a hash of their path."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 100 < VAL_PERCENT


@dataclasses.dataclass
class TokenData:
    """Train and validation tokens (memory-mapped) with their provenance."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    corpus: str
    corpus_hash: str
    tokenizer: str
    n_documents: int
    curation: dict | None = None       # what curation removed from the training split (None: the raw corpus)

    def describe(self) -> dict:
        out = {"corpus": self.corpus, "corpus_hash": self.corpus_hash, "tokenizer": self.tokenizer,
               "vocab_size": self.vocab_size, "train_tokens": int(self.train.size), "val_tokens": int(self.val.size),
               "n_documents": self.n_documents}
        if self.curation:
            out["curation"] = self.curation
        return out


@functools.lru_cache(maxsize=1)
def _stdlib_fingerprint() -> str:
    """The running Python's standard library does not change under a running process: its key (a stat
    of every file, ~0.2 s) is taken once per process, not once per run a worker trains."""
    root, files = stdlib_files()
    h = hashlib.sha256(str(root).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _fingerprint(corpus: str) -> tuple[str, list[tuple[str, bytes]] | None]:
    """A cheap key (paths, sizes, mtimes) for the cache; documents are read only when needed."""
    if corpus == "stdlib":
        return _stdlib_fingerprint(), None
    root, docs = _user_documents(corpus)
    h = hashlib.sha256()
    for name, data in docs:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:16], docs


def _documents(corpus: str) -> list[tuple[str, bytes]]:
    if corpus == "stdlib":
        root, files = stdlib_files()
        return [(str(p.relative_to(root)), p.read_bytes()) for p in files]
    return _user_documents(corpus)[1]


def _tmp_suffix() -> str:
    """A temporary name no other writer uses: ``.tmp-<host>-<pid>-<random>`` (the token cache and the
    checkpoints both write through it; :func:`.checkpoint.remove_stale_temps` reads it back)."""
    return f".tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _replace_with(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary file of this writer's own (``write(tmp)``) and an atomic rename.
    Drivers sharing a cache may tokenize the same corpus at once: each writes the same bytes under its
    own name, and the renames leave one whole file (a shared temporary name let one writer rename the
    file away from under the other)."""
    tmp = path.with_name(path.name + _tmp_suffix())
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_tokens(corpus: str = "stdlib", tokenizer: str = "byte", *, bpe_vocab: int = 1024) -> TokenData:
    """Tokenize ``corpus`` (``"stdlib"``, a folder, a text file, a JSONL file with ``text``, or a
    procedural task corpus ``task:KIND:DIGITS[:FORMAT]``, optionally with a curation suffix ``+dedup``,
    ``+filtered`` or ``+curated`` for the training split, :mod:`.curation`) once and cache it; later calls
    memory-map the cache."""
    from .curation import split_corpus_filter
    if tokenizer not in ("byte", "bpe"):
        raise ValueError(f"tokenizer must be 'byte' or 'bpe', not {tokenizer!r}")
    base, how = split_corpus_filter(corpus)
    fp, docs = _fingerprint(base)
    tag = "byte" if tokenizer == "byte" else f"bpe{bpe_vocab}"
    folder = cache_dir() / "tokens" / (f"{fp}-{tag}" + (f"-{how}" if how else ""))
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        docs = docs if docs is not None else _documents(base)
        folder.mkdir(parents=True, exist_ok=True)
        train_named = [(name, data) for name, data in docs if not is_val(name)]
        val_docs = [data for name, data in docs if is_val(name)]
        if not val_docs:  # tiny corpora: keep at least one document for validation
            val_docs.append(train_named.pop()[1])
        curation = None
        if how:
            from .curation import curate
            train_named, curation = curate(train_named, how)
            if not train_named:
                raise ValueError(f"corpus {corpus!r}: curation ({how}) removed every training document")
        content = hashlib.sha256()
        for name, data in docs if not how else train_named:
            content.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        train_docs = [data for _, data in train_named]
        sep = b"\n\n"
        if tokenizer == "byte":
            arrays = {"train": np.frombuffer(sep.join(train_docs), dtype=np.uint8),
                      "val": np.frombuffer(sep.join(val_docs), dtype=np.uint8)}
            vocab = 256
        else:
            arrays, vocab = _bpe_encode(train_docs, val_docs, bpe_vocab, folder)
        for split, arr in arrays.items():
            _replace_with(folder / f"{split}.bin", arr.tofile)
        meta = {"corpus": corpus, "corpus_hash": content.hexdigest()[:16], "tokenizer": tag, "vocab_size": vocab,
                "dtype": str(arrays["train"].dtype), "n_documents": len(train_docs) + len(val_docs),
                "curation": curation}
        _replace_with(meta_path, lambda tmp: tmp.write_text(json.dumps(meta)))   # last: the cache is complete
    meta = json.loads(meta_path.read_text())
    mm = {s: np.memmap(folder / f"{s}.bin", dtype=meta["dtype"], mode="r") for s in ("train", "val")}
    return TokenData(train=mm["train"], val=mm["val"], vocab_size=meta["vocab_size"], corpus=corpus,
                     corpus_hash=meta["corpus_hash"], tokenizer=meta["tokenizer"],
                     n_documents=meta["n_documents"], curation=meta.get("curation"))


def _bpe_encode(train_docs, val_docs, vocab_size, folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    texts = [d.decode("utf-8", errors="replace") for d in train_docs]
    tok.train_from_iterator(texts, trainer=trainer)
    _replace_with(folder / "tokenizer.json", lambda tmp: tok.save(str(tmp)))
    out = {}
    for split, docs in (("train", texts), ("val", [d.decode("utf-8", errors="replace") for d in val_docs])):
        ids = [np.asarray(e.ids, dtype=np.uint16) for e in tok.encode_batch(docs)]
        out[split] = np.concatenate(ids) if ids else np.zeros(0, np.uint16)
    return out, tok.get_vocab_size()


def batch_offsets(n_tokens: int, seq_len: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Start offsets of the windows of step ``step``: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - seq_len - 1, size=batch_size)


def get_batch(tokens: np.ndarray, seq_len: int, batch_size: int, seed: int, step: int):
    """Inputs and next-token targets (int64 arrays of shape (batch, seq_len)) for ``step``."""
    off = batch_offsets(tokens.size, seq_len, batch_size, seed, step)
    idx = off[:, None] + np.arange(seq_len + 1)[None, :]
    w = np.asarray(tokens[idx], dtype=np.int64)
    return w[:, :-1], w[:, 1:]


def eval_windows(tokens: np.ndarray, seq_len: int, n_tokens: int) -> np.ndarray:
    """Fixed held-out windows (evenly spaced over the validation split), the same for every run."""
    n = max(1, n_tokens // seq_len)
    if tokens.size < seq_len + 2:
        raise ValueError(f"validation split has {tokens.size} tokens, fewer than seq_len + 2 = {seq_len + 2}")
    starts = np.linspace(0, tokens.size - seq_len - 1, n).astype(np.int64)
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    return np.asarray(tokens[idx], dtype=np.int64)
