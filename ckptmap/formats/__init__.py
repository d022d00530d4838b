"""Format facts, one codec each, shared by the readers and the writers.

Nothing here opens a file; every module encodes and decodes bytes or text:

* :mod:`~ckptmap.formats.crc`: CRC-32C and TensorFlow's masked form of it
  (tf-checkpoint-format.md §2.2);
* :mod:`~ckptmap.formats.table`: the ``.index`` table's constants and varints
  (§2.1, §3) and the bundle format version (§4.1);
* :mod:`~ckptmap.formats.slice_key`: the index key of one stored slice (§6.4);
* :mod:`~ckptmap.formats.string_layout`: how a string tensor is stored (§5.2);
* :mod:`~ckptmap.formats.state_file`: the ``checkpoint`` state file (§1.2);
* :mod:`~ckptmap.formats.object_graph`: the key of a TF2 checkpoint's object
  graph (§10.2);
* :mod:`~ckptmap.formats.graph_head`: the op types a ``.meta`` or
  ``saved_model.pb`` declares before its graph (§9.6);
* :mod:`~ckptmap.formats.zarr_layout`: the layout of a store written by
  ``ckptmap convert``.
"""
