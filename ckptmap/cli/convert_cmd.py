"""``ckptmap convert``: export a checkpoint to a zarr v3 store."""

from __future__ import annotations

import json

import click

from ckptmap.cli._output import console, reported_errors
from ckptmap.cli._render import human_bytes
from ckptmap.cli.options import ConvertOptions, click_options, config_option, resolve_click
from ckptmap.errors import UsageError


@click.command("convert")
@click_options(ConvertOptions)
@config_option()
@click.pass_context
def convert_command(ctx: click.Context, /, **_: object) -> None:
    """Export a checkpoint to a zarr v3 store, one array per tensor.

    Partitioned tensors are merged into one array; dtypes are kept (bfloat16
    stays bfloat16). Each array carries the original key, TensorFlow dtype,
    full shape and slice layout as attributes, and the root group holds a
    manifest of every key. A local store appears only when complete (it is
    written to a temporary folder and renamed); a store at a URL is complete
    when its manifest (the root zarr.json) exists. Such a store can be read
    back as a checkpoint by ckptmap.

    \b
    Examples:
      ckptmap convert --old fixtures/ffm_v1 --to zarr3 --out /tmp/ffm_v1.zarr
      ckptmap convert --old fixtures/ffm_v1 --to zarr3 --ocdbt --out /tmp/ffm_v1.ocdbt
      ckptmap convert --old ckpt/model.ckpt-100 --to zarr3 --out gs://bucket/model.zarr --force
      ckptmap convert --old fixtures/dtype_zoo/zoo --to zarr3 --out /tmp/zoo.zarr --json
    """
    from ckptmap.convert import convert

    with reported_errors():
        opts = resolve_click(ctx, ConvertOptions).options
        if opts.step is not None and opts.old.name.endswith(".index"):
            raise UsageError("--step cannot be used with an .index path; pass the model folder")
        result = convert(
            opts.old,
            opts.out,
            to=opts.to.value,
            ocdbt=opts.ocdbt,
            step=opts.step,
            chunk_bytes=max(1, int(opts.chunk_mib * 1024 * 1024)),
            force=opts.force,
        )
    if opts.json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    layout = f"{result.to}, OCDBT" if result.ocdbt else result.to
    size = "" if result.store_bytes is None else f", {human_bytes(result.store_bytes)} on disk"
    console.print(
        f"wrote {result.arrays} arrays ({human_bytes(result.tensor_bytes)} of tensors{size}) "
        f"from {result.source} to {result.out} ({layout})"
    )
