"""The corrupt-input cases shared by the read path and the write path.

Each case copies a real TensorFlow-written fixture and damages it in one place;
``message`` is what ``ckptmap inspect`` (and the library) must say about it.
``tests/readers/test_corruption.py`` asserts it through ``inspect``;
``tests/migration/test_write_path_validation.py`` runs ``remap``, ``convert``
and ``check`` on the same damaged copies and asserts that nothing is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import (
    FIXTURES,
    data_blocks,
    flip_byte,
    rewrite_entry,
    set_block_compression,
    table_entries,
    truncate,
    write_table,
)

from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    MissingInputError,
    UnsupportedInputError,
)
from ckptmap.formats.crc import crc32c, mask_crc
from ckptmap.formats.slice_key import encode_slice_key
from ckptmap.proto import ckptmap_tf_pb2

FIX = "the file is corrupt or truncated; copy it again from its source"
FIX_INDEX = "the index is corrupt; copy the checkpoint again from its source"
FIX_DATA = "the data file is corrupt or truncated; copy it again from its source"


@dataclass(frozen=True)
class Case:
    """One failure mode: which fixture, how to damage it, what must be raised."""

    fixture: str
    damage: Callable[[Path], None]
    error: type[CkptmapError]
    message: Callable[[Path], str]  # given the copied fixture folder
    action: str = "read"  # what fails: "open", "list" (specs), "read" (every tensor), "verify"
    cli_args: tuple[str, ...] = ()


def _index(folder: Path) -> Path:
    return folder / "model.ckpt-100.index"


def _shard(folder: Path, i: int = 0, n: int = 1) -> Path:
    return folder / f"model.ckpt-100.data-{i:05d}-of-{n:05d}"


def _set_shape(dims: list[int]) -> Callable[[object], None]:
    def change(entry: object) -> None:
        del entry.shape.dim[:]  # type: ignore[attr-defined]
        for d in dims:
            entry.shape.dim.add(size=d)  # type: ignore[attr-defined]

    return change


def _set(field: str, value: int) -> Callable[[object], None]:
    return lambda entry: setattr(entry, field, value)


def _set_version(entry: object) -> None:
    entry.version.min_consumer = 2  # type: ignore[attr-defined]


def _zoo_shard(folder: Path) -> Path:
    return folder / "zoo.data-00000-of-00001"


def _zoo_entry(key: str):  # type: ignore[no-untyped-def]
    value = dict(table_entries(FIXTURES / "dtype_zoo" / "zoo.index"))[key.encode()]
    return ckptmap_tf_pb2.BundleEntryProto.FromString(value)


def _drop_last_slice(entry: object) -> None:
    del entry.slices[-1]  # type: ignore[attr-defined]


def _repeat_first_slice(entry: object) -> None:
    entry.slices.add().CopyFrom(entry.slices[0])  # type: ignore[attr-defined]


def _shift_first_slice(entry: object) -> None:
    entry.slices[0].extent[0].start = 1  # type: ignore[attr-defined]


def _drop_full_entry(index: Path, key: bytes) -> None:
    write_table(index, [(k, v) for k, v in table_entries(index) if k != key])


def _set_zoo_bytes(folder: Path, key: str, at: int, data: bytes) -> None:
    """Overwrite stored bytes of a dtype_zoo tensor (its CRC no longer matches)."""
    shard = _zoo_shard(folder)
    raw = bytearray(shard.read_bytes())
    start = _zoo_entry(key).offset + at
    raw[start : start + len(data)] = data
    shard.write_bytes(bytes(raw))


def _move_slice(index: Path, key: bytes, number: int, start: int) -> None:
    """Move stored slice ``number`` of ``key`` to ``start`` on axis 0, its entry with it.

    The index stays consistent (the slice entry is re-keyed), so what is wrong
    is the tiling alone: the moved slice overlaps one neighbour and leaves a gap.
    """
    entries = dict(table_entries(index))
    full = ckptmap_tf_pb2.BundleEntryProto.FromString(entries[key])

    def extents(proto: object) -> list[tuple[int, int]]:
        return [
            (e.start, e.length if e.HasField("length") else -1)
            for e in proto.extent  # type: ignore[attr-defined]
        ]

    moved = full.slices[number]
    value = entries.pop(encode_slice_key(key, extents(moved)))
    moved.extent[0].start = start
    entries[encode_slice_key(key, extents(moved))] = value
    entries[key] = full.SerializeToString()
    write_table(index, sorted(entries.items()))


def _empty_the_folder(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.mkdir()


CASES = [
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: truncate(_index(d), 30),
            CorruptCheckpointError,
            lambda d: (
                f"{_index(d)}: file is 30 bytes, too short for the 48-byte table footer ({FIX})"
            ),
            action="open",
        ),
        id="truncated-index",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: truncate(_index(d), 0),
            CorruptCheckpointError,
            lambda d: (
                f"{_index(d)}: file is 0 bytes, too short for the 48-byte table footer ({FIX})"
            ),
            action="open",
        ),
        id="empty-index",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: truncate(_index(d), _index(d).stat().st_size - 100),
            CorruptCheckpointError,
            lambda d: (
                f"{_index(d)}: bad table magic 0x{_tail_magic(_index(d)):016x} "
                f"(expected 0xdb4775248b80fb57): not a TensorFlow V2 checkpoint index ({FIX})"
            ),
            action="open",
        ),
        id="index-cut-short",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: flip_byte(_index(d), -1),
            CorruptCheckpointError,
            lambda d: (
                f"{_index(d)}: bad table magic 0x244775248b80fb57 (expected 0xdb4775248b80fb57): "
                f"not a TensorFlow V2 checkpoint index ({FIX})"
            ),
            action="open",
        ),
        id="wrong-magic",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: flip_byte(_index(d), 40, 0x01),
            CorruptCheckpointError,
            lambda d: f"{_index(d)}: data block 0 CRC mismatch at offset 0 ({FIX})",
            action="open",
        ),
        id="block-crc-mismatch",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: set_block_compression(_index(d), data_blocks(_index(d))[0], 1),
            CorruptCheckpointError,
            lambda d: (
                f"{_index(d)}: data block 0 at offset 0: the Snappy-compressed block does not "
                "decode (the file is corrupt or truncated; copy it again from its source)"
            ),
            action="open",
        ),
        id="corrupt-snappy-block",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: truncate(_shard(d), 500),
            CorruptCheckpointError,
            lambda d: (
                f"{_shard(d)}: tensor 'ffm/bias_net/w' at offset 8 with size 800 runs past "
                "the end of the data file (500 bytes; the data file is truncated or belongs "
                "to another index; copy the checkpoint again)"
            ),
        ),
        id="entry-past-end-of-shard",
    ),
    pytest.param(
        Case(
            "ffm_v1_ps2",
            lambda d: _shard(d, 1, 2).unlink(),
            MissingInputError,
            lambda d: (
                f"{_shard(d, 1, 2)}: data file of this checkpoint is missing (copy every "
                "model.ckpt-100.data-* file together with the .index)"
            ),
            cli_args=("--stats",),  # a plain listing works from the index alone
        ),
        id="missing-shard",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: rewrite_entry(_index(d), b"ffm/bias_net/w", _set_shape([2**20, 2**20])),
            CorruptCheckpointError,
            lambda d: (
                f"{_index(d)}: tensor 'ffm/bias_net/w' stores 800 bytes, but shape "
                f"[1048576, 1048576] of float32 needs 4398046511104 ({FIX_INDEX})"
            ),
            action="list",
        ),
        id="hostile-shape",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: rewrite_entry(_index(d), b"global_step", _set("dtype", 99)),
            UnsupportedInputError,
            lambda d: (
                f"{_index(d)}: tensor 'global_step': unknown TensorFlow dtype enum 99 "
                "(upgrade ckptmap or drop this tensor with a filter)"
            ),
            action="list",
        ),
        id="unknown-dtype-enum",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: rewrite_entry(_index(d), b"global_step", _set("shard_id", 3)),
            CorruptCheckpointError,
            lambda d: (
                f"{_index(d)}: tensor 'global_step' is in shard 3, but the checkpoint has 1 "
                f"({FIX_INDEX})"
            ),
            action="list",
        ),
        id="shard-id-out-of-range",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: rewrite_entry(_index(d), b"", _set_version),
            UnsupportedInputError,
            lambda d: (
                f"{_index(d)}: the checkpoint needs bundle format version 2 or later, newer "
                "than 1 which ckptmap reads (re-save it with the TensorFlow version that "
                "trains the new model)"
            ),
            action="open",
        ),
        id="newer-bundle-version",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: flip_byte(_shard(d), 100, 0x10),  # inside ffm/bias_net/w
            CorruptCheckpointError,
            lambda d: (
                f"{_shard(d)}: tensor 'ffm/bias_net/w': CRC32C mismatch: stored "
                f"0x{_stored_crc(d)}, computed 0x{_computed_crc(d)} ({FIX_DATA})"
            ),
            action="verify",
            cli_args=("--verify",),
        ),
        id="data-crc-mismatch",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: flip_byte(_zoo_shard(d), _zoo_entry("string_scalar").offset + 1),
            CorruptCheckpointError,
            lambda d: (
                f"{_zoo_shard(d)}: tensor 'string_scalar': the string length checksum does not "
                f"match the lengths ({FIX_DATA})"
            ),
            cli_args=("--verify",),
        ),
        id="string-length-checksum",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: rewrite_entry(d / "zoo.index", b"sliced/rows", _drop_last_slice),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'zoo.index'}: tensor 'sliced/rows': slices cover 28 of the 40 "
                f"elements of a tensor of shape [10, 4] (a slice is missing) ({FIX_INDEX})"
            ),
        ),
        id="incomplete-slices",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: rewrite_entry(d / "zoo.index", b"sliced/rows", _repeat_first_slice),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'zoo.index'}: tensor 'sliced/rows': slices '10 4 0,4:0,4' and "
                f"'10 4 0,4:0,4' overlap (each element must be stored once) ({FIX_INDEX})"
            ),
        ),
        id="overlapping-slices",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: _move_slice(d / "zoo.index", b"sliced/rows", 1, 3),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'zoo.index'}: tensor 'sliced/rows': slices '10 4 0,4:0,4' and "
                f"'10 4 3,3:0,4' overlap (each element must be stored once) ({FIX_INDEX})"
            ),
        ),
        id="shifted-overlap-and-gap",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: _set_zoo_bytes(d, "string", 0, b"\x7f"),
            CorruptCheckpointError,
            lambda d: (
                f"{_zoo_shard(d)}: tensor 'string': the string lengths do not add up to the "
                f"14 bytes stored ({FIX_DATA})"
            ),
            cli_args=("--verify",),
        ),
        id="string-length-over-claim",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: _set_zoo_bytes(d, "string", 0, b"\x01"),
            CorruptCheckpointError,
            lambda d: (
                f"{_zoo_shard(d)}: tensor 'string': the string lengths do not add up to the "
                f"14 bytes stored ({FIX_DATA})"
            ),
            cli_args=("--verify",),
        ),
        id="string-length-sum",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: _set_zoo_bytes(d, "string_scalar", 0, b"\xff" * 12),
            CorruptCheckpointError,
            lambda d: (
                f"{_zoo_shard(d)}: tensor 'string_scalar': a string length is an over-long "
                f"varint ({FIX_DATA})"
            ),
            cli_args=("--verify",),
        ),
        id="string-unterminated-varint",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: rewrite_entry(d / "zoo.index", b"float32", _set_shape([4, 4])),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'zoo.index'}: tensor 'float32' stores 48 bytes, but shape [4, 4] of "
                f"float32 needs 64 ({FIX_INDEX})"
            ),
            action="list",
        ),
        id="entry-size-not-shape-times-dtype",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: rewrite_entry(d / "zoo.index", b"sliced/rows", _shift_first_slice),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'zoo.index'}: tensor 'sliced/rows[1,4:0,4]' has no entry in "
                f"the index ({FIX_INDEX})"
            ),
        ),
        id="slice-without-entry",
    ),
    pytest.param(
        Case(
            "dtype_zoo",
            lambda d: _drop_full_entry(d / "zoo.index", b"sliced/rows"),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'zoo.index'}: a slice of tensor 'sliced/rows' is stored, but the tensor "
                f"has no full entry in the index ({FIX_INDEX})"
            ),
            action="open",
        ),
        id="sliced-without-full",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: rewrite_entry(_index(d), b"global_step", _set_shape([1] * 65)),
            UnsupportedInputError,
            lambda d: (
                f"{_index(d)}: tensor 'global_step' has rank 65, more than the 64 dimensions "
                "ckptmap supports (numpy's limit)"
            ),
            action="list",
        ),
        id="rank-65",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: (d / "checkpoint").write_bytes(b"\x00\xffnot a state file"),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'checkpoint'}: not a valid checkpoint state file (it is not UTF-8 text; "
                "delete it and pass a checkpoint prefix, or restore it from a backup)"
            ),
            action="open",
        ),
        id="binary-state-file",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: (d / "checkpoint").write_text("model_checkpoint_path model.ckpt-100\n"),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'checkpoint'}: not a valid checkpoint state file (1:23 : "
                "'model_checkpoint_path model.ckpt-100': Expected \":\".; delete it "
                "and pass a checkpoint prefix, or restore it from a backup)"
            ),
            action="open",
        ),
        id="garbage-state-file",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: (d / "checkpoint").write_text(
                'model_checkpoint_path: "../other/model.ckpt-100"\n'
            ),
            CorruptCheckpointError,
            lambda d: (
                f"{d / 'checkpoint'}: checkpoint path '../other/model.ckpt-100' points "
                f"outside {d} (the folder was probably moved or copied; make the paths in "
                "this file relative, e.g. 'model.ckpt-100', or pass the checkpoint prefix "
                "directly)"
            ),
            action="open",
        ),
        id="state-file-points-outside",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            lambda d: (d / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-7"\n'),
            MissingInputError,
            lambda d: (
                f"{d / 'model.ckpt-7.index'}: listed in {d / 'checkpoint'} but missing (copy "
                "the checkpoint's files or edit the state file)"
            ),
            action="open",
        ),
        id="state-file-names-a-missing-checkpoint",
    ),
    pytest.param(
        Case(
            "ffm_v1",
            _empty_the_folder,
            MissingInputError,
            lambda d: (
                f"{d}: no checkpoint in this folder (no 'checkpoint' state file and no "
                ".index file; pass a checkpoint prefix or another folder)"
            ),
            action="open",
        ),
        id="folder-without-checkpoint",
    ),
]


def _tail_magic(index: Path) -> int:
    return int.from_bytes(index.read_bytes()[-8:], "little")


def _bias_entry(folder: Path):  # type: ignore[no-untyped-def]
    value = dict(table_entries(_index(folder)))[b"ffm/bias_net/w"]
    return ckptmap_tf_pb2.BundleEntryProto.FromString(value)


def _stored_crc(folder: Path) -> str:
    return f"{_bias_entry(folder).crc32c:08x}"


def _computed_crc(folder: Path) -> str:
    entry = _bias_entry(folder)
    data = _shard(folder).read_bytes()[entry.offset : entry.offset + entry.size]
    return f"{mask_crc(crc32c(data)):08x}"


def damaged_copy(case: Case, tmp_path: Path) -> Path:
    folder = tmp_path / case.fixture
    shutil.copytree(FIXTURES / case.fixture, folder)
    case.damage(folder)
    return folder
