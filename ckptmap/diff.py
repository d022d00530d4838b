"""``ckptmap diff``: what differs between two checkpoints, of any formats ckptmap reads.

The story: open both sources (:func:`~ckptmap.readers.source.open_source`: TF
bundles, zarr3 stores, safetensors, npz), pair their keys (the alias map
first, then the rules, then same names), and for each pair compare dtypes and
shapes, then the values: the merged, C-order, little-endian bytes of both
streamed side by side in chunks of ``chunk_bytes``
(:class:`~ckptmap.writers._tensor_bytes.TensorBytes`), so memory does not grow
with tensor size. With ``values`` the numeric drift of each pair is measured
on the way (max ``|a - b|``, relative L2 ``||a - b|| / ||a||`` over the
elements finite in both, NaN and Inf counts on each side). Unpaired keys of
the same dtype and shape whose bytes are identical (CRC32C and size first,
then the bytes) are reported as renamed. With an alias map or rules (``b``
migrated from ``a``), keys of ``a`` that nothing maps to were dropped by the
migration: they are listed, but are no difference.

A partition layout change alone (``emb`` in 4 slices here, 3 there) is not a
difference: the merged values are compared, and the pair is marked
``repartitioned``. A pair whose alias-map entry has a ``transpose``
(:mod:`ckptmap.migration.transforms`) compares ``a.transpose(perm)`` with
``b``: ``a``'s tensor is read whole (once) and its transposed view compared
block by block with ``b``'s stream; string tensors are read whole on both
sides.

Example:
    >>> report = diff_checkpoints("fixtures/ffm_v1", "/tmp/ffm_v1.safetensors")  # doctest: +SKIP
    >>> report.identical
    True
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap.errors import AliasError
from ckptmap.formats.crc import crc32c
from ckptmap.naming import Rule, apply_rules, node_name, parse_rule, strip_partition

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.dtypes import DType
    from ckptmap.readers.source import Source
    from ckptmap.spec import TensorSpec
    from ckptmap.writers._tensor_bytes import TensorBytes

__all__ = ["DEFAULT_CHUNK_BYTES", "Changed", "Compared", "DiffReport", "Drift", "diff_checkpoints"]

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024  # compared at a time, per side (a multiple of every itemsize)


@dataclass(frozen=True, slots=True)
class Drift:
    """How far the values of ``b`` are from those of ``a``.

    Attributes:
        max_abs: the largest ``|a - b|`` over the elements finite in both
            (``None`` for strings).
        rel_l2: ``||a - b|| / ||a||`` over the same elements (``inf`` when
            ``a`` is all zeros and ``b`` is not; ``None`` for strings).
        nan_a, nan_b: NaN elements on each side.
        inf_a, inf_b: infinite elements on each side.
    """

    max_abs: float | None
    rel_l2: float | None
    nan_a: int = 0
    nan_b: int = 0
    inf_a: int = 0
    inf_b: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "max_abs": _json_number(self.max_abs),
            "rel_l2": _json_number(self.rel_l2),
            "nan_a": self.nan_a,
            "nan_b": self.nan_b,
            "inf_a": self.inf_a,
            "inf_b": self.inf_b,
        }


@dataclass(frozen=True, slots=True)
class Compared:
    """A pair of keys of the same dtype and shape whose values were compared.

    Attributes:
        a, b: the key in each checkpoint.
        dtype: their dtype.
        shape: the shape of ``b`` (of ``a`` transposed, with ``transpose``).
        equal: whether the bytes are identical.
        how: how the pair was made: ``same name``, ``alias map``, ``rule <pattern>``.
        transpose: the alias map's permutation of ``a``'s axes, if any.
        repartitioned: the two store the key in different slice layouts.
        drift: the value drift (only when values were measured).
    """

    a: str
    b: str
    dtype: str
    shape: tuple[int, ...]
    equal: bool
    how: str
    transpose: tuple[int, ...] | None = None
    repartitioned: bool = False
    drift: Drift | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "equal": self.equal,
            "how": self.how,
            "transpose": list(self.transpose) if self.transpose is not None else None,
            "repartitioned": self.repartitioned,
            "drift": self.drift.to_json() if self.drift is not None else None,
        }


@dataclass(frozen=True, slots=True)
class Changed:
    """A pair of keys whose dtype or shape differ (values not compared)."""

    a: str
    b: str
    a_dtype: str
    b_dtype: str
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    how: str

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "a_dtype": self.a_dtype,
            "b_dtype": self.b_dtype,
            "a_shape": list(self.a_shape),
            "b_shape": list(self.b_shape),
            "how": self.how,
        }


@dataclass(frozen=True, slots=True)
class Renamed:
    """An unpaired key of each side holding identical bytes (same dtype and shape)."""

    a: str
    b: str
    dtype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class DiffReport:
    """What differs between checkpoint ``a`` and checkpoint ``b``.

    Attributes:
        a, b: the two checkpoints, as the user would write them.
        a_format, b_format: their formats (``tf``, ``zarr3``, ``safetensors``, ``npz``).
        values: whether value drift was measured.
        compared: the pairs of the same dtype and shape, in ``b``'s key order.
        changed: the pairs whose dtype or shape differ.
        renamed: unpaired keys with identical bytes under different names.
        only_a, only_b: keys of one side with no counterpart.
        mapped: the keys were paired by an alias map or rules (``b`` migrated
            from ``a``): keys of ``a`` that nothing maps to were dropped by the
            migration, listed in ``only_a`` but no difference.
    """

    a: str
    b: str
    a_format: str
    b_format: str
    values: bool
    compared: tuple[Compared, ...] = ()
    changed: tuple[Changed, ...] = ()
    renamed: tuple[Renamed, ...] = ()
    only_a: tuple[str, ...] = ()
    only_b: tuple[str, ...] = ()
    mapped: bool = False

    @property
    def different(self) -> tuple[Compared, ...]:
        """The compared pairs whose values differ."""
        return tuple(c for c in self.compared if not c.equal)

    @property
    def identical(self) -> bool:
        """Every key of ``b`` (and of ``a`` unless mapped) has a counterpart with equal bytes."""
        dropped = self.only_a and not self.mapped
        return not (self.different or self.changed or self.renamed or dropped or self.only_b)

    @property
    def exit_code(self) -> int:
        """0 identical, 1 different (a CI gate)."""
        return 0 if self.identical else 1

    def counts(self) -> dict[str, int]:
        return {
            "compared": len(self.compared),
            "equal": len(self.compared) - len(self.different),
            "different": len(self.different),
            "changed": len(self.changed),
            "renamed": len(self.renamed),
            "only_a": len(self.only_a),
            "only_b": len(self.only_b),
            "repartitioned": sum(c.repartitioned for c in self.compared),
            "transposed": sum(c.transpose is not None for c in self.compared),
        }

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` report (docs/json-schema.md, "diff")."""
        return {
            "a": self.a,
            "b": self.b,
            "a_format": self.a_format,
            "b_format": self.b_format,
            "identical": self.identical,
            "values": self.values,
            "mapped": self.mapped,
            "counts": self.counts(),
            "keys": [c.to_json() for c in self.compared],
            "changed": [c.to_json() for c in self.changed],
            "renamed": [r.to_json() for r in self.renamed],
            "only_a": list(self.only_a),
            "only_b": list(self.only_b),
        }


