"""Monolith's ``CustomRestoreListener``, on ckptmap's reader, alias engine and slices.

A training job whose model changed (variables renamed, re-partitioned) cannot
restore its old checkpoint with a plain ``Saver``. The listener prepares, while
the graph is still being built, what a custom restore needs; the restore side
then feeds the old values into the new variables once a session exists:

1. :meth:`CustomRestoreListener.begin` finds the latest checkpoint in
   ``model_dir`` and adds one :class:`RestoreRequest` to the graph collection
   :data:`CUSTOM_RESTORE_OP`:

   - *alias restore*: a placeholder and an assign op per variable, and the alias
     map (graph variable name -> old checkpoint key) from
     :func:`ckptmap.alias_names.plan_aliases_by_name` (for a TF2 object-based
     checkpoint, the map's values and the rules are in the names users know,
     as for ``check`` and ``remap``);
   - *clear NN* (``clear_nn=True``): ``global_variables_initializer``, plus a
     global-step placeholder and assign op when ``continue_training``.

   Nothing is added while exporting (:func:`exporting`), when there is no
   checkpoint, when the checkpoint restores plainly (every variable's own key
   is there with its shape), or, for clear NN, when the flag file
   ``<model_dir>/clear_nn`` says a previous start already cleared.

2. :func:`restore` (called by :meth:`CustomRestoreListener.after_create_session`,
   :class:`CustomRestoreHook` and :class:`CustomRestoreSaver`) consumes the
   request: it reads the old tensors with
   :func:`ckptmap.readers.tf_bundle.open_checkpoint`, cuts each partitioned
   variable's part out of the full tensor with its :class:`~ckptmap.split.SliceSpec`,
   and runs the assign ops; or it runs the initializer, sets the global step,
   and writes the flag file. Without a request it falls back to a plain saver.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ckptmap.alias import Unresolved
from ckptmap.alias_names import plan_aliases_by_name
from ckptmap.dtypes import dtype_from_enum
from ckptmap.errors import (
    MissingInputError,
    OutputError,
    UnresolvedError,
    UnsupportedInputError,
    UsageError,
)
from ckptmap.migration.verdict import decide
from ckptmap.readers.object_graph import object_names
from ckptmap.readers.state import locate_checkpoint
from ckptmap.readers.tf_bundle import Checkpoint, open_checkpoint
from ckptmap.spec import GraphVariable, ModelSpec, TensorSpec
from ckptmap.split import SliceSpec

logger = logging.getLogger(__name__)

CUSTOM_RESTORE_OP = "custom_restore_op"  # Monolith's collection name (dense_reload_utils)
CLEAR_NN_FLAG_FILE = "clear_nn"  # in model_dir: "NN already cleared, restore normally"
CLEAR_NN_FLAG_TEXT = "clean nn done!"  # what Monolith writes into it
PLACEHOLDER_SCOPE = "custom_restore"
_TENSOR_SUFFIX = re.compile(r":\d+$")
_MAX_LISTED = 5

_EXPORTING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ckptmap_tf_exporting", default=False
)


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Mark the code inside as building an export graph: listeners and restores stand aside.

    Monolith's listener checks its export context the same way; a SavedModel
    export loads the checkpoint of the model being exported, as it is.
    """
    token = _EXPORTING.set(True)
    try:
        yield
    finally:
        _EXPORTING.reset(token)


def is_exporting() -> bool:
    """True inside :func:`exporting`."""
    return _EXPORTING.get()


