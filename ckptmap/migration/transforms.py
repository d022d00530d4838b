"""Value transforms in alias maps: a key fed by an old key whose axes are in another order.

Frameworks disagree on layouts: a PyTorch ``Linear.weight`` is ``[out, in]``,
a TensorFlow dense ``kernel`` is ``[in, out]``. An alias-map entry may carry
a permutation of the old key's axes::

    {"dense/kernel": {"from": "fc.weight", "transpose": [1, 0]},
     "dense/bias": "fc.bias"}

The new value is ``old.transpose(perm)`` (numpy's meaning: new axis ``i`` is
old axis ``perm[i]``), so the old shape permuted must be the new shape and the
dtypes must agree; anything else stays a mismatch, as does a shape mismatch
without a transform. A transposed key is always assembled (read as arrays,
never byte-copied) and is reported with the action ``transpose``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ckptmap.errors import AliasError
from ckptmap.migration.pieces import Method, PiecePlan, TensorPlan
from ckptmap.naming import node_name
from ckptmap.split import box_of

if TYPE_CHECKING:
    from ckptmap.alias import AliasPlan
    from ckptmap.dtypes import DType
    from ckptmap.spec import ModelSpec, TensorSpec
    from ckptmap.split import SliceSpec

__all__ = [
    "Transpose",
    "apply_transposes",
    "old_box",
    "parse_entry",
    "plan_transposed",
    "transposes_of",
]

Transpose = tuple[int, ...]

_SOURCE_FIELDS = ("from", "source")  # "source": the entries of `ckptmap alias` output


def parse_entry(where: str, name: str, value: object) -> tuple[str, Transpose | None]:
    """The old key and the transpose (``None``: none) of one alias-map entry.

    An entry is ``"old key"`` or ``{"from": "old key", "transpose": [1, 0]}``
    (``"source"`` is accepted for ``"from"``; other members are ignored).

    Raises:
        AliasError: if the entry names no old key or its transpose is not a
            permutation of ``0..n-1``; the message names ``where`` and the entry.
    """
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        old = next((value[f] for f in _SOURCE_FIELDS if f in value), None)
        if isinstance(old, str):
            return old, _permutation(where, name, value.get("transpose"))
    raise AliasError(
        f"{where}: entry {name!r} must map to an old key (a string, or "
        f'{{"from": "old key", "transpose": [1, 0]}}), not {value!r}'
    )


def _permutation(where: str, name: str, raw: object) -> Transpose | None:
    if raw is None:
        return None
    axes = [i for i in raw if type(i) is int] if isinstance(raw, list) else []
    if not isinstance(raw, list) or len(axes) != len(raw) or sorted(axes) != list(range(len(axes))):
        raise AliasError(
            f"{where}: entry {name!r}: transpose {raw!r} is not a permutation of the "
            "old key's axes (e.g. [1, 0] swaps the two axes of a matrix)"
        )
    return tuple(axes)


def transposes_of(alias_map: Mapping[str, object], where: str) -> dict[str, Transpose]:
    """The transpose of every alias-map entry that has one, by entry name.

    Raises:
        AliasError: as :func:`parse_entry`.
    """
    out: dict[str, Transpose] = {}
    for name, value in alias_map.items():
        perm = parse_entry(where, str(name), value)[1]
        if perm is not None:
            out[str(name)] = perm
    return out


def apply_transposes(
    alias: AliasPlan,
    transposes: Mapping[str, Transpose],
    old: Mapping[str, TensorSpec],
    new: ModelSpec,
) -> tuple[AliasPlan, dict[str, Transpose]]:
    """The alias plan with transposed entries matched, and the transpose of each new key.

    An entry whose old key, permuted, has the new key's shape and dtype is a
    match (even if the shapes agreed without it: a square matrix is still
    transposed); one that does not fit is a mismatch saying why.
    """
    if not transposes:
        return alias, {}
    from ckptmap.alias import EXPLICIT, Match, Mismatch

    matches = dict(alias.matches)
    mismatched = {m.new_key: m for m in alias.mismatched}
    done: dict[str, Transpose] = {}
    for name, perm in transposes.items():
        key = _new_key(name, new)
        found = None if key is None else matches.get(key) or mismatched.get(key)
        if key is None or found is None:
            continue  # an entry alias.py refused, or one it left unresolved
        old_key = found.old_key
        what = _disagreement(perm, old[old_key], new.keys[key])
        if what is None:
            detail = f"alias map entry {name!r}, transposed {list(perm)}"
            matches[key] = Match(key, old_key, EXPLICIT, detail)
            mismatched.pop(key, None)
            done[key] = perm
        else:
            matches.pop(key, None)
            mismatched[key] = Mismatch(key, old_key, f"{what} (alias map entry {name!r})")
    used = {m.old_key for m in matches.values()}
    sources = dict(alias.variable_sources)
    for var in new.variables.values():
        if var.key in matches:
            sources[var.name] = matches[var.key].old_key
        elif var.key in mismatched:
            sources.pop(var.name, None)
    plan = dataclasses.replace(
        alias,
        matches={k: matches[k] for k in sorted(matches)},
        variable_sources=dict(sorted(sources.items())),
        mismatched=[mismatched[k] for k in sorted(mismatched)],
        unused_old=[k for k in old if k not in used],
    )
    return plan, done


def _new_key(name: str, new: ModelSpec) -> str | None:
    wanted = node_name(name)
    var = new.variables.get(wanted)
    if var is not None and var.key in new.keys:
        return var.key
    return wanted if wanted in new.keys else None


def _disagreement(perm: Transpose, old: TensorSpec, new: TensorSpec) -> str | None:
    if len(perm) != len(old.shape):
        return f"transpose {list(perm)} does not fit the old key's {len(old.shape)} axes"
    turned = [old.shape[i] for i in perm]
    if tuple(turned) != tuple(new.shape):
        return (
            f"transpose {list(perm)} of the old shape {list(old.shape)} is {turned}, "
            f"but the new model restores {list(new.shape)}"
        )
    if old.dtype.enum != new.dtype.enum:
        return f"dtype {old.dtype.name} but the new model restores {new.dtype.name}"
    return None


def plan_transposed(
    key: str,
    source: str,
    reason: str,
    dtype: DType,
    shape: tuple[int, ...],
    targets: tuple[SliceSpec, ...],
    perm: Transpose,
) -> TensorPlan:
    """The plan of a transposed key: every piece assembled from the old key's box."""
    pieces = tuple(
        PiecePlan(
            slice=t,
            shape=tuple(b - a for a, b in box_of(t, shape)),
            method=Method.ASSEMBLE,
            nbytes=_nbytes(dtype, box_of(t, shape)),
        )
        for t in (targets or (None,))
    )
    return TensorPlan(
        key=key,
        dtype=dtype,
        shape=shape,
        source=source,
        reason=reason,
        sliced=bool(targets),
        pieces=pieces,
        transpose=perm,
    )


def old_box(box: tuple[tuple[int, int], ...], perm: Transpose) -> tuple[tuple[int, int], ...]:
    """The box of the old key that, transposed by ``perm``, is ``box`` of the new key.

    Example:
        >>> old_box(((0, 2), (5, 8)), (1, 0))
        ((5, 8), (0, 2))
    """
    inverse = sorted(range(len(perm)), key=lambda i: perm[i])
    return tuple(box[inverse[axis]] for axis in range(len(perm)))


def _nbytes(dtype: DType, box: tuple[tuple[int, int], ...]) -> int:
    count = 1
    for a, b in box:
        count *= b - a
    return count * dtype.itemsize