# -- the one entry point ---------------------------------------------------------------


def diff_checkpoints(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    values: bool = False,
    alias_map: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    rules: Sequence[str | Rule] = (),
    step_a: int | None = None,
    step_b: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> DiffReport:
    """Compare checkpoint ``a`` with checkpoint ``b``.

    Args:
        a, b: any inputs :func:`~ckptmap.readers.source.open_source` takes.
        values: measure the value drift of every compared pair.
        alias_map: ``{key of b: key of a}`` (or a JSON file of one, as
            ``remap --alias-map`` takes: ``b`` is the migrated checkpoint and
            ``a`` its source); entries may carry a ``transpose``.
        rules: ``PATTERN=FORMAT`` rules from a key of ``b`` (without
            ``/part_N``) to a key of ``a``, tried after the alias map.
        step_a, step_b: with a model folder, the checkpoint of this step.
        chunk_bytes: bytes compared at a time on each side.

    Raises:
        AliasError: if the alias map or a rule is invalid, or an entry names a
            key neither checkpoint has.
        InputError: if a checkpoint is missing, unreadable or damaged (CRC32C
            mismatches of TF data files included).
    """
    from ckptmap.readers.source import open_source

    parsed = [r if isinstance(r, Rule) else parse_rule(r) for r in rules]
    with open_source(a, step=step_a) as source_a, open_source(b, step=step_b) as source_b:
        specs_a, specs_b = source_a.specs(), source_b.specs()
        pairs = _pairs(specs_a, specs_b, _entries(alias_map), parsed)
        comparer = _Comparer(source_a, source_b, values=values, chunk_bytes=chunk_bytes)
        try:
            compared, changed = comparer.compare_pairs(pairs, specs_a, specs_b)
            used = {p.a for p in pairs.values()}
            only_a = [k for k in specs_a if k not in used]
            only_b = [k for k in specs_b if k not in pairs]
            renamed = comparer.renamed(only_a, only_b, specs_a, specs_b)
        finally:
            comparer.close()
        gone_a = {r.a for r in renamed}
        gone_b = {r.b for r in renamed}
        return DiffReport(
            a=source_a.url,
            b=source_b.url,
            a_format=source_a.format,
            b_format=source_b.format,
            values=values,
            compared=tuple(compared),
            changed=tuple(changed),
            renamed=tuple(renamed),
            only_a=tuple(k for k in only_a if k not in gone_a),
            only_b=tuple(k for k in only_b if k not in gone_b),
            mapped=bool(alias_map) or bool(parsed),
        )


# -- pairing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pair:
    a: str
    how: str
    transpose: tuple[int, ...] | None = None


def _entries(
    alias_map: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    """The alias map's raw entries and where they come from (for messages)."""
    if alias_map is None:
        return "", {}
    if isinstance(alias_map, Mapping):
        return "alias map", dict(alias_map)
    from ckptmap.migration.inputs import load_alias_entries

    return str(alias_map), load_alias_entries(Path(alias_map))


def _pairs(
    specs_a: Mapping[str, TensorSpec],
    specs_b: Mapping[str, TensorSpec],
    entries: tuple[str, dict[str, Any]],
    rules: Sequence[Rule],
) -> dict[str, _Pair]:
    """The key of ``a`` each key of ``b`` is compared with, in ``b``'s key order."""
    from ckptmap.migration.transforms import parse_entry

    where, raw = entries
    explicit: dict[str, _Pair] = {}
    for name, value in raw.items():
        old, perm = parse_entry(where, str(name), value)
        key_b = _key_of(str(name), specs_b)
        key_a = _key_of(old, specs_a)
        if key_b is None or key_a is None:
            side, missing = ("b", name) if key_b is None else ("a", old)
            raise AliasError(
                f"{where}: entry {name!r} -> {old!r}: checkpoint {side} has no key {missing!r}"
            )
        explicit[key_b] = _Pair(key_a, "alias map", perm)
    pairs: dict[str, _Pair] = {}
    for key in specs_b:
        if key in explicit:
            pairs[key] = explicit[key]
            continue
        found = apply_rules(strip_partition(key), rules) if rules else None
        if found is not None and found[1] in specs_a:
            pairs[key] = _Pair(found[1], f"rule {found[0].pattern}")
        elif key in specs_a:
            pairs[key] = _Pair(key, "same name")
    return pairs


def _key_of(name: str, specs: Mapping[str, TensorSpec]) -> str | None:
    """``name`` as a key of ``specs``: itself, or without ``:0`` and ``/part_N``."""
    for candidate in (name, node_name(name), strip_partition(node_name(name))):
        if candidate in specs:
            return candidate
    return None


# -- comparing values ------------------------------------------------------------------


class _Comparer:
    def __init__(self, a: Source, b: Source, *, values: bool, chunk_bytes: int) -> None:
        from ckptmap.writers._tensor_bytes import TensorBytes

        self.a, self.b = a, b
        self.values = values
        self.chunk = max(16, chunk_bytes // 16 * 16)
        self.bytes_a: TensorBytes = TensorBytes(a, self.chunk)
        self.bytes_b: TensorBytes = TensorBytes(b, self.chunk)

    def close(self) -> None:
        self.bytes_a.close()
        self.bytes_b.close()

    def compare_pairs(
        self,
        pairs: Mapping[str, _Pair],
        specs_a: Mapping[str, TensorSpec],
        specs_b: Mapping[str, TensorSpec],
    ) -> tuple[list[Compared], list[Changed]]:
        compared: list[Compared] = []
        changed: list[Changed] = []
        for key_b, pair in pairs.items():
            sa, sb = specs_a[pair.a], specs_b[key_b]
            shape_a = sa.shape if pair.transpose is None else _turned(sa.shape, pair.transpose)
            if sa.dtype.enum != sb.dtype.enum or shape_a is None or shape_a != sb.shape:
                args = (sa.dtype.name, sb.dtype.name, sa.shape, sb.shape, pair.how)
                changed.append(Changed(pair.a, key_b, *args))
                continue
            equal, drift = self._values(pair, key_b, sb.dtype)
            compared.append(
                Compared(
                    a=pair.a,
                    b=key_b,
                    dtype=sb.dtype.name,
                    shape=sb.shape,
                    equal=equal,
                    how=pair.how,
                    transpose=pair.transpose,
                    repartitioned=set(sa.slices) != set(sb.slices),
                    drift=drift,
                )
            )
        return compared, changed

    def _values(self, pair: _Pair, key_b: str, dtype: DType) -> tuple[bool, Drift | None]:
        if dtype.is_string:
            same = self.a.read(pair.a).tolist() == self.b.read(key_b).tolist()
            return same, (Drift(None, None) if self.values else None)
        if pair.transpose is not None:
            # A is read once, whole (a box of it along another axis would be read whole
            # again for every block); its transposed view goes out block by block
            turned = self.a.read(pair.a).transpose(pair.transpose)
            chunks = zip(
                _rechunk(_row_blocks(turned, self.chunk), self.chunk),
                _rechunk(self.bytes_b.blocks(key_b), self.chunk),
                strict=True,
            )
        else:
            chunks = zip(
                _rechunk(self.bytes_a.blocks(pair.a), self.chunk),
                _rechunk(self.bytes_b.blocks(key_b), self.chunk),
                strict=True,
            )
        drift = _DriftSum(dtype) if self.values else None
        equal = True
        for ca, cb in chunks:
            if ca != cb:
                equal = False
                if drift is None:
                    break
            if drift is not None:
                drift.add(ca, cb)
        return equal, (drift.result() if drift is not None else None)

    def renamed(
        self,
        only_a: Sequence[str],
        only_b: Sequence[str],
        specs_a: Mapping[str, TensorSpec],
        specs_b: Mapping[str, TensorSpec],
    ) -> list[Renamed]:
        """Unpaired keys of the same dtype and shape with identical bytes, paired up."""
        by_sig: dict[tuple[int, tuple[int, ...]], list[str]] = defaultdict(list)
        for key in only_a:
            spec = specs_a[key]
            if not spec.dtype.is_string:
                by_sig[(spec.dtype.enum, spec.shape)].append(key)
        found: list[Renamed] = []
        prints_a: dict[str, tuple[int, int]] = {}
        taken: set[str] = set()
        for key_b in only_b:
            spec = specs_b[key_b]
            same = [k for k in by_sig.get((spec.dtype.enum, spec.shape), []) if k not in taken]
            if not same or spec.dtype.is_string:
                continue
            print_b = _fingerprint(self.bytes_b.blocks(key_b))
            for key_a in same:
                if key_a not in prints_a:
                    prints_a[key_a] = _fingerprint(self.bytes_a.blocks(key_a))
                if prints_a[key_a] == print_b and self._same_bytes(key_a, key_b):
                    found.append(Renamed(key_a, key_b, spec.dtype.name, spec.shape))
                    taken.add(key_a)
                    break
        return found

    def _same_bytes(self, key_a: str, key_b: str) -> bool:
        pairs = zip(
            _rechunk(self.bytes_a.blocks(key_a), self.chunk),
            _rechunk(self.bytes_b.blocks(key_b), self.chunk),
            strict=True,
        )
        return all(ca == cb for ca, cb in pairs)


class _DriftSum:
    """The running sums of one pair's drift, chunk by chunk."""

    def __init__(self, dtype: DType) -> None:
        import numpy as np

        self.dtype = np.dtype(dtype.numpy).newbyteorder("<") if dtype.itemsize > 1 else dtype.numpy
        self.complex = dtype.numpy.kind == "c"
        self.max_abs = 0.0
        self.sq_diff = 0.0
        self.sq_a = 0.0
        self.nan = [0, 0]
        self.inf = [0, 0]

    def add(self, ca: bytes, cb: bytes) -> None:
        import numpy as np

        wide = np.complex128 if self.complex else np.float64
        a = np.frombuffer(ca, self.dtype).astype(wide)
        b = np.frombuffer(cb, self.dtype).astype(wide)
        for side, values in enumerate((a, b)):
            self.nan[side] += int(np.isnan(values).sum())
            self.inf[side] += int(np.isinf(values).sum())
        finite = np.isfinite(a) & np.isfinite(b)
        if not finite.all():
            a, b = a[finite], b[finite]
        if a.size:
            gap = np.abs(a - b)
            self.max_abs = max(self.max_abs, float(gap.max()))
            self.sq_diff += float(np.square(gap).sum())
            self.sq_a += float(np.square(np.abs(a)).sum())

    def result(self) -> Drift:
        if self.sq_a > 0:
            rel = math.sqrt(self.sq_diff) / math.sqrt(self.sq_a)
        else:
            rel = 0.0 if self.sq_diff == 0 else math.inf
        return Drift(self.max_abs, rel, self.nan[0], self.nan[1], self.inf[0], self.inf[1])


# -- byte streams ----------------------------------------------------------------------


def _rechunk(blocks: Iterable[memoryview], size: int) -> Iterator[bytes]:
    """The bytes of ``blocks`` again, in pieces of exactly ``size`` (the last one shorter)."""
    buffer = bytearray()
    for block in blocks:
        buffer += block
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _row_blocks(values: np.ndarray, size: int) -> Iterator[memoryview]:
    """The C-order little-endian bytes of ``values``, a copy of about ``size`` bytes at a time."""
    if values.ndim == 0 or values.size == 0:
        yield memoryview(_le_bytes(values))
        return
    row = max(1, values[0].nbytes)
    step = max(1, size // row)
    for start in range(0, values.shape[0], step):
        yield memoryview(_le_bytes(values[start : start + step]))


def _le_bytes(values: np.ndarray) -> bytes:
    if values.dtype.byteorder == ">":
        values = values.byteswap().view(values.dtype.newbyteorder("<"))
    return values.tobytes()  # C order, whatever the layout of ``values``


def _fingerprint(blocks: Iterable[memoryview]) -> tuple[int, int]:
    """CRC32C and size of a stream of bytes."""
    crc, size = 0, 0
    for block in blocks:
        crc = crc32c(block, crc)
        size += len(block)
    return crc, size


def _turned(shape: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...] | None:
    """``shape`` with its axes permuted; ``None`` if ``perm`` has another rank."""
    if len(perm) != len(shape):
        return None
    return tuple(shape[i] for i in perm)


def _json_number(value: float | None) -> float | str | None:
    """A float for JSON: ``inf`` is written as the string ``"inf"``."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"
