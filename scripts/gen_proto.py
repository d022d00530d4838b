"""Regenerate ckptmap/proto/ckptmap_tf_pb2.py (and its .pyi) from ckptmap_tf.proto.

Usage:  python scripts/gen_proto.py      (needs `pip install grpcio-tools`)
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "ckptmap" / "proto"


def main() -> int:
    args = [
        "protoc",
        f"--proto_path={PROTO_DIR}",
        f"--python_out={PROTO_DIR}",
        f"--pyi_out={PROTO_DIR}",
        str(PROTO_DIR / "ckptmap_tf.proto"),
    ]
    return protoc.main(args)


if __name__ == "__main__":
    sys.exit(main())
