"""Procedural tasks with exact programmatic verifiers, generated deterministically.

A task is named ``KIND:DIGITS`` (``addition:3``, ``multiplication:2``). Each problem has two
formats: ``direct`` (prompt ``"123+045="``, answer right away) and ``scratchpad`` (prompt
``"123+045:"``, digit-by-digit work, then ``"=0168"``), so chain of thought shows up as more
generated tokens -- more inference compute -- per answer. Operands are zero-padded so every prompt of
a task has the same length. About 10% of problems (by a hash of the operands) are held out of the
training corpus and form the evaluation set.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

KINDS = ("addition", "multiplication", "reverse")
FORMATS = ("direct", "scratchpad")


@dataclasses.dataclass(frozen=True)
class Task:
    kind: str
    digits: int

    @classmethod
    def parse(cls, spec: str) -> "Task":
        try:
            kind, digits = spec.split(":")
            task = cls(kind, int(digits))
        except ValueError:
            raise ValueError(f"task {spec!r} must look like KIND:DIGITS, e.g. addition:3 (kinds: {', '.join(KINDS)})") from None
        if task.kind not in KINDS:
            raise ValueError(f"unknown task kind {task.kind!r}; known: {', '.join(KINDS)}")
        if not 1 <= task.digits <= 6:
            raise ValueError("digits must be between 1 and 6")
        return task

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.digits}"

    @property
    def answer_width(self) -> int:
        return self.digits + 1 if self.kind == "addition" else 2 * self.digits

    def answer(self, a: int, b: int) -> int:
        if self.kind == "reverse":
            return int(f"{a:0{self.digits}d}{b:0{self.digits}d}"[::-1])
        return a + b if self.kind == "addition" else a * b

    def prompt(self, a: int, b: int, fmt: str = "direct") -> str:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        op = {"addition": "+", "multiplication": "*", "reverse": "|"}[self.kind]
        return f"{a:0{self.digits}d}{op}{b:0{self.digits}d}" + ("=" if fmt == "direct" else ":")

    def completion(self, a: int, b: int, fmt: str = "direct") -> str:
        final = f"{self.answer(a, b):0{self.answer_width}d}"
        if fmt == "direct" or self.kind == "reverse":   # reversal has no intermediate work to show
            return final + "\n"
        steps = []
        if self.kind == "addition":
            carry = 0
            da, db = f"{a:0{self.digits}d}"[::-1], f"{b:0{self.digits}d}"[::-1]
            for x, y in zip(da, db):
                s = int(x) + int(y) + carry
                steps.append(f"{x}+{y}+{carry}={s:02d}")
                carry = s // 10
        else:
            for i, d in enumerate(f"{b:0{self.digits}d}"[::-1]):
                steps.append(f"{a:0{self.digits}d}*{d}{'0' * i}={a * int(d) * 10 ** i:0{self.answer_width}d}")
        return " ".join(steps) + f" ={final}\n"

    def is_test(self, a: int, b: int) -> bool:
        return int(hashlib.sha256(f"{self.name}|{a}|{b}".encode()).hexdigest()[:8], 16) % 10 == 0

    def verify(self, a: int, b: int, generated: str) -> tuple[bool, str | None]:
        """Exact check of a generated completion: (correct, the final answer parsed or None)."""
        line = generated.split("\n", 1)[0]
        final = line.rsplit("=", 1)[-1].strip()
        if not final.isdigit():
            return False, None
        return int(final) == self.answer(a, b), final

    def problems(self, n: int, *, split: str = "test", seed: int = 0) -> list[tuple[int, int]]:
        """``n`` distinct operand pairs from the held-out (``test``) or training split, deterministic."""
        rng = np.random.default_rng([seed, self.digits, KINDS.index(self.kind)])
        hi = 10 ** self.digits
        out, seen = [], set()
        for _ in range(200 * n + 1000):
            a, b = (int(v) for v in rng.integers(0, hi, 2))
            if (a, b) in seen or self.is_test(a, b) != (split == "test"):
                continue
            seen.add((a, b))
            out.append((a, b))
            if len(out) == n:
                return out
        raise ValueError(f"{self.name} has fewer than {n} {split} problems")


def task_corpus_documents(spec: str, n_bytes: int = 2_000_000, seed: int = 0) -> list[tuple[str, bytes]]:
    """Training text for ``task:KIND:DIGITS[:FORMAT]`` (FORMAT direct, scratchpad or mixed; KIND
    ``mix`` interleaves every kind), held-out problems excluded, split into documents of ~1,000
    lines so the validation split works."""
    parts = spec.split(":")
    if len(parts) not in (3, 4) or parts[0] != "task":
        raise ValueError(f"task corpus {spec!r} must look like task:KIND:DIGITS[:direct|scratchpad|mixed]")
    kinds = KINDS if parts[1] == "mix" else (parts[1],)
    tasks = [Task.parse(f"{k}:{parts[2]}") for k in kinds]
    fmt = parts[3] if len(parts) == 4 else "mixed"
    if fmt not in FORMATS + ("mixed",):
        raise ValueError(f"format must be direct, scratchpad or mixed, not {fmt!r}")
    rng = np.random.default_rng([seed, 7])
    hi = 10 ** tasks[0].digits
    docs, lines, size = [], [], 0
    while size < n_bytes:
        task = tasks[int(rng.integers(0, len(tasks)))]
        a, b = (int(v) for v in rng.integers(0, hi, 2))
        if task.is_test(a, b):
            continue
        f = fmt if fmt != "mixed" else FORMATS[int(rng.integers(0, 2))]
        line = task.prompt(a, b, f) + task.completion(a, b, f)
        lines.append(line)
        size += len(line)
        if len(lines) == 1000:
            docs.append((f"{spec}#{len(docs)}", "".join(lines).encode()))
            lines = []
    if lines:
        docs.append((f"{spec}#{len(docs)}", "".join(lines).encode()))
    return docs