class RestoreAction(str, enum.Enum):
    """What :func:`restore` did."""

    ALIAS = "alias"  # fed old tensors into the variables through the alias map
    CLEAR_NN = "clear_nn"  # re-initialised the variables (and set the global step)
    SAVER = "saver"  # nothing custom to do: restored with the plain saver
    NONE = "none"  # nothing custom to do and no saver given: left the variables alone


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """What :meth:`CustomRestoreListener.begin` leaves in :data:`CUSTOM_RESTORE_OP`.

    Attributes:
        checkpoint: the checkpoint prefix found by ``begin``.
        model_dir: the listener's model folder (where the clear-NN flag file lives).
        clear_nn: a clear-NN request rather than an alias restore.
        init_ops: the ops to run: one grouped assign op for an alias restore;
            the initializer (and the global-step assign) for clear NN.
        placeholders: graph variable name -> the placeholder its value is fed to.
        variables: graph variable name -> its description (slice included).
        alias_map: graph variable name -> old checkpoint key (empty for clear NN).
        global_step_key: for clear NN with ``continue_training``, the key the
            global step is read from.
    """

    checkpoint: Path
    model_dir: Path
    clear_nn: bool
    init_ops: tuple[Any, ...]
    placeholders: Mapping[str, Any]
    variables: Mapping[str, GraphVariable]
    alias_map: Mapping[str, str]
    global_step_key: str | None = None


# -- the new model, from the live graph ---------------------------------------


def _node_name(name: str) -> str:
    """``scope/var:0`` -> ``scope/var`` (Monolith's ``node_name`` for variable names)."""
    return _TENSOR_SUFFIX.sub("", name.strip().rstrip("/").lstrip("^"))


def describe_graph(graph: Any = None) -> ModelSpec:
    """Describe the variables of ``graph`` (its ``variables`` collection) as a ModelSpec.

    A part of a partitioned variable is saved under its full variable's key,
    with the slice recorded in its ``_save_slice_info`` (full name, full shape,
    offset and shape); the key's :class:`~ckptmap.spec.TensorSpec` lists the
    parts' slices in offset order.

    Args:
        graph: the ``tf.Graph``; the default graph when ``None``.

    Raises:
        UnsupportedInputError: for a variable whose shape is not fully known or
            whose dtype cannot be saved.
    """
    if graph is None:
        graph = tf.compat.v1.get_default_graph()
    trainable = {v.name for v in graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)}
    global_step = tf.compat.v1.train.get_global_step(graph)
    step_name = None if global_step is None else global_step.name
    variables = [
        _describe_variable(v, v.name in trainable, v.name == step_name)
        for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
    ]
    return ModelSpec.from_parts(_key_specs(variables), variables, source="the live graph")


def _describe_variable(var: Any, trainable: bool, is_global_step: bool) -> GraphVariable:
    name = _node_name(var.name)
    dtype = dtype_from_enum(var.dtype.base_dtype.as_datatype_enum, where=f"variable {name!r}")
    if not var.shape.is_fully_defined():
        raise UnsupportedInputError(
            f"variable {name!r}: shape {var.shape} is not fully known "
            "(give the variable a static shape before the listener's begin())"
        )
    shape = tuple(int(d) for d in var.shape.as_list())
    info = getattr(var, "_save_slice_info", None)
    if info is None:
        return GraphVariable(name, name, dtype, shape, None, trainable, is_global_step)
    part = SliceSpec(
        tuple(int(d) for d in info.full_shape),
        tuple((int(o), int(n)) for o, n in zip(info.var_offset, info.var_shape, strict=True)),
    )
    return GraphVariable(name, info.full_name, dtype, shape, part, trainable, is_global_step)


def _key_specs(variables: Sequence[GraphVariable]) -> list[TensorSpec]:
    parts: dict[str, list[SliceSpec]] = {}
    specs: dict[str, TensorSpec] = {}
    for var in variables:
        if var.slice is None:
            specs[var.key] = TensorSpec(var.key, var.dtype, var.shape)
        else:
            parts.setdefault(var.key, []).append(var.slice)
            specs[var.key] = TensorSpec(var.key, var.dtype, var.slice.full_shape)
    for key, slices in parts.items():
        spec = specs[key]
        ordered = tuple(sorted(slices, key=lambda s: s.starts))
        specs[key] = TensorSpec(key, spec.dtype, spec.shape, ordered)
    return list(specs.values())


