"""``python -m ckptmap``: the same command group as the ``ckptmap`` script."""

from ckptmap.cli import main

if __name__ == "__main__":
    main(prog_name="ckptmap")
