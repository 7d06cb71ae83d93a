"""Every regular expression in geoaudit runs in time linear in its input (issue 11, item 6).

Page text, bench files and model output are untrusted, and Python's ``re`` is a backtracking
engine: ``guards._SAYS_RE`` once took 19 s on a 20,000-character capitalised token and minutes on
200,000. Timing a pattern in a test would flake on a loaded machine, so this test checks the
*structure* of each pattern instead, with rules that are each enough for linear time
(``benches/perf/bench_regex.py`` prints the measured n -> 8n scaling for the risky inputs):

1. **Bounded repeats are fine** (``{0,40}``, ``?``): an attempt scans a bounded number of
   characters; finite bounds must stay <= :data:`MAX_BOUND`.
2. **An unbounded repeat** (``*``, ``+``, ``{n,}``) has a body of bounded width, and either
   a. nothing after it (to the end of the pattern) can fail: the attempt then succeeds and consumes
      what the repeat scanned (``https?://\\S+``); or
   b. it is possessive (``*+``, ``++``) or atomic, so it is never re-scanned by backtracking, and
      the attempt's start is guarded so no later attempt starts inside the text it scanned:
      the pattern is anchored (``\\A``, ``^`` without MULTILINE), or it begins with a one-character
      entry (a character, a lookbehind ``(?<=[.!?])``, or MULTILINE ``^``) that nothing up to the
      repeat can consume, or with a negative lookbehind ``(?<![\\w-])`` (or ``\\b`` before a word
      character) that covers everything up to the repeat.
3. Lookarounds hold only bounded repeats; back-references are not used.

Patterns are collected from every module: module-level compiled patterns, and literal patterns
passed to ``re.*`` functions (an inline f-string pattern cannot be checked and fails the test).
Patterns the *user* supplies (``crawl --include``) are theirs and are not checked.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]
from typing import Any

import pytest

import geoaudit

MAX_BOUND = 1000
INF = C.MAXREPEAT
PKG = Path(geoaudit.__file__).parent
REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT)
SINGLE = (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN)
# Characters on which set relations are decided: all of the first planes' start, then a few of
# every 128-character block (a set of only exotic characters would be missed; none is used).
PROBE = (
    [chr(c) for c in range(0x600)]
    + [chr(c) for c in range(0x2000, 0x2070)]
    + [chr(b + i) for b in range(0x600, 0x110000, 0x80) for i in (0, 0x41) if not 0xD800 <= b < 0xE000]
)

Item = tuple[Any, Any]
Pred = frozenset[str]  # the PROBE characters a one-character element matches


# ------------------------------------------------------------------------------------------ widths


def width(items: list[Item]) -> tuple[int, int]:
    lo = hi = 0
    for item in items:
        a, b = _item_width(item)
        lo, hi = lo + a, min(INF, hi + b)
    return lo, hi


def _item_width(item: Item) -> tuple[int, int]:
    op, av = item
    if op in SINGLE:
        return 1, 1
    if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
        return 0, 0
    if op == C.SUBPATTERN:
        return width(list(av[3]))
    if op == C.ATOMIC_GROUP:
        return width(list(av))
    if op == C.BRANCH:
        ws = [width(list(alt)) for alt in av[1]]
        return min(w[0] for w in ws), max(w[1] for w in ws)
    if op in REPEATS:
        lo, hi, body = av
        a, b = width(list(body))
        return lo * a, INF if (hi == INF and b) else min(INF, hi * b)
    return 0, INF  # GROUPREF and friends: unknown


def _has_assertion(items: list[Item]) -> bool:
    for op, av in items:
        if op in (C.AT, C.ASSERT, C.ASSERT_NOT, C.GROUPREF, C.GROUPREF_EXISTS):
            return True
        if any(_has_assertion(list(sub)) for sub in _children(op, av)):
            return True
    return False


def _children(op: Any, av: Any) -> list[Any]:
    if op == C.SUBPATTERN:
        return [av[3]]
    if op == C.ATOMIC_GROUP:
        return [av]
    if op == C.BRANCH:
        return list(av[1])
    if op in REPEATS:
        return [av[2]]
    return []


def _cannot_fail(items: list[Item]) -> bool:
    return width(items)[0] == 0 and not _has_assertion(items)


# ------------------------------------------------------------------------------------------ char sets


def _pred(item: Item, flags: int) -> Pred:
    """The probe characters a one-character element matches (case folding as ``re`` does)."""
    return _charset(repr(item), item, flags)


_CHARSETS: dict[tuple[str, int], Pred] = {}


def _charset(key: str, item: Item, flags: int) -> Pred:
    if (key, flags) not in _CHARSETS:
        op, av = item
        if op == C.LITERAL:
            base: Callable[[str], bool] = lambda ch: ord(ch) == av  # noqa: E731
        elif op == C.NOT_LITERAL:
            base = lambda ch: ord(ch) != av  # noqa: E731
        elif op == C.ANY:
            base = (lambda ch: True) if flags & re.DOTALL else (lambda ch: ch != "\n")
        else:
            base = _in_pred(av)
        if flags & re.IGNORECASE:
            plain = base
            base = lambda ch: any(plain(c) for c in {ch, ch.lower(), ch.upper()} if len(c) == 1)  # noqa: E731
        _CHARSETS[key, flags] = frozenset(ch for ch in PROBE if base(ch))
    return _CHARSETS[key, flags]


_CATEGORY = {
    C.CATEGORY_DIGIT: r"\d", C.CATEGORY_NOT_DIGIT: r"\D", C.CATEGORY_SPACE: r"\s",
    C.CATEGORY_NOT_SPACE: r"\S", C.CATEGORY_WORD: r"\w", C.CATEGORY_NOT_WORD: r"\W",
}  # fmt: skip


def _in_pred(members: list[Item]) -> Callable[[str], bool]:
    negate = bool(members) and members[0][0] == C.NEGATE
    tests: list[Callable[[str], bool]] = []
    for op, av in members[1:] if negate else members:
        if op == C.LITERAL:
            tests.append(lambda ch, c=av: ord(ch) == c)
        elif op == C.RANGE:
            tests.append(lambda ch, r=av: r[0] <= ord(ch) <= r[1])
        elif op == C.CATEGORY:
            rx = re.compile(_CATEGORY[av])
            tests.append(lambda ch, rx=rx: rx.fullmatch(ch) is not None)
        else:
            raise AssertionError(f"unexpected set member {op}")
    return lambda ch: any(t(ch) for t in tests) != negate


def _single(item: Item) -> Item | None:
    """The one-character element ``item`` is (looking through a plain group), else None."""
    op, av = item
    if op in SINGLE:
        return item
    if op == C.SUBPATTERN and len(av[3]) == 1:
        return _single(av[3][0])
    return None


def _consumed(items: list[Item], flags: int) -> Iterator[Pred]:
    """Every one-character element these items can consume (lookarounds consume nothing)."""
    for op, av in items:
        if op in SINGLE:
            yield _pred((op, av), flags)
        elif op == C.SUBPATTERN:
            yield from _consumed(list(av[3]), (flags | av[1]) & ~av[2])
        elif op not in (C.ASSERT, C.ASSERT_NOT):
            for sub in _children(op, av):
                yield from _consumed(list(sub), flags)


def _disjoint(preds: list[Pred], other: Pred) -> bool:
    return not any(p & other for p in preds)


def _subset(preds: list[Pred], other: Pred) -> bool:
    return all(p <= other for p in preds)


# ------------------------------------------------------------------------------------------ the check


def _flatten(items: list[Item]) -> list[Item]:
    """Plain groups at the top level are transparent for the start guard."""
    out: list[Item] = []
    for op, av in items:
        if op == C.SUBPATTERN and not av[1] and not av[2]:
            out.extend(_flatten(list(av[3])))
        else:
            out.append((op, av))
    return out


def _guard(items: list[Item], flags: int) -> tuple[str, Pred, Pred] | None:
    """``(kind, G, F)`` when the alternative starts with an entry guard.

    ``F`` is the set a match can start with; kind ``"at"`` (a consuming character of ``G``, so
    ``F = G``), ``"after"`` (a lookbehind: the previous character is in ``G``) or ``"not-after"``
    (a negative lookbehind, or ``\\b`` before a word character: the previous one is not in ``G``).
    """
    if not items:
        return None
    op, av = items[0]
    first, _ = _first(items[1:], flags)
    starts = frozenset().union(*first)
    if op in SINGLE:
        own = _pred(items[0], flags)
        return "at", own, own
    if op in (C.ASSERT, C.ASSERT_NOT) and av[0] == -1 and len(av[1]) == 1 and _single(av[1][0]):
        pred = _pred(_single(av[1][0]), flags)  # type: ignore[arg-type]
        return ("after" if op == C.ASSERT else "not-after"), pred, starts
    word = _pred((C.IN, [(C.CATEGORY, C.CATEGORY_WORD)]), 0)
    if op == C.AT and av == C.AT_BEGINNING and flags & re.MULTILINE:
        return "after", frozenset("\n"), starts
    if op == C.AT and av == C.AT_BOUNDARY and starts and starts <= word:
        return "not-after", word, starts
    return None


def problems(pattern: str, flags: int = 0, *, anchored: bool = False) -> list[str]:
    """Why ``pattern`` might not run in linear time (empty when every rule holds)."""
    parsed = P.parse(pattern, flags)
    flags = parsed.state.flags
    found: list[str] = []
    top = list(parsed)
    alternatives = [list(a) for a in top[0][1][1]] if len(top) == 1 and top[0][0] == C.BRANCH else [top]
    for alt in alternatives:
        alt = _flatten(alt)
        is_anchored = anchored or (
            bool(alt)
            and alt[0][0] == C.AT
            and (alt[0][1] == C.AT_BEGINNING_STRING or (alt[0][1] == C.AT_BEGINNING and not flags & re.MULTILINE))
        )
        guard = _guard(alt, flags)
        for k, item in enumerate(alt):
            _walk(
                item,
                alt[k + 1 :],
                [],
                flags,
                found,
                start_ok=lambda k=k, alt=alt, guard=guard: _start_ok(alt, k, guard, flags),
                anchored=is_anchored,
                in_look=False,
                atomic=False,
            )
    return found


def _start_ok(alt: list[Item], k: int, guard: tuple[str, Pred, Pred] | None, flags: int) -> bool:
    """No later attempt can start inside the text ``alt[1..k]`` scanned (so none rescans it).

    A position inside that text is a start only if its character can begin a match (``F``) and
    the guard holds there. Elements that cannot hold an ``F`` character are safe; the others must
    sit where the guard fails: after a run of ``G`` characters (``not-after``), or after no ``G``
    character at all (``after``, ``at``).
    """
    if guard is None or k == 0:
        return False
    kind, guard_set, starts = guard
    run_ok = True  # every element so far keeps the guard failing for the next position
    for item in alt[1 : k + 1]:
        chars = frozenset().union(*_consumed([item], flags))
        if kind == "not-after":
            run_ok = run_ok and chars <= guard_set
        else:
            run_ok = run_ok and not chars & guard_set
        if chars & (guard_set if kind == "at" else starts) and not run_ok:
            return False
    return True


def _walk(
    item: Item,
    rest: list[Item],
    outer_rest: list[list[Item]],
    flags: int,
    found: list[str],
    *,
    start_ok: Callable[[], bool],
    anchored: bool,
    in_look: bool,
    atomic: bool,
) -> None:
    op, av = item
    if op in (C.GROUPREF, C.GROUPREF_EXISTS):
        found.append("back-reference")
        return
    if op in REPEATS:
        lo, hi, body = av
        body = list(body)
        if hi != INF and hi > MAX_BOUND:
            found.append(f"repeat bound {hi} above {MAX_BOUND}")
        if hi == INF:
            tail = rest + [x for r in outer_rest for x in r]
            text = f"unbounded repeat {_show(item)}"
            if in_look:
                found.append(f"{text} inside a lookaround")
            elif _cannot_fail(tail) and (width(body)[1] < INF or _fails_early(body)):
                pass  # rule 2a: the attempt succeeds and consumes what the repeat scanned
            elif not (op == C.POSSESSIVE_REPEAT or atomic or _gives_back_cheaply(op, body, tail, flags)):
                found.append(f"{text} can backtrack: make it possessive (*+, ++) or bound it")
            elif not (anchored or start_ok()):
                found.append(f"{text} has no start guard: every start position may rescan it")
        # Inside a repeat, what follows the body includes the iterations still to come.
        again: list[Item] = [] if hi <= 1 else [(C.MAX_REPEAT, (max(lo - 1, 0), hi if hi == INF else hi - 1, body))]
        for i, sub in enumerate(body):
            _walk(
                sub,
                body[i + 1 :],
                [again, rest, *outer_rest],
                flags,
                found,
                start_ok=start_ok,
                anchored=anchored,
                in_look=in_look,
                atomic=atomic or op == C.POSSESSIVE_REPEAT,
            )
        return
    if op in (C.ASSERT, C.ASSERT_NOT):
        sub_items = list(av[1])
        for i, sub in enumerate(sub_items):
            _walk(
                sub,
                sub_items[i + 1 :],
                [],
                flags,
                found,
                start_ok=start_ok,
                anchored=anchored,
                in_look=True,
                atomic=atomic,
            )
        return
    if op == C.SUBPATTERN:
        sub_flags = (flags | av[1]) & ~av[2]
        seqs = [list(av[3])]
    elif op == C.ATOMIC_GROUP:
        sub_flags, seqs, atomic = flags, [list(av)], True
    elif op == C.BRANCH:
        sub_flags, seqs = flags, [list(a) for a in av[1]]
    else:
        return
    for seq in seqs:
        for i, sub in enumerate(seq):
            _walk(
                sub,
                seq[i + 1 :],
                [rest, *outer_rest],
                sub_flags,
                found,
                start_ok=start_ok,
                anchored=anchored,
                in_look=in_look,
                atomic=atomic,
            )


def _fails_early(body: list[Item]) -> bool:
    """Every unbounded repeat inside ``body`` has only cannot-fail items after it in the body.

    Then an iteration that fails does so before any unbounded scan, and an unbounded body is
    as safe as a bounded one (``[^\\W_]+(?:'[^\\W_]+)*``).
    """
    for i, (op, av) in enumerate(body):
        if op in REPEATS and av[1] == INF and not _cannot_fail(body[i + 1 :]):
            return False
        for sub in _children(op, av):
            if width(list(sub))[1] == INF and not (_fails_early(list(sub)) and _cannot_fail(body[i + 1 :])):
                return False
    return True


def _first(items: list[Item], flags: int) -> tuple[list[Pred], bool]:
    """Characters a match of ``items`` can start with, and whether it can be empty."""
    preds: list[Pred] = []
    for op, av in items:
        if op in SINGLE:
            return preds + [_pred((op, av), flags)], False
        if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            continue  # zero-width: costs a bounded check, consumes nothing
        if op in (C.SUBPATTERN, C.ATOMIC_GROUP):
            sub, sub_flags = (list(av[3]), (flags | av[1]) & ~av[2]) if op == C.SUBPATTERN else (list(av), flags)
            p, nullable = _first(sub, sub_flags)
        elif op == C.BRANCH:
            results = [_first(list(alt), flags) for alt in av[1]]
            p, nullable = [x for r in results for x in r[0]], any(r[1] for r in results)
        elif op in REPEATS:
            p, nullable = _first(list(av[2]), flags)
            nullable = nullable or av[0] == 0
        else:
            return preds, True
        preds += p
        if not nullable:
            return preds, False
    return preds, True


def _gives_back_cheaply(op: Any, body: list[Item], tail: list[Item], flags: int) -> bool:
    """A non-possessive repeat of one character set whose every give-back fails at once.

    Greedy: what follows cannot start with a character of the repeated set (``[a-z]*://``), so
    backtracking tries each given-back character once and the repeat behaves as if possessive.
    Lazy: the same, or what follows has bounded width (each extension costs a bounded check).
    """
    if len(body) != 1 or _single(body[0]) is None:
        return False
    repeated = _pred(_single(body[0]), flags)  # type: ignore[arg-type]
    starts, _ = _first(tail, flags)
    if _disjoint(starts, repeated):
        return True
    return op == C.MIN_REPEAT and width(tail)[1] < INF


def _show(item: Item) -> str:
    lo, _hi, _ = item[1]
    kind = {C.MAX_REPEAT: "", C.MIN_REPEAT: "?", C.POSSESSIVE_REPEAT: "+"}[item[0]]
    return f"{{{lo},}}{kind}"


# ------------------------------------------------------------------------------------------ collection

_RE_FUNCS = {"compile", "search", "match", "fullmatch", "sub", "subn", "split", "findall", "finditer"}


def _module_names() -> list[str]:
    names = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        names.append(".".join(rel.parts).removesuffix(".__init__"))
    return names


def collect() -> list[tuple[str, str, int, bool]]:
    """``(where, pattern, flags, anchored_by_call)`` for every regex geoaudit's own code holds."""
    out: list[tuple[str, str, int, bool]] = []
    for name in _module_names():
        if name == "geoaudit.__main__":
            continue
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if isinstance(value, re.Pattern):
                text = value.pattern if isinstance(value.pattern, str) else value.pattern.decode("latin-1")
                flags = value.flags & ~re.UNICODE if isinstance(value.pattern, bytes) else value.flags
                out.append((f"{name}.{attr}", text, flags, False))
        tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
        # Module-level `X = re.compile(...)` is collected above as the compiled object.
        constants = {id(stmt.value) for stmt in tree.body if isinstance(stmt, (ast.Assign, ast.AnnAssign))}
        for node in ast.walk(tree):
            if id(node) in constants:
                continue
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id in ("re", "_re") and node.func.attr in _RE_FUNCS):
                continue
            arg = node.args[0]
            where = f"{name}:{node.lineno}"
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                pattern = arg.value
            elif isinstance(arg, ast.Name) and isinstance(getattr(module, arg.id, None), (str, re.Pattern)):
                value = getattr(module, arg.id)
                pattern = value if isinstance(value, str) else value.pattern
            elif isinstance(arg, ast.JoinedStr):
                out.append((where, "<f-string: lift it to a module-level compiled pattern>", -1, False))
                continue
            else:
                continue  # a pattern the user supplied (crawl --include), or a compiled module constant
            flags = _literal_flags(node)
            out.append((where, pattern, flags, node.func.attr in ("match", "fullmatch")))
    return out


def _literal_flags(node: ast.Call) -> int:
    flags = 0
    candidates = [kw.value for kw in node.keywords if kw.arg == "flags"] + node.args[2:]
    for expr in candidates:
        for sub in ast.walk(expr):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in ("re", "_re"):
                flags |= getattr(re, sub.attr, 0)
    return flags


PATTERNS = collect()


#: Patterns linear for a reason the rules above cannot see, each with its proof. Keep this short.
PROVEN_LINEAR: dict[str, str] = {
    r"\n[ \t]*\n(?:[ \t]*\n)*": (
        "starts only at a newline; a failed attempt or iteration scans only spaces and tabs after "
        "one, so no other attempt starts in the text it scanned"
    ),
    r"\n\s*\n": (
        "starts only at a newline; the whitespace run is given back at most to its last newline, and "
        "what lies after that newline (spaces) holds no other start"
    ),
    r"```[^\n`]*\n(.*?)```": (
        "starts only at ```; the info string holds no backtick; the lazy body stops at the first "
        "``` after it, which is the next start anyway, and when there is none no start is left"
    ),
    r"\n```\s*$": (
        "starts only at a newline before ```; the whitespace it scans holds at most the newline of "
        "the next start, so each run is scanned at most twice"
    ),
}


@pytest.mark.parametrize(("where", "pattern", "flags", "anchored"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_pattern_is_linear(where: str, pattern: str, flags: int, anchored: bool) -> None:
    assert flags != -1, f"{where}: {pattern}"
    if pattern in PROVEN_LINEAR:
        return
    assert problems(pattern, flags, anchored=anchored) == [], f"{where}: {pattern!r}"


# ------------------------------------------------------------------------------------------ the checker itself


@pytest.mark.parametrize(
    "pattern",
    [
        r"([A-Z]\w*(?:\s+[A-Z]\w*)*)\s+says",  # the old _SAYS_RE shape: quadratic
        r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.com\b",  # labels rescanned from every start
        r"(a+)+b",  # nested unbounded: exponential
        r"\s*\s*x",  # two greedy repeats over the same characters
        r"[A-Z]\w*+\s",  # possessive but unguarded: every start inside a token rescans it
        r"(?<![a-z])[A-Z]\w*+\s",  # guard too narrow: starts after a digit inside the token
        r"(?=\w+x)",  # unbounded lookahead
        r"(a)\1",  # back-reference
        r"x{0,5000}",  # bound too large
    ],
)
def test_checker_rejects_superlinear_shapes(pattern: str) -> None:
    assert problems(pattern), pattern


@pytest.mark.parametrize(
    "pattern",
    [
        r"https?://\S+",  # nothing after the repeat can fail
        r"[A-Za-z0-9]+(?:'[A-Za-z]+)?",
        r"(?<![\w&-])[A-Z][\w&-]*+\s{1,8}says",
        r"\A\s*+(?:#|-)\s++\S",
        r"\[\s*+\d{1,6}(?:\s*+,\s*+\d{1,6})*+\s*+\]",  # entry '[' never scanned again
        r"(?<=[.!?])[\"')]*+\s++(?=[A-Z])|\n+",
        r"[A-Z][a-z]{0,40}(?:\s{1,8}[A-Z][a-z]{0,40}){0,8}",
    ],
)
def test_checker_accepts_linear_shapes(pattern: str) -> None:
    assert problems(pattern) == [], pattern


if __name__ == "__main__":  # pragma: no cover - a quick listing while editing patterns
    for where, pattern, flags, anchored in PATTERNS:
        issues = (
            ["f-string"]
            if flags == -1
            else []
            if pattern in PROVEN_LINEAR
            else problems(pattern, flags, anchored=anchored)
        )
        if issues:
            print(where, repr(pattern), issues, file=sys.stderr)
