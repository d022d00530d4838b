"""ckptmap.tf's restore listener on a TF2 object-based checkpoint: maps and rules in user names.

A TF1 training graph (the old Keras model's layers under variable scopes, the
first renamed ``proj``, and a global step) restores the Keras 3 and tf-keras
``old/ckpt`` of fixtures/make_tf2_objects.py in-graph. The alias map and the
rules name the old side as ``check`` and ``remap`` do: by user name, full
name or key. Every value equals what TensorFlow itself restores from the old
checkpoint into the old Keras model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_object_based_remap import FLAVOURS, GEN, restored_state

from ckptmap.errors import UnresolvedError

pytestmark = pytest.mark.tf

LAYERS = {"first": "proj", "mid": "tower/mid", "head": "tower/head"}
RULES = {
    "keras3": ["^proj/(.*)$=net/hidden/{}", "^(.*)$=net/{}"],
    "tfkeras": ["^proj/(.*)$=net/hidden/{}", "^tower/(.*)$={}"],
}
ITERATION = {"keras3": "adam/iteration", "tfkeras": "iteration"}  # the counter's full name


def build_graph(tf: Any) -> dict[str, Any]:
    """The TF1 graph's variables by name (in the default graph): the layers and global_step."""
    x = tf.zeros([1, GEN.INPUT_WIDTH])
    h = GEN.tf1_layer(tf, x, "proj", GEN.HIDDEN)
    with tf.compat.v1.variable_scope("tower"):
        GEN.tf1_layer(tf, GEN.tf1_layer(tf, h, "mid", GEN.MID), "head", GEN.HEAD)
    tf.compat.v1.train.get_or_create_global_step()
    return {v.op.name: v for v in tf.compat.v1.global_variables()}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_the_listener_restores_an_object_based_checkpoint_by_user_names(
    tf: Any, flavour: str
) -> None:
    import ckptmap.tf

    keras = GEN.import_keras(flavour)
    folder = FLAVOURS[flavour] / "old"
    want = restored_state(keras, "old", folder / GEN.PREFIX)
    with tf.Graph().as_default():
        variables = build_graph(tf)
        listener = ckptmap.tf.CustomRestoreListener(
            # the iteration by its full name; the rest by rules over user names
            alias_map={"global_step": ITERATION[flavour]},
            model_dir=folder,
            rules=RULES[flavour],
        )
        listener.begin()
        assert listener.alias_map is not None
        assert (
            listener.alias_map["global_step"] == "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"
        )
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            assert ckptmap.tf.restore(session) is ckptmap.tf.RestoreAction.ALIAS
            got = session.run(variables)
    assert sorted(got) == sorted(
        [f"{s}/{w}" for s in LAYERS.values() for w in ("kernel", "bias")] + ["global_step"]
    )
    for role, scope in LAYERS.items():
        for weight in ("kernel", "bias"):
            np.testing.assert_array_equal(got[f"{scope}/{weight}"], want[f"{role}/{weight}"])
    assert got["global_step"] == want["iteration"] == 1


def test_the_listener_refuses_an_unknown_user_name_naming_the_variable(tf: Any) -> None:
    import ckptmap.tf

    folder: Path = FLAVOURS["keras3"] / "old"
    with tf.Graph().as_default():
        build_graph(tf)
        listener = ckptmap.tf.CustomRestoreListener(model_dir=folder, rules=RULES["keras3"][:1])
        with pytest.raises(UnresolvedError) as err:
            listener.begin()
    assert "tower/mid/kernel: no source" in str(err.value)
