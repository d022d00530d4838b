"""Read the new model: what its checkpoint must contain, as a :class:`~ckptmap.spec.ModelSpec`.

The new model can be given as

* a GraphDef in text (``graph.pbtxt``, read by the fast scanner of ``_pbtxt``)
  or binary form (``.pb``);
* a MetaGraphDef (``model.ckpt-N.meta``), whose SaverDef names the Saver and
  whose collections give ``trainable`` and the partitions exactly;
* a TF1 SavedModel folder (``saved_model.pb``, as ``SavedModelBuilder`` writes it);
* a JSON model spec (``.json``, see :mod:`ckptmap.readers.json_spec`);
* a checkpoint of the new model (a folder with a ``checkpoint`` file, a prefix,
  or an ``.index`` file), whose keys are taken as they are.

The graph logic (which Saver, which keys, which variable each key goes to) is in
:mod:`ckptmap.readers._graphdef`; ``docs/model-spec.md`` describes the rules.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message

from ckptmap.errors import CkptmapError, GraphError, MissingInputError, UsageError
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers._graphdef import MetaFacts, NodeSource, build_model_spec
from ckptmap.readers._graphproto import ProtoNodes, meta_facts
from ckptmap.readers._pbtxt import GraphText, check_escapes
from ckptmap.readers.graph_files import SAVED_MODEL_PB, read_bytes
from ckptmap.readers.json_spec import model_spec_from_keys, parse_json_spec, read_json_spec
from ckptmap.spec import ModelSpec
from ckptmap.storage import Location, is_url, location_text, open_parent
from ckptmap.storage.input_files import open_input
from ckptmap.storage.urls import local_input

SAVED_MODEL_PBTXT = "saved_model.pbtxt"
STATE_FILE = "checkpoint"
_TEXT_SUFFIXES = (".pbtxt", ".txt", ".pbtext", ".prototxt")
_CHECKPOINT_FILES = re.compile(r"\.index$|\.data-\d{5}-of-\d{5}$")
# Bytes text format may hold: tab, line ends, and everything from space up, but DEL.
_TEXT_BYTES = bytes([9, 10, 13, *range(32, 127), *range(128, 256)])
_META_FIELDS = frozenset({"meta_info_def", "graph_def", "saver_def", "collection_def"})
_SAVED_MODEL_FIELDS = frozenset({"saved_model_schema_version", "meta_graphs"})
_FIRST_FIELD = re.compile(r"\s*(?:#[^\n]*(?:\n|\Z)\s*)*([A-Za-z_][A-Za-z0-9_]*)")
_M = TypeVar("_M", bound=Message)
_FIX_BINARY = "the file is truncated, corrupt or not of this kind; export it again"


def read_model_spec(
    path: str | os.PathLike[str], *, saver: str | None = None, fast: bool = True
) -> ModelSpec:
    """Read what a new model restores: its checkpoint keys and its graph variables.

    Args:
        path: a ``graph.pbtxt`` (GraphDef text), a binary GraphDef ``.pb``, a
            MetaGraphDef ``.meta``, a SavedModel folder or its ``saved_model.pb``,
            a JSON model spec ``.json``, or a checkpoint of the new model (folder,
            prefix or ``.index``); a local path or a URL (see :mod:`ckptmap.storage`).
        saver: the name scope of the Saver whose restore op to read (``save``,
            ``save_1``, ``tower/save``) when the graph has several; by default the
            one the MetaGraphDef's SaverDef names, else ``save``, else the only one.
        fast: read GraphDef text with ckptmap's scanner, which parses only the
            nodes it needs; ``False`` parses the whole file with protobuf's
            ``text_format`` (slow, checks every line). Both give the same result.

    Returns:
        The model: ``keys`` (key -> dtype, full shape, requested slices) and
        ``variables`` (graph name -> key, own shape, slice, trainable, global step).

    Raises:
        MissingInputError: if ``path`` does not exist, or a SavedModel folder
            has no ``saved_model.pb``.
        GraphError: if the input is not a graph or spec, is truncated, has a
            syntax error (reported as ``file:line:column``), has no variables and
            no saver, or several savers and none chosen.
        UnsupportedInputError: for a TF2 object-based SavedModel (no RestoreV2)
            or a dtype ckptmap cannot store.
        UsageError: if ``saver`` is given for a JSON spec or a checkpoint.

    Example:
        >>> spec = read_model_spec("fixtures/ffm_v2/graph.pbtxt")  # doctest: +SKIP
        >>> spec.keys["ffm/embeddings"].shape  # doctest: +SKIP
        (200, 16)
        >>> [v.name for v in spec.variables_of("ffm/embeddings")]  # doctest: +SKIP
        ['ffm/embeddings/part_0', 'ffm/embeddings/part_1', 'ffm/embeddings/part_2']
    """
    path = local_input(path)  # a file:// URL is a local file: opened with the local checks
    text = location_text(path)
    if is_url(text):
        return _read_url(text, saver, fast)
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, saver, fast)
    name = path.name
    if not path.exists():
        if Path(f"{path}.index").is_file():
            return _read_checkpoint(path, saver)
        raise MissingInputError(
            path,
            "no such file or folder (give a graph.pbtxt, .pb, .meta, SavedModel folder, "
            "JSON model spec or checkpoint of the new model)",
        )
    if name.endswith(".json"):
        _no_saver_option(path, saver, "a JSON model spec")
        return read_json_spec(path)
    if _CHECKPOINT_FILES.search(name):
        return _read_checkpoint(path, saver)
    if name == SAVED_MODEL_PB:
        return _read_saved_model(path, saver)
    if name.endswith(".meta"):
        return _read_binary_meta(path, saver)
    if name.endswith(_TEXT_SUFFIXES) or (not name.endswith(".pb") and _looks_like_text(path)):
        return _read_text(path, saver, fast)
    return _read_binary_graph(path, saver)


def restored_into(graph: Path, data: bytes) -> dict[str, str] | None:
    """``ModelSpec.restored_into`` of the SavedModel or MetaGraphDef ``data`` read from ``graph``.

    Which keys the graph restores into something other than a variable
    (lookup tables, other saveables), and what into; ``None`` if the graph
    cannot be parsed (its problems are for ``check`` to report, not for a
    listing). :func:`ckptmap.readers.graph_files.graph_with_tables` finds it.
    """
    try:
        if graph.name == SAVED_MODEL_PB:
            saved = _parse_bytes(data, str(graph), ckptmap_tf_pb2.SavedModel(), "SavedModel")
            return _from_saved_model(saved, str(graph), None).restored_into
        meta = _parse_bytes(data, str(graph), ckptmap_tf_pb2.MetaGraphDef(), "MetaGraphDef")
        return _from_meta(meta, str(graph), None).restored_into
    except CkptmapError:
        return None


# ---------------------------------------------------------------------------
# Dispatch helpers
# ---------------------------------------------------------------------------


def _read_folder(path: Path, saver: str | None, fast: bool) -> ModelSpec:
    # The files of a named folder are the folder's: links are followed only inside it.
    if (path / SAVED_MODEL_PB).is_file():
        return _read_saved_model(path / SAVED_MODEL_PB, saver, folder=path)
    if (path / SAVED_MODEL_PBTXT).is_file():
        return _read_text(path / SAVED_MODEL_PBTXT, saver, fast, folder=path)
    has_checkpoint = (path / "checkpoint").is_file() or any(path.glob("*.index"))
    if has_checkpoint:
        return _read_checkpoint(path, saver)
    if (path / "variables").is_dir():
        raise MissingInputError(
            path, f"this SavedModel folder has no {SAVED_MODEL_PB} (copy the complete export)"
        )
    raise MissingInputError(
        path,
        f"the folder has no {SAVED_MODEL_PB} and no checkpoint (give the SavedModel folder, "
        "the graph.pbtxt file or a checkpoint of the new model)",
    )


def _read_url(url: str, saver: str | None, fast: bool) -> ModelSpec:
    """A model at a URL: the file is fetched whole, then read as a local one would be."""
    location, name = open_parent(url)
    if not name:
        return _read_url_folder(location, url, saver, fast)
    if _CHECKPOINT_FILES.search(name):
        return _read_checkpoint(url, saver)
    try:
        raw = location.read_all(name)
    except MissingInputError:
        if location.exists(name + ".index"):
            return _read_checkpoint(url, saver)
        return _read_url_folder(location.child(name), url, saver, fast)
    where = location.where(name)
    if name.endswith(".json"):
        _no_saver_option(where, saver, "a JSON model spec")
        try:
            return parse_json_spec(raw.decode("utf-8"), where)
        except UnicodeDecodeError as err:
            raise GraphError(f"{where}: not UTF-8 text at byte {err.start}") from None
    if name == STATE_FILE:
        return _read_checkpoint(url, saver)
    if name == SAVED_MODEL_PB:
        return _from_saved_model(
            _parse_bytes(raw, where, ckptmap_tf_pb2.SavedModel(), "SavedModel"), where, saver
        )
    if name.endswith(".meta"):
        meta = _parse_bytes(raw, where, ckptmap_tf_pb2.MetaGraphDef(), "MetaGraphDef")
        return _from_meta(meta, where, saver)
    if name.endswith(_TEXT_SUFFIXES) or (not name.endswith(".pb") and _is_text(raw[:4096])):
        return _text_spec(raw, where, saver, fast)
    return _binary_graph_spec(raw, where, saver)


def _read_url_folder(location: Location, url: str, saver: str | None, fast: bool) -> ModelSpec:
    """A folder URL: a SavedModel (``saved_model.pb``) or a checkpoint of the new model."""
    try:
        raw = location.read_all(SAVED_MODEL_PB)
    except MissingInputError:
        pass
    else:
        where = location.where(SAVED_MODEL_PB)
        saved = _parse_bytes(raw, where, ckptmap_tf_pb2.SavedModel(), "SavedModel")
        return _from_saved_model(saved, where, saver)
    try:
        return _read_checkpoint(location.url, saver)
    except MissingInputError:
        raise MissingInputError(
            url,
            "no such file, SavedModel or checkpoint at this URL (give a graph.pbtxt, .pb, "
            ".meta, SavedModel folder, JSON model spec or checkpoint of the new model)",
        ) from None


def _no_saver_option(path: Path | str, saver: str | None, what: str) -> None:
    if saver is not None:
        raise UsageError(f"{path}: the saver option applies to graphs, not to {what}")


def _looks_like_text(path: Path) -> bool:
    """Text format starts with a field name or a comment and has no control bytes.

    Binary protobuf has them early: field tags such as ``12`` (field 2, bytes).
    """
    try:
        with os.fdopen(open_input(path, None), "rb") as handle:  # no FIFO or device
            head = handle.read(4096)
    except OSError as err:
        raise GraphError(f"{path}: cannot read the file ({err.strerror})") from err
    return _is_text(head)


def _is_text(head: bytes) -> bool:
    if head.translate(None, _TEXT_BYTES):
        return False
    stripped = head.lstrip()
    return bool(stripped) and (chr(stripped[0]).isalpha() or stripped[:1] == b"#")


def _read_checkpoint(path: Path | str, saver: str | None) -> ModelSpec:
    _no_saver_option(path, saver, "a checkpoint")
    from ckptmap.readers.tf_bundle import open_checkpoint

    with open_checkpoint(path) as ckpt:
        specs = ckpt.specs()
        where = str(ckpt.prefix)
        template = ckpt.url
    return replace(model_spec_from_keys(specs.values(), where), template=template)


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


def _read_text(path: Path, saver: str | None, fast: bool, folder: Path | None = None) -> ModelSpec:
    return _text_spec(read_bytes(path, folder), str(path), saver, fast)


def _text_spec(raw: bytes, where: str, saver: str | None, fast: bool) -> ModelSpec:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GraphError(
            f"{where}: not a text GraphDef (byte {err.start} is not UTF-8; "
            "a binary GraphDef should be named .pb)"
        ) from None
    if not text.strip():
        raise GraphError(f"{where}: the file is empty, not a GraphDef (export the graph again)")
    first = _FIRST_FIELD.match(text)
    field = first.group(1) if first else ""
    if field in _META_FIELDS:
        return _from_meta(
            _parse_text_proto(text, ckptmap_tf_pb2.MetaGraphDef(), where), where, saver
        )
    if field in _SAVED_MODEL_FIELDS:
        saved = _parse_text_proto(text, ckptmap_tf_pb2.SavedModel(), where)
        return _from_saved_model(saved, where, saver)
    source: NodeSource
    if fast:
        source = GraphText(text, where)
    else:
        source = ProtoNodes(_parse_text_proto(text, ckptmap_tf_pb2.GraphDef(), where), where)
    return build_model_spec(source, saver=saver)


def _parse_text_proto(text: str, message: _M, where: str) -> _M:
    check_escapes(text, where)
    try:
        text_format.Parse(text, message, allow_unknown_field=True)
    except RecursionError:
        raise GraphError(
            f"{where}: messages are nested too deeply (fix the file, or write it again "
            "with tf.io.write_graph)"
        ) from None
    except text_format.ParseError as err:
        line, col = err.GetLine(), err.GetColumn()
        detail = str(err).split(" : ", 1)[-1] if line else str(err)
        place = f"{where}:{line}:{col}" if line else where
        raise GraphError(
            f"{place}: {detail} (fix the file, or write it again with tf.io.write_graph)"
        ) from None
    return message


# ---------------------------------------------------------------------------
# Binary
# ---------------------------------------------------------------------------


def _parse_binary(path: Path, message: _M, what: str, folder: Path | None = None) -> _M:
    return _parse_bytes(read_bytes(path, folder), str(path), message, what)


def _parse_bytes(data: bytes, where: str, message: _M, what: str) -> _M:
    if not data:
        raise GraphError(f"{where}: the file is empty, not a {what} ({_FIX_BINARY})")
    try:
        message.ParseFromString(data)
    except (DecodeError, RecursionError) as err:
        raise GraphError(f"{where}: cannot parse as a binary {what} ({_FIX_BINARY})") from err
    return message


def _check_graph_def(graph_def: ckptmap_tf_pb2.GraphDef, where: str, what: str) -> None:
    for node in graph_def.node:
        if not node.name or not node.op:
            raise GraphError(f"{where}: not a {what}: a node has no name or op ({_FIX_BINARY})")


def _read_binary_graph(path: Path, saver: str | None) -> ModelSpec:
    return _binary_graph_spec(read_bytes(path), str(path), saver)


def _binary_graph_spec(raw: bytes, where: str, saver: str | None) -> ModelSpec:
    graph_def = _parse_bytes(raw, where, ckptmap_tf_pb2.GraphDef(), "GraphDef")
    _check_graph_def(graph_def, where, "GraphDef")
    return build_model_spec(ProtoNodes(graph_def, where), saver=saver)


def _read_binary_meta(path: Path, saver: str | None) -> ModelSpec:
    meta = _parse_binary(path, ckptmap_tf_pb2.MetaGraphDef(), "MetaGraphDef")
    return _from_meta(meta, str(path), saver)


def _from_meta(meta: ckptmap_tf_pb2.MetaGraphDef, where: str, saver: str | None) -> ModelSpec:
    _check_graph_def(meta.graph_def, where, "MetaGraphDef")
    facts: MetaFacts = meta_facts(meta, where)
    return build_model_spec(ProtoNodes(meta.graph_def, where), meta=facts, saver=saver)


def _read_saved_model(path: Path, saver: str | None, folder: Path | None = None) -> ModelSpec:
    saved = _parse_binary(path, ckptmap_tf_pb2.SavedModel(), "SavedModel", folder)
    return _from_saved_model(saved, str(path), saver)


def _from_saved_model(saved: ckptmap_tf_pb2.SavedModel, where: str, saver: str | None) -> ModelSpec:
    """Read the first MetaGraphDef: the one ``add_meta_graph_and_variables`` wrote."""
    if not saved.meta_graphs:
        raise GraphError(f"{where}: the SavedModel has no meta graph ({_FIX_BINARY})")
    meta = saved.meta_graphs[0]
    _check_graph_def(meta.graph_def, where, "SavedModel")
    facts = meta_facts(meta, where)
    return build_model_spec(
        ProtoNodes(meta.graph_def, where), meta=facts, saver=saver, require_saver=True
    )
