"""The table of realistic renames in docs/alias-heuristics.md, checked row by row.

The rows live here. Each row is run through :func:`ckptmap.alias.plan_aliases`
and must give exactly the map it states, and the doc's table must be exactly the
rendering of these rows. After changing a row, regenerate the table with::

    .venv/bin/python tests/test_alias_table.py > /tmp/table.md

and paste it between the ``alias-table`` markers of the doc.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ckptmap.alias import AliasPlan, plan_aliases
from ckptmap.dtypes import dtype_from_name
from ckptmap.spec import GraphVariable, ModelSpec, TensorSpec
from ckptmap.split import even_partition

DOC = Path(__file__).resolve().parent.parent / "docs" / "alias-heuristics.md"
START = "<!-- alias-table:start (generated from tests/test_alias_table.py) -->"
END = "<!-- alias-table:end -->"


@dataclass(frozen=True)
class T:
    """One tensor of a row: key, shape, dtype, and the number of parts (0: not partitioned)."""

    key: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    parts: int = 0

    def spec(self) -> TensorSpec:
        slices = tuple(even_partition(self.shape, 0, self.parts)) if self.parts else ()
        return TensorSpec(self.key, dtype_from_name(self.dtype), self.shape, slices)

    def variables(self) -> list[GraphVariable]:
        spec = self.spec()
        return [
            GraphVariable(f"{self.key}/part_{i}", self.key, spec.dtype, s.shape, s)
            for i, s in enumerate(spec.slices)
        ]

    def render(self) -> str:
        text = f"`{self.key}` {list(self.shape)}"
        if self.dtype != "float32":
            text += f" {self.dtype}"
        if self.parts:
            text += f" in {self.parts} parts"
        return text


@dataclass(frozen=True)
class Row:
    case: str
    old: tuple[T, ...]
    new: tuple[T, ...]
    expect: tuple[str, ...]
    rules: tuple[str, ...] = ()

    def plan(self) -> AliasPlan:
        old = {t.key: t.spec() for t in self.old}
        variables = [v for t in self.new for v in t.variables()]
        new = ModelSpec.from_parts([t.spec() for t in self.new], variables)
        return plan_aliases(old, new, rules=self.rules)


def K(layer: str, fan_in: int, fan_out: int, prefix: str = "t") -> T:  # noqa: N802
    return T(f"{prefix}/{layer}/kernel", (fan_in, fan_out))


ROWS: tuple[Row, ...] = (
    Row(
        "Nothing renamed",
        (T("global_step", (), "int64"), T("dense/kernel", (8, 4))),
        (T("global_step", (), "int64"), T("dense/kernel", (8, 4))),
        ("`dense/kernel` ← `dense/kernel` (exact)", "`global_step` ← `global_step` (exact)"),
    ),
    Row(
        "Monolith-style towers with repeated scopes",
        (
            T("user_tower/user_tower/dense/kernel", (16, 8)),
            T("item_tower/item_tower/dense/kernel", (16, 8)),
        ),
        (T("user_tower/dense/kernel", (16, 8)), T("item_tower/dense/kernel", (16, 8))),
        (
            "`item_tower/dense/kernel` ← `item_tower/item_tower/dense/kernel` (deduplicated-scope)",
            "`user_tower/dense/kernel` ← `user_tower/user_tower/dense/kernel` (deduplicated-scope)",
        ),
    ),
    Row(
        "Repeated scope and a dropped first layer (the FFM fixture)",
        (
            K("dense", 64, 5, "f/tower/tower"),
            K("dense_1", 64, 32, "f/tower/tower"),
            K("dense_2", 32, 1, "f/tower/tower"),
        ),
        (K("dense", 64, 32, "f/tower"), K("dense_1", 32, 1, "f/tower")),
        (
            "`f/tower/dense/kernel` ← `f/tower/tower/dense_1/kernel` (dense-renumbered)",
            "`f/tower/dense_1/kernel` ← `f/tower/tower/dense_2/kernel` (dense-renumbered)",
        ),
    ),
    Row(
        "New layers numbered dense_8..dense_10",
        (K("dense", 8, 4), K("dense_1", 4, 2), K("dense_2", 2, 1)),
        (K("dense_8", 8, 4), K("dense_9", 4, 2), K("dense_10", 2, 1)),
        (
            "`t/dense_10/kernel` ← `t/dense_2/kernel` (missing-dense-offset)",
            "`t/dense_8/kernel` ← `t/dense/kernel` (missing-dense-offset)",
            "`t/dense_9/kernel` ← `t/dense_1/kernel` (missing-dense-offset)",
        ),
    ),
    Row(
        "Old layers dense_8..dense_10 renumbered from 0",
        (K("dense_8", 8, 4), K("dense_9", 4, 2), K("dense_10", 2, 1)),
        (K("dense", 8, 4), K("dense_1", 4, 2), K("dense_2", 2, 1)),
        (
            "`t/dense/kernel` ← `t/dense_8/kernel` (dense-renumbered)",
            "`t/dense_1/kernel` ← `t/dense_9/kernel` (dense-renumbered)",
            "`t/dense_2/kernel` ← `t/dense_10/kernel` (dense-renumbered)",
        ),
    ),
    Row(
        "Whole layer sequence shifted by one, names overlapping",
        (K("dense", 8, 4), K("dense_1", 4, 2), K("dense_2", 2, 1)),
        (K("dense_1", 8, 4), K("dense_2", 4, 2), K("dense_3", 2, 1)),
        (
            "`t/dense_1/kernel` ← `t/dense/kernel` (missing-dense-offset)",
            "`t/dense_2/kernel` ← `t/dense_1/kernel` (missing-dense-offset)",
            "`t/dense_3/kernel` ← `t/dense_2/kernel` (missing-dense-offset)",
        ),
    ),
    Row(
        "Global layer numbering (Keras) starting at dense_3",
        (K("dense", 8, 4), K("dense_1", 4, 1)),
        (K("dense_3", 8, 4), K("dense_4", 4, 1)),
        (
            "`t/dense_3/kernel` ← `t/dense/kernel` (missing-dense-offset)",
            "`t/dense_4/kernel` ← `t/dense_1/kernel` (missing-dense-offset)",
        ),
    ),
    Row(
        "`out_proj` renumbered",
        (T("blk/out_proj_1/kernel", (8, 8)), T("blk/out_proj_1/bias", (8,))),
        (T("blk/out_proj/kernel", (8, 8)), T("blk/out_proj/bias", (8,))),
        (
            "`blk/out_proj/bias` ← `blk/out_proj_1/bias` (dense-renumbered)",
            "`blk/out_proj/kernel` ← `blk/out_proj_1/kernel` (dense-renumbered)",
        ),
    ),
    Row(
        "Kernel outside its layer's scope, anchored by the bias",
        (T("dense_1/kernel", (8, 4)), T("tower/dense_1/bias", (4,))),
        (T("tower/dense/kernel", (8, 4)), T("tower/dense/bias", (4,))),
        (
            "`tower/dense/bias` ← `tower/dense_1/bias` (dense-renumbered)",
            "`tower/dense/kernel` ← `dense_1/kernel` (dense-renumbered)",
        ),
    ),
    Row(
        "Kernel and bias renumbered together",
        (
            K("dense_1", 8, 4),
            T("t/dense_1/bias", (4,)),
            K("dense_2", 4, 2),
            T("t/dense_2/bias", (2,)),
        ),
        (
            K("dense_0", 8, 4),
            T("t/dense_0/bias", (4,)),
            K("dense_1", 4, 2),
            T("t/dense_1/bias", (2,)),
        ),
        (
            "`t/dense_0/bias` ← `t/dense_1/bias` (dense-renumbered)",
            "`t/dense_0/kernel` ← `t/dense_1/kernel` (dense-renumbered)",
            "`t/dense_1/bias` ← `t/dense_2/bias` (dense-renumbered)",
            "`t/dense_1/kernel` ← `t/dense_2/kernel` (dense-renumbered)",
        ),
    ),
    Row(
        "Embeddings re-partitioned from 4 to 3 parts",
        (T("ffm/embeddings", (200, 16), parts=4),),
        (T("ffm/embeddings", (200, 16), parts=3),),
        ("`ffm/embeddings` ← `ffm/embeddings` (exact; 3 parts)",),
    ),
    Row(
        "Old checkpoint kept a part name",
        (T("emb/part_0", (100, 8)),),
        (T("emb", (100, 8)),),
        ("`emb` ← `emb/part_0` (partition-merged)",),
    ),
    Row(
        "Top scope renamed, fixed by a rule",
        (T("model/w", (4,)), T("model/w/Adam", (4,))),
        (T("model_v2/w", (4,)), T("model_v2/w/Adam", (4,))),
        (
            "`model_v2/w` ← `model/w` (rule `^model_v2/(.*)$`)",
            "`model_v2/w/Adam` ← `model/w/Adam` (rule `^model_v2/(.*)$`)",
        ),
        rules=("^model_v2/(.*)$=model/{}",),
    ),
    Row(
        "Top scope renamed, no rule given",
        (T("ffm/bias_net/w", (200, 1)),),
        (T("ffm/global_bias/w", (200, 1)),),
        (
            "`ffm/global_bias/w`: unresolved; candidates `ffm/bias_net/w`;"
            " suggests `^ffm/global_bias/(.*)$=ffm/bias_net/{}`",
        ),
    ),
    Row(
        "DCN cross layer (built-in rule)",
        (T("kernel_0", (16, 16)), T("bias_0_trainable_norm", (16,))),
        (T("dcn/kernel_0", (16, 16)), T("dcn/bias_0/trainable_norm", (16,))),
        (
            "`dcn/bias_0/trainable_norm` ← `bias_0_trainable_norm` (builtin-rule"
            " `^dcn/bias_(\\d+)/trainable_norm(.*)?$`)",
            "`dcn/kernel_0` ← `kernel_0` (builtin-rule `^dcn/kernel_(\\d+)(.*)?$`)",
        ),
    ),
    Row(
        "Two old keys collapse to one name (ambiguous)",
        (T("a/x/a/w", (3,)), T("a/a/x/w", (3,))),
        (T("a/x/w", (3,)),),
        ("`a/x/w`: unresolved; plausible sources `a/a/x/w`, `a/x/a/w`",),
    ),
    Row(
        "Layers that align two ways (ambiguous)",
        (K("dense", 4, 4), K("dense_1", 4, 4), K("dense_2", 4, 4)),
        (K("dense_5", 4, 4), K("dense_6", 4, 4)),
        (
            "`t/dense_5/kernel`: unresolved;"
            " plausible sources `t/dense/kernel`, `t/dense_1/kernel`",
            "`t/dense_6/kernel`: unresolved;"
            " plausible sources `t/dense_1/kernel`, `t/dense_2/kernel`",
        ),
    ),
    Row(
        "Same name, other dtype",
        (T("w", (4,), "float32"),),
        (T("w", (4,), "float64"),),
        ("`w`: mismatched with `w` (dtype float32 in the checkpoint, float64 in the model)",),
    ),
)


def outcome(row: Row, plan: AliasPlan) -> tuple[str, ...]:
    """One line per new key, in key order, in the doc's words."""
    parts = {t.key: t.parts for t in row.new}
    unresolved = {u.new_key: u for u in plan.unresolved}
    mismatched = {m.new_key: m for m in plan.mismatched}
    lines = []
    for key in sorted(parts):
        if key in plan.matches:
            m = plan.matches[key]
            reason = m.reason
            if reason.startswith(("rule ", "builtin-rule ")):
                word, _, pattern = reason.partition(" ")
                reason = f"{word} `{pattern}`"
            if parts[key]:
                reason += f"; {parts[key]} parts"
            lines.append(f"`{key}` ← `{m.old_key}` ({reason})")
        elif key in unresolved:
            u = unresolved[key]
            plausible = [c for c in u.candidates if c.why.startswith("plausible")]
            word = "plausible sources" if plausible else "candidates"
            text = f"`{key}`: unresolved; {word} " + ", ".join(
                f"`{c.old_key}`" for c in plausible or u.candidates
            )
            if u.suggested_rule:
                text += f"; suggests `{u.suggested_rule}`"
            lines.append(text)
        else:
            mm = mismatched[key]
            lines.append(f"`{key}`: mismatched with `{mm.old_key}` ({mm.what})")
    return tuple(lines)


def render_table() -> str:
    head = [
        "| # | Case | Old checkpoint | New model | Rules | ckptmap's map |",
        "|---|---|---|---|---|---|",
    ]
    body = [
        "| {} | {} | {} | {} | {} | {} |".format(
            i,
            row.case,
            "<br>".join(t.render() for t in row.old),
            "<br>".join(t.render() for t in row.new),
            "<br>".join(f"`{r}`" for r in row.rules) or "—",
            "<br>".join(row.expect),
        )
        for i, row in enumerate(ROWS, 1)
    ]
    return "\n".join(head + body)


def test_at_least_ten_rows() -> None:
    assert len(ROWS) >= 10


@pytest.mark.parametrize("row", ROWS, ids=[r.case for r in ROWS])
def test_row_gives_the_stated_map(row: Row) -> None:
    assert outcome(row, row.plan()) == row.expect


def test_the_doc_table_is_these_rows() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert START in text
    assert END in text
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == render_table()


if __name__ == "__main__":
    sys.stdout.write(render_table() + "\n")