def _full_shape(var: GraphVariable) -> tuple[int, ...]:
    return var.shape if var.slice is None else var.slice.full_shape


def _restores_plainly(old: Mapping[str, TensorSpec], variables: Iterable[GraphVariable]) -> bool:
    """True when every variable's own key is in the checkpoint with its dtype and full shape.

    A plain ``Saver`` restores such a graph (it re-slices partitioned tensors
    itself), so no custom restore is needed: Monolith's "compatible" case.
    """
    for var in variables:
        spec = old.get(var.key)
        if spec is None or spec.dtype != var.dtype or spec.shape != _full_shape(var):
            return False
    return True


# -- the values ----------------------------------------------------------------


def read_variable_values(
    checkpoint: Checkpoint,
    variables: Mapping[str, GraphVariable],
    sources: Mapping[str, str],
) -> dict[str, np.ndarray]:
    """Read the value of every variable in ``sources`` from the old checkpoint.

    Each old tensor is read once (reassembled if it was stored partitioned); a
    variable that is a part of a partitioned variable gets the box its slice
    names, on whatever axis the slice cuts. Values of a little-endian
    checkpoint are read-only views; a session copies them when it feeds them.

    Args:
        checkpoint: the old checkpoint, open.
        variables: graph variable name -> its description.
        sources: graph variable name -> the old key it is restored from.

    Returns:
        Graph variable name -> its value, in the order of ``sources``.

    Raises:
        UnresolvedError: if a name in ``sources`` is not in ``variables``, or an
            old tensor's dtype or shape does not fit its variable.
        TensorNotFoundError: if an old key is not in the checkpoint.
        CorruptCheckpointError: if the checkpoint's data are damaged.
    """
    by_key: dict[str, list[str]] = {}
    for name, key in sources.items():
        if name not in variables:
            raise UnresolvedError(
                f"alias map names {name!r}, which is not a variable of the graph "
                "(use the names of the graph's variables, without ':0')"
            )
        by_key.setdefault(key, []).append(name)
    values: dict[str, np.ndarray] = {}
    for key, names in by_key.items():
        entry = checkpoint.entry(key)
        for name in names:
            _check_fits(name, variables[name], key, entry.dtype.name, entry.shape)
        old = checkpoint.read(key, verify=True)  # as remap does: CRC and string layout
        for name in names:
            part = variables[name].slice
            values[name] = old if part is None else old[part.index()]
    return {name: values[name] for name in sources}


def _check_fits(
    name: str, var: GraphVariable, key: str, dtype: str, shape: tuple[int, ...]
) -> None:
    if dtype != var.dtype.name or shape != _full_shape(var):
        raise UnresolvedError(
            f"variable {name!r}: old tensor {key!r} is {dtype} {list(shape)}, but the variable "
            f"needs {var.dtype.name} {list(_full_shape(var))} (map it to another key)"
        )


# -- the listener ----------------------------------------------------------------


