"""``ckptmap convert``: export a checkpoint to a zarr v3 store, safetensors or npz."""

from __future__ import annotations

import json

import click

from ckptmap.cli._output import console, reported_errors
from ckptmap.cli._render import human_bytes
from ckptmap.cli.options import ConvertOptions, click_options, config_option, resolve_click
from ckptmap.cli.options.commands import byte_size
from ckptmap.errors import UsageError


@click.command("convert")
@click_options(ConvertOptions)
@config_option()
@click.pass_context
def convert_command(ctx: click.Context, /, **_: object) -> None:
    """Export a checkpoint to a zarr v3 store, safetensors or npz, one array per tensor.

    Partitioned tensors are merged into one array; dtypes are kept (bfloat16
    stays bfloat16). Each array carries the original key, TensorFlow dtype,
    full shape and slice layout (zarr3: attributes and a root manifest;
    safetensors, npz: the ckptmap manifest), so the output can be read back as
    a checkpoint by ckptmap and remapped into a TensorFlow model. A local
    output appears only when complete; a zarr store at a URL is complete when
    its manifest (the root zarr.json) exists.

    safetensors: --out x.safetensors or a folder (model.safetensors in it);
    past --max-shard-size, shards model-00001-of-0000N.safetensors with a
    model.safetensors.index.json. npz: --out x.npz or a folder (model.npz).
    Strings (and, in safetensors, complex numbers) are refused unless
    --skip-unsupported leaves them out.

    \b
    Examples:
      ckptmap convert --old fixtures/ffm_v1 --to zarr3 --out /tmp/ffm_v1.zarr
      ckptmap convert --old fixtures/ffm_v1 --to zarr3 --ocdbt --out /tmp/ffm_v1.ocdbt
      ckptmap convert --old ckpt/model.ckpt-100 --to zarr3 --out gs://bucket/model.zarr --force
      ckptmap convert --old fixtures/dtype_zoo/zoo --to zarr3 --out /tmp/zoo.zarr --json
      ckptmap convert --old fixtures/ffm_v1 --to safetensors --out /tmp/ffm_v1/
      ckptmap convert --old ckpt/ --to safetensors --max-shard-size 2GB --out hf_model/
      ckptmap convert --old fixtures/ffm_v1 --to npz --out /tmp/ffm_v1.npz
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
            max_shard_size=byte_size(opts.max_shard_size),
            skip_unsupported=opts.skip_unsupported,
        )
    if opts.json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    layout = f"{result.to}, OCDBT" if result.ocdbt else result.to
    if len(result.files) > 1:
        layout += f", {len(result.files) - 1} shards and an index"
    size = "" if result.store_bytes is None else f", {human_bytes(result.store_bytes)} on disk"
    copied = ""
    if result.byte_copied is not None:
        copied = f"; {result.byte_copied} byte-copied, {result.assembled} assembled"
    console.print(
        f"wrote {result.arrays} arrays ({human_bytes(result.tensor_bytes)} of tensors{size}"
        f"{copied}) from {result.source} to {result.out} ({layout})"
    )
    if result.skipped:
        shown = ", ".join(result.skipped[:10]) + (", ..." if len(result.skipped) > 10 else "")
        console.print(f"left out {len(result.skipped)} tensors {result.to} cannot hold: {shown}")
