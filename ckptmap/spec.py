"""What a model saves and restores, independent of where the description came from.

A :class:`TensorSpec` describes one checkpoint key: its dtype, its full shape
and, for a partitioned variable, its slices. The old checkpoint's listing and
the new model's :class:`ModelSpec` are both made of them, so the alias engine
compares like with like.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter

from ckptmap._fast_new import fast_constructor
from ckptmap.dtypes import DType
from ckptmap.split import SliceSpec


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One checkpoint key.

    Attributes:
        key: the tensor's name in the checkpoint (``tower/dense/kernel``).
        dtype: its dtype.
        shape: its full shape.
        slices: for a partitioned variable, its slices (stored slices for a
            checkpoint, requested slices for a model); empty for a whole tensor.
        dynamic: a model key that takes a tensor of any shape (``shape`` is
            then ``()`` and means nothing): one the model's Saver restores into
            something other than a variable, such as a lookup table's import op,
            whose size is the data's. It is matched by name and dtype, and the
            old tensor is written as it is.
    """

    key: str
    dtype: DType
    shape: tuple[int, ...]
    slices: tuple[SliceSpec, ...] = ()
    dynamic: bool = False

    def accepts(self, old: TensorSpec) -> bool:
        """Whether the stored tensor ``old`` can be restored as this key: the same
        dtype, and the same full shape unless this key takes any shape."""
        return self.dtype.enum == old.dtype.enum and (self.dynamic or self.shape == old.shape)


@dataclass(frozen=True, slots=True)
class GraphVariable:
    """One variable of a model, as the model's code names it.

    Attributes:
        name: the graph name without ``:0`` (``emb/part_3``); alias maps use it.
        key: the checkpoint key it is saved under (``emb``).
        dtype: its dtype.
        shape: the variable's own shape (a part's shape for a partition).
        slice: its slice of the full tensor ``key``; ``None`` for a whole tensor.
        trainable: whether it is in the trainable-variables collection.
        is_global_step: whether it is the global step.
    """

    name: str
    key: str
    dtype: DType
    shape: tuple[int, ...]
    slice: SliceSpec | None = None
    trainable: bool = True
    is_global_step: bool = False


# The same objects, built faster, for loops over every key of a model or checkpoint.
make_tensor_spec = fast_constructor(TensorSpec)
make_graph_variable = fast_constructor(GraphVariable)


@dataclass(frozen=True)
class ModelSpec:
    """Everything ckptmap needs to know about a model it writes a checkpoint for.

    Attributes:
        keys: the keys the model's saver restores, by key, in key order.
        variables: the model's variables, by graph name, in name order.
        source: where the description came from, for messages.
        save_shards: how many restore ops the model's Saver has: one per device
            for a sharded Saver (so the number of parameter servers of a
            Monolith-style model), 1 for a plain one; 0 when unknown.
        template: when the spec was read from a checkpoint of the new model
            (a template), that checkpoint's prefix or URL; empty otherwise.
        restored_into: for each key the Saver restores into something other
            than a variable, what that is (``lookup table 'word_ids'
            (MutableHashTableV2)``); such a key is ``dynamic`` when whole.
    """

    keys: dict[str, TensorSpec]
    variables: dict[str, GraphVariable] = field(default_factory=dict)
    source: str = ""
    save_shards: int = 0
    template: str = ""
    restored_into: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_parts(
        cls,
        keys: Iterable[TensorSpec],
        variables: Iterable[GraphVariable] = (),
        source: str = "",
    ) -> ModelSpec:
        """Build a spec, sorting keys (as unsigned bytes, like TF) and variables by name."""
        key_list = list(keys)
        if all(k.key.isascii() for k in key_list):  # then the bytes sort as the text does
            key_list.sort(key=attrgetter("key"))
        else:  # a surrogate escape (a byte of invalid UTF-8) sorts as that byte
            key_list.sort(key=lambda k: k.key.encode("utf-8", "surrogateescape"))
        var_list = sorted(variables, key=attrgetter("name"))
        return cls(
            keys={k.key: k for k in key_list},
            variables={v.name: v for v in var_list},
            source=source,
        )

    def variables_of(self, key: str) -> list[GraphVariable]:
        """The graph variables saved under ``key`` (several for a partitioned one)."""
        return [v for v in self.variables.values() if v.key == key]