class CustomRestoreListener:
    """Prepare a custom restore of the default graph from the checkpoint in ``model_dir``.

    A duck-typed listener: ``begin()`` while the graph is built, then
    ``after_create_session(session, coord)`` (or Monolith's
    ``after_restore(session)``) once a session exists. Wrap it in
    :class:`CustomRestoreHook` for a ``MonitoredSession``.

    Args:
        alias_map: graph variable name (``scope/w/part_0``) -> old checkpoint
            key or, for a TF2 object-based checkpoint, the name users know it
            by (``net/hidden/kernel``, ``global_step``, a unique full name).
            Names it leaves out are matched by ckptmap's alias engine.
        clear_nn: instead of restoring, re-initialise every variable once.
        continue_training: with ``clear_nn``, keep the checkpoint's global step.
        model_dir: the folder of the old checkpoint (its ``checkpoint`` state
            file picks the latest); also where the clear-NN flag file goes.
        enable_alias_map_auto_gen: let the alias engine generate matches for
            variables the alias map does not name.
        rules: ``PATTERN=FORMAT`` rules for the alias engine (design.md §Alias maps),
            over the old checkpoint's user names when it is object-based
            (falling back to keys, as for ``check``: docs/tf2.md).

    Raises:
        UsageError: if ``clear_nn`` is combined with an ``alias_map``.

    Example:
        >>> listener = CustomRestoreListener({"w2": "w"}, model_dir="old")  # doctest: +SKIP
        >>> listener.begin()  # while building the graph  # doctest: +SKIP
        >>> with tf.compat.v1.Session() as sess:  # doctest: +SKIP
        ...     sess.run(tf.compat.v1.global_variables_initializer())
        ...     restore(sess)
        <RestoreAction.ALIAS: 'alias'>
    """

    def __init__(
        self,
        alias_map: Mapping[str, str] | None = None,
        clear_nn: bool = False,
        continue_training: bool = False,
        model_dir: str | os.PathLike[str] | None = None,
        enable_alias_map_auto_gen: bool = True,
        *,
        rules: Sequence[str] = (),
    ) -> None:
        if clear_nn and alias_map:
            raise UsageError(
                "CustomRestoreListener: clear_nn re-initialises every variable, so an "
                "alias_map has nothing to restore (pass one or the other)"
            )
        self.alias_map: dict[str, str] | None = None if alias_map is None else dict(alias_map)
        self.clear_nn = clear_nn
        self.continue_training = continue_training
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.enable_alias_map_auto_gen = enable_alias_map_auto_gen
        self.rules = tuple(rules)
        self.checkpoint: Path | None = None

    def begin(self) -> None:
        """Add a :class:`RestoreRequest` to the default graph, if one is needed.

        Raises:
            UnresolvedError: if some variables have no source in the checkpoint
                or their source does not fit (the message names them).
            CorruptCheckpointError: if the checkpoint's index is damaged.
        """
        if is_exporting():
            logger.info("CustomRestoreListener: exporting, nothing to do")
            return
        if self.model_dir is None:
            logger.info("CustomRestoreListener: no model_dir, nothing to do")
            return
        try:
            ckpt = open_checkpoint(self.model_dir)
        except MissingInputError as err:
            logger.info("CustomRestoreListener: no checkpoint to restore (%s)", err)
            return
        with ckpt:
            self.checkpoint = ckpt.prefix
            graph = tf.compat.v1.get_default_graph()
            if self.clear_nn:
                self._add_clear_nn(graph, self.model_dir, ckpt.prefix)
            else:
                self._add_alias_restore(graph, self.model_dir, ckpt)

    def after_create_session(self, session: Any, coord: Any = None) -> RestoreAction:
        """Run the restore ``begin`` prepared (see :func:`restore`)."""
        del coord
        return restore(session)

    # Monolith's CheckpointRestorerListener interface, for hooks that call it.

    def before_restore(self, session: Any) -> None:
        """Nothing to do before the restore."""

    def after_restore(self, session: Any) -> RestoreAction:
        """Run the restore ``begin`` prepared (see :func:`restore`)."""
        return restore(session)

    def end(self, session: Any) -> None:
        """Nothing to do at the end."""

    def _add_clear_nn(self, graph: Any, model_dir: Path, prefix: Path) -> None:
        flag = model_dir / CLEAR_NN_FLAG_FILE
        if flag.exists():
            logger.info("CustomRestoreListener: %s exists, NN already cleared", flag)
            return
        init_op = tf.compat.v1.global_variables_initializer()
        init_ops: tuple[Any, ...] = (init_op,)
        placeholders: dict[str, Any] = {}
        variables: dict[str, GraphVariable] = {}
        step_key = None
        if self.continue_training:
            step = tf.compat.v1.train.get_or_create_global_step(graph=graph)
            described = _describe_variable(step, False, True)
            with tf.compat.v1.name_scope(f"{PLACEHOLDER_SCOPE}/"):
                ph = tf.compat.v1.placeholder(step.dtype.base_dtype, step.shape, "global_step_ph")
            init_ops = (init_op, step.assign(ph, read_value=False))
            placeholders[described.name] = ph
            variables[described.name] = described
            step_key = described.key
        request = RestoreRequest(
            prefix, model_dir, True, init_ops, placeholders, variables, {}, step_key
        )
        graph.add_to_collection(CUSTOM_RESTORE_OP, request)

    def _add_alias_restore(self, graph: Any, model_dir: Path, ckpt: Checkpoint) -> None:
        model = describe_graph(graph)
        old = ckpt.specs()
        if _restores_plainly(old, model.variables.values()):
            logger.info("CustomRestoreListener: %s restores plainly, nothing to do", ckpt.prefix)
            return
        sources = self._plan_sources(ckpt, old, model)
        self.alias_map = sources
        by_name = {
            _node_name(v.name): v
            for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
        }
        placeholders: dict[str, Any] = {}
        assigns = []
        with tf.compat.v1.name_scope(f"{PLACEHOLDER_SCOPE}/"):
            for name in model.variables:
                var = by_name[name]
                ph = tf.compat.v1.placeholder(var.dtype.base_dtype, var.shape, name=name)
                placeholders[name] = ph
                assigns.append(var.assign(ph, read_value=False))
            init_op = tf.group(*assigns, name="assign_all")
        request = RestoreRequest(
            ckpt.prefix, model_dir, False, (init_op,), placeholders, model.variables, sources
        )
        graph.add_to_collection(CUSTOM_RESTORE_OP, request)

    def _plan_sources(
        self, ckpt: Checkpoint, old: Mapping[str, TensorSpec], model: ModelSpec
    ) -> dict[str, str]:
        prefix = ckpt.prefix
        plan = plan_aliases_by_name(
            old,
            model,
            old_names=object_names(ckpt),
            explicit=self.alias_map,
            rules=self.rules,
            auto=self.enable_alias_map_auto_gen,
        )
        if not decide(plan, allow_missing=False).accepted:
            problems = [_describe_unresolved(u) for u in plan.unresolved]
            problems += [f"{m.new_key} <- {m.old_key}: {m.what}" for m in plan.mismatched]
            shown = "; ".join(problems[:_MAX_LISTED])
            more = (
                f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
            )
            raise UnresolvedError(
                f"{prefix}: cannot restore {len(problems)} key(s) of the graph from this "
                f"checkpoint ({shown}{more}); pass them in alias_map or add rules",
                report=plan,
            )
        return {name: plan.variable_sources[name] for name in model.variables}


def _describe_unresolved(unresolved: Unresolved) -> str:
    text = f"{unresolved.new_key}: no source"
    if unresolved.suggested_entry is not None:
        text += f", best candidate {unresolved.suggested_entry[1]!r}"
    return text


# -- the restore side -------------------------------------------------------------


def restore(
    session: Any,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    saver: Any = None,
) -> RestoreAction:
    """Carry out the :class:`RestoreRequest` of ``session.graph``, then drop it.

    Args:
        session: a ``tf.compat.v1.Session`` on the graph the listener prepared.
        checkpoint: the checkpoint to restore from (a prefix, its ``.index``, or
            a model folder); the one the listener found when ``None``.
        saver: used when there is nothing custom to do (no request, exporting,
            or a checkpoint that restores plainly): ``saver.restore(session,
            prefix)``. Without it such a call leaves the variables alone.

    Returns:
        What was done.

    Raises:
        UnresolvedError: if an old tensor does not fit its variable.
        MissingInputError: if the checkpoint is gone.
        CorruptCheckpointError: if the checkpoint is damaged.
        OutputError: if the clear-NN flag file cannot be written.
    """

    def fallback(prefix: Path | None) -> RestoreAction:
        if saver is None or prefix is None:
            return RestoreAction.NONE
        saver.restore(session, str(locate_checkpoint(prefix)))
        return RestoreAction.SAVER

    return _restore(session, checkpoint, fallback)


def _restore(
    session: Any,
    checkpoint: str | os.PathLike[str] | None,
    fallback: Callable[[Path | None], RestoreAction],
) -> RestoreAction:
    graph = session.graph
    requests = graph.get_collection(CUSTOM_RESTORE_OP)
    given = None if checkpoint is None else Path(checkpoint)
    if is_exporting() or not requests:
        return fallback(given)
    request: RestoreRequest = requests[0]
    with open_checkpoint(request.checkpoint if given is None else given) as ckpt:
        if request.clear_nn:
            action = _clear_nn(session, request, ckpt, fallback)
        elif _restores_plainly(ckpt.specs(), request.variables.values()):
            logger.info("custom restore: %s restores plainly", ckpt.prefix)
            action = fallback(ckpt.prefix)
        else:
            values = read_variable_values(ckpt, request.variables, request.alias_map)
            feed = {request.placeholders[name]: value for name, value in values.items()}
            session.run(request.init_ops, feed_dict=feed)
            logger.info("custom restore: %d variables from %s", len(feed), ckpt.prefix)
            action = RestoreAction.ALIAS
    # get_collection_ref works on a finalized graph, unlike clear_collection.
    graph.get_collection_ref(CUSTOM_RESTORE_OP).clear()
    return action


def _clear_nn(
    session: Any,
    request: RestoreRequest,
    ckpt: Checkpoint,
    fallback: Callable[[Path | None], RestoreAction],
) -> RestoreAction:
    flag = request.model_dir / CLEAR_NN_FLAG_FILE
    if flag.exists():
        logger.info("custom restore: %s exists, NN already cleared", flag)
        return fallback(ckpt.prefix)
    session.run(request.init_ops[0])
    if request.global_step_key is not None:
        step = ckpt.read(request.global_step_key)
        (ph,) = request.placeholders.values()
        session.run(request.init_ops[1], feed_dict={ph: step})
        logger.info("custom restore: NN cleared, global step kept at %s", step)
    try:
        flag.write_text(CLEAR_NN_FLAG_TEXT)
    except OSError as err:
        raise OutputError(
            f"{flag}: cannot write the clear-NN flag file ({err.strerror}); a restart "
            "would clear the NN again (make the model folder writable)"
        ) from err
    return RestoreAction.CLEAR_NN


class CustomRestoreSaver(tf.compat.v1.train.Saver):  # type: ignore[misc]
    """A ``Saver`` whose ``restore`` carries out the graph's :class:`RestoreRequest`.

    Monolith's saver does the same. Give it to a ``Scaffold`` so that a
    ``MonitoredTrainingSession`` pointed at the old model folder restores it
    through the alias map instead of failing on renamed keys; with nothing
    custom to do it restores as a plain ``Saver``.
    """

    def restore(self, sess: Any, save_path: Any) -> None:
        """Restore ``save_path`` into ``sess``, through the graph's request if there is one."""

        def plain(prefix: Path | None) -> RestoreAction:
            super(CustomRestoreSaver, self).restore(sess, save_path)
            return RestoreAction.SAVER

        if sess is None or save_path is None:
            super().restore(sess, save_path)
            return
        _restore(sess, os.fsdecode(save_path), plain)


class CustomRestoreHook(tf.compat.v1.train.SessionRunHook):  # type: ignore[misc]
    """A ``SessionRunHook`` running a :class:`CustomRestoreListener`.

    ``begin`` (before the graph is finalized) prepares the restore;
    ``after_create_session`` (after variables are initialised or restored)
    carries it out.

    Args:
        listener: the listener to run.
    """

    def __init__(self, listener: CustomRestoreListener) -> None:
        self.listener = listener
        self.action: RestoreAction | None = None

    def begin(self) -> None:
        self.listener.begin()

    def after_create_session(self, session: Any, coord: Any) -> None:
        self.action = self.listener.after_create_session(session, coord)
