"""Export the diffusion-transformer denoisers that ML.ENERGY Benchmark v3 measured as weight-stripped ONNX graphs.

    python scripts/dit_graphs.py [--only NAME ...] [--force] [--list]

Writes ``data/graphs/<name>.onnx``, one row per graph in ``data/graphs/manifest.csv`` and one per model in
``data/graphs/diffusion_v3.csv`` (what a one-denoiser-pass training row needs: latent, text tokens, passes per
step). Optional dependencies: ``torch==2.13.0`` (CPU), ``diffusers`` (0.35.2 is what ML.ENERGY ran), ``onnxscript``.

How ML.ENERGY v3 ran them (github.com/ml-energy/benchmark @ c1d6557fbf7c7c495749b0fcf649f71774eabde9, tag v3.0,
``mlenergy/benchmark/diffusion/{benchmark,workloads}.py``; xfuser 0.4.5, diffusers 0.35.2, torch 2.9.1 in its
``uv.lock``): xDiT's ``xFuser*Pipeline`` in bfloat16 at 1024x1024, ``use_torch_compile=False``, steps from
``MODEL_CONFIGS`` (SD3.5 28, FLUX.1-dev 50, PixArt-Sigma 20, HunyuanDiT 50, SANA 20); prompt, size, steps and
seed are the only call arguments, so guidance scale and text length are the pipeline defaults. On one GPU xFuser
runs diffusers' own pipeline (``use_naive_forward`` in xfuser/model_executor/pipelines/base_pipeline.py @ 0.4.5:
no pipeline, CFG or sequence parallelism), so these are diffusers 0.35.2 defaults: classifier-free guidance with the
negative and positive prompts concatenated into one batch of 2 x batch_size (SD3 7.0, PixArt 4.5, SANA 4.5,
HunyuanDiT 5.0), while FLUX.1-dev is guidance-distilled (``guidance_scale`` 3.5 enters as an embedding;
``true_cfg_scale`` 1.0: one pass per step). Zeus measures each whole ``pipe(...)`` call (text encoders, every
denoising step, VAE decode and conversion to PIL; ``save_images`` defaults to True), 8 iterations for <= 30
steps and 4 otherwise, after xFuser's ``prepare_run`` warm-up and no further warm-up iterations; energy per image
is the window's energy over batch_size x iterations.

Each denoiser is built from its diffusers class with the published configuration (sources in ``scripts/dit_specs.py``) on the
``meta`` device (no weights are materialised), exported with ``torch.onnx.export(dynamo=True)`` at the measured
latent size with a symbolic batch ``N``, and its initializers become external-data pointers that are never
written (as ``export_graphs.strip_weights``). Reference counts come from PyTorch on the same meta model:
``FlopCounterMode`` FLOPs (math attention backend) at batch 1, and the learned parameters stored in the graph
(matched by name; buffers such as fixed position tables are not counted).
"""

from __future__ import annotations

import ast
import csv
import io
import itertools
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dit_specs import BENCH, COMMON_DIFFERENCE, SPECS, DiT
from export_graphs import (
    GRAPHS,
    _references,
    export_missing,
    export_parser,
    strip_weights,
)

from estimator.data.importers.mlenergy_diffusion import TABLE_COLUMNS as IMPORTER_COLUMNS

OPSET = 23
#: The dtype ML.ENERGY v3 ran every denoiser in (``torch_dtype`` of its pipelines): the graphs are exported in it,
#: so that the float32 islands diffusers computes in (upcasts, FP32LayerNorm, timestep embeddings) show.
RUN_DTYPE = "bfloat16"
TABLE = GRAPHS / "diffusion_v3.csv"
#: The columns of every ``data/graphs/diffusion*.csv``, as the importer reads them (VAE-decoder graph before the
#: free text).
TABLE_COLUMNS = (*IMPORTER_COLUMNS[:-1], "vae_graph", IMPORTER_COLUMNS[-1])
#: The VAE decode each model runs, priced by a committed decoder graph; SANA's DC-AE has none (its rows drop).
VAE_1024 = "data/graphs/vae-decoder-1024.onnx"
VAE_NOTES = {
    "sd3": "VAE decode priced with the 4-channel SD/SDXL decoder graph (vae-decoder-1024): this model's 16-channel "
    "AutoencoderKL differs only in its first convolution (16 instead of 4 input channels, under 0.02% of the "
    "decoder's FLOPs)",
    "pixart": "VAE decode: the SDXL AutoencoderKL decoder (vae-decoder-1024, same architecture)",
    "hunyuan": "VAE decode: the SDXL AutoencoderKL decoder (vae-decoder-1024, same architecture)",
    "sana": "no VAE-decoder graph: SANA decodes with DC-AE (f32c32), not built here, so its rows are dropped",
}
VAE_NOTES["flux"] = VAE_NOTES["sd3"]

# ----------------------------------------------------------------------------------------------------------
# Building: each denoiser behind a wrapper whose positional tensor inputs are the graph's inputs
# ----------------------------------------------------------------------------------------------------------


def _inputs(spec: DiT, batch: int, device: str) -> tuple[list[str], tuple]:
    """(input names, example tensors at ``batch``) of ``spec``'s wrapper, on ``device``."""
    import torch

    c, h, w = spec.latent
    run = getattr(torch, RUN_DTYPE)
    f = {"dtype": run, "device": device}  # latents and text embeddings: the pipeline's dtype
    # The timestep as each pipeline passes it: float32 from the scheduler (SD3, PixArt, SANA), cast to the
    # latents' dtype by FLUX (``t.expand(...).to(latents.dtype)``) and HunyuanDiT (``t_expand``).
    t = torch.full((batch,), 500.0, dtype=torch.float32, device=device)
    if spec.kind in ("flux", "hunyuan"):
        t = t.to(run)
    if spec.kind == "sd3":
        return ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"], (
            torch.randn(batch, c, h, w, **f),
            torch.randn(batch, spec.text_tokens, spec.config["joint_attention_dim"], **f),
            torch.randn(batch, spec.config["pooled_projection_dim"], **f),
            t,
        )
    if spec.kind == "flux":
        return ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "guidance"], (
            torch.randn(batch, h * w, c, **f),
            torch.randn(batch, spec.text_tokens, spec.config["joint_attention_dim"], **f),
            torch.randn(batch, spec.config["pooled_projection_dim"], **f),
            t / 1000,
            torch.full((batch,), 3.5, dtype=torch.float32, device=device),  # FluxPipeline's guidance
        )
    if spec.kind in ("pixart", "sana"):  # no prompt mask: see NO_MASK in dit_specs.py
        width = spec.config["caption_channels"]
        return ["hidden_states", "encoder_hidden_states", "timestep"], (
            torch.randn(batch, c, h, w, **f),
            torch.randn(batch, spec.text_tokens, width, **f),
            t,
        )
    if spec.kind == "hunyuan":
        n1, n2 = spec.config["text_len"], spec.config["text_len_t5"]
        names = ["hidden_states", "timestep", "encoder_hidden_states", "text_embedding_mask"]
        names += ["encoder_hidden_states_t5", "text_embedding_mask_t5"]
        return names, (
            torch.randn(batch, c, h, w, **f),
            t,
            torch.randn(batch, n1, spec.config["cross_attention_dim"], **f),
            torch.ones(batch, n1, dtype=torch.int64, device=device),
            torch.randn(batch, n2, spec.config["cross_attention_dim_t5"], **f),
            torch.ones(batch, n2, dtype=torch.int64, device=device),
        )
    raise ValueError(f"unknown kind {spec.kind!r}")


def _wrapper(spec: DiT, model):
    """A module that calls ``model`` as its pipeline does, from positional tensors, returning the noise tensor."""
    import torch

    class Denoiser(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            if spec.kind == "flux":  # FluxPipeline._prepare_latent_image_ids: (row, col) of each packed token
                _, h, w = spec.latent
                ids = torch.zeros(h, w, 3)
                ids[..., 1] += torch.arange(h)[:, None]
                ids[..., 2] += torch.arange(w)[None, :]
                run = getattr(torch, RUN_DTYPE)  # the ids in the pipeline's dtype, as FluxPipeline makes them
                self.register_buffer("img_ids", ids.reshape(h * w, 3).to(run), persistent=False)
                self.register_buffer("txt_ids", torch.zeros(spec.text_tokens, 3, dtype=run), persistent=False)
            if (
                spec.kind == "hunyuan"
            ):  # HunyuanDiTPipeline: 2D RoPE over the patch grid, base size 512 // 8 // 2
                from diffusers.models.embeddings import get_2d_rotary_pos_embed

                grid = spec.latent[1] // spec.config["patch_size"]
                # get_resize_crop_region_for_grid((grid, grid), base 32) of the pipeline: a square grid resizes
                # to the whole 32 x 32 base region, ((0, 0), (32, 32)) (not imported: the pipeline module
                # imports tokenizers that recent transformers no longer has)
                crops = ((0, 0), (512 // 8 // 2, 512 // 8 // 2))
                head = spec.config["hidden_size"] // spec.config["num_attention_heads"]
                cos, sin = get_2d_rotary_pos_embed(head, crops, (grid, grid), output_type="pt")
                self.register_buffer("rope_cos", cos.float(), persistent=False)
                self.register_buffer("rope_sin", sin.float(), persistent=False)

        def forward(self, *xs):
            m = self.model
            if spec.kind == "sd3":
                return m(xs[0], xs[1], xs[2], xs[3], return_dict=False)[0]
            if spec.kind == "flux":
                x, text, pooled, t, g = xs
                return m(x, text, pooled, t, self.img_ids, self.txt_ids, g, return_dict=False)[0]
            if spec.kind == "pixart":
                x, text, t = xs
                cond = {"resolution": None, "aspect_ratio": None}
                return m(x, text, t, added_cond_kwargs=cond, return_dict=False)[0]
            if spec.kind == "sana":
                x, text, t = xs
                return m(x, text, t, return_dict=False)[0]
            x, t, text, mask, text5, mask5 = xs
            rope = (self.rope_cos, self.rope_sin)
            out = m(x, t, text, mask, text5, mask5, image_rotary_emb=rope, return_dict=False)[0]
            return out

    return Denoiser().eval()


def build(spec: DiT, device: str = "meta", config: dict | None = None):
    """(wrapped denoiser on ``device``, input names); ``config`` overrides keys of the published one."""
    import diffusers
    import torch

    cls = getattr(diffusers, spec.cls)
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in {**spec.config, **(config or {})}.items()}
    with torch.device(device):
        model = cls(**cfg)
    # As from_pretrained(torch_dtype=torch.bfloat16) loads it: every parameter and buffer in bfloat16 (none of
    # these classes names _keep_in_fp32_modules in diffusers 0.35.2).
    model.to(getattr(torch, RUN_DTYPE)).eval().requires_grad_(False)
    wrapped = _wrapper(spec, model)
    if device == "meta":  # buffers made on CPU (RoPE tables, ids) join the meta model
        wrapped = wrapped.to("meta")
    return wrapped, _inputs(spec, 1, device)[0]


# ----------------------------------------------------------------------------------------------------------
# Export, counts and the tables
# ----------------------------------------------------------------------------------------------------------


def _no_weights(node) -> bool | None:
    """Constant folding never evaluates a node that reads an unwritten weight (it would invent its values)."""
    for value in node.inputs:
        if value is not None and type(value.const_value).__name__ == "ExternalTensor":
            return False
    return None


def _module_names(model_ir) -> None:
    """Prefix each node's name with its module path, TorchScript style (``/transformer_blocks.0/attn1/...``),
    from the exporter's name scopes (``['', 'model', 'model.transformer_blocks.0', ...]``), before the metadata
    that holds them is cleared."""
    for node in model_ir.graph:
        scopes = ast.literal_eval(node.metadata_props.get("pkg.torch.onnx.name_scopes", "[]"))[:-1]
        parts = [child.removeprefix(parent + ".") for parent, child in itertools.pairwise(scopes[1:])]
        node.name = "/" + "/".join([*parts, node.name]) if parts else node.name


def _export(model, names: list[str], args: tuple, path: Path) -> None:
    """torch.onnx.export(dynamo=True) with a symbolic batch ``N``; initializers become unwritten external data."""
    import onnx_ir as ir
    import onnxscript.optimizer
    import torch

    batch = torch.export.Dim("N", min=1, max=1024)
    shapes = (tuple({0: batch} for _ in args),)  # forward(*xs): one varargs entry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=names,
            output_names=["noise_pred"],
            dynamic_shapes=shapes,
            optimize=False,  # the optimiser folds constants, and meta tensors have no values
            verbose=False,
        )
    graph = program.model.graph
    offset = 0
    for value in graph.initializers.values():
        tensor = value.const_value
        raw = getattr(tensor, "raw", None)
        if not (isinstance(raw, torch.Tensor) and raw.is_meta):
            continue  # the exporter's own constants (shapes, axes, scalars) keep their values
        dtype, shape = tensor.dtype, ir.Shape(list(tensor.shape))
        length = int(torch.Size(list(shape)).numel()) * dtype.itemsize  # every weight, however small
        value.const_value = ir.ExternalTensor(
            f"{path.name}.data", offset, length, dtype, shape=shape, name=value.name
        )
        offset += length
    # Part of the exporter's optimiser, once no tensor is on meta: inlining, constant folding (which also turns
    # chunk's SplitToSequence + SequenceAt into Split), identities and dead nodes. Its pattern rewriter reads
    # weight values and is left out.
    model_ir = program.model
    common = ir.passes.common
    common.InlinePass()(model_ir)
    onnxscript.optimizer.fold_constants(model_ir, should_fold=_no_weights)
    common.IdentityEliminationPass()(model_ir)
    common.RemoveUnusedNodesPass()(model_ir)
    common.RemoveUnusedFunctionsPass()(model_ir)
    _module_names(model_ir)
    common.ClearMetadataAndDocStringPass()(model_ir)  # stack traces name files of the machine that exported
    proto = ir.to_proto(model_ir)
    strip_weights(proto, f"{path.name}.data")
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, path)


def _dims(t) -> str:
    return "x".join(["N", *map(str, t.shape[1:])])


def export_one(spec: DiT) -> dict[str, str]:
    """Build on meta, count at batch 1, export with a symbolic batch; returns the manifest row."""
    import diffusers
    import onnx
    import torch

    model, names = build(spec)
    flops, _ = _references(model, _inputs(spec, 1, "meta")[1])
    args = _inputs(spec, 2, "meta")[1]  # batch 2 so that the exporter cannot specialise N to 1
    path = GRAPHS / f"{spec.name}.onnx"
    _export(model, names, args, path)
    # Learned parameters that reach the graph, by name (HunyuanDiT's text pooler hands its projections' weights
    # to F.multi_head_attention_forward without calling their modules, which a count by called module misses).
    stored = {t.name for t in onnx.load(str(path), load_external_data=False).graph.initializer}
    params = sum(p.numel() for n, p in model.named_parameters() if n in stored)
    unused = [n for n, _ in model.named_parameters() if n not in stored]
    if unused:
        print(f"{spec.name}: {len(unused)} parameters not in the graph, e.g. {unused[:3]}", flush=True)
    inputs = ", ".join(f"{n}={_dims(a)}" for n, a in zip(names, args, strict=True))
    return {
        "name": spec.name,
        "source": "diffusers",
        "constructor": f"diffusers.{spec.cls}(**config) on the meta device; config: scripts/dit_graphs.py SPECS",
        "input": f"{inputs}; references at N=1",
        "opset": str(OPSET),
        "exporter": "torch.onnx.export(dynamo=True)",
        "torch_version": torch.__version__,
        "library_version": f"diffusers {diffusers.__version__}",
        "reference_flops": str(flops),
        "reference_params": str(params),
        "measured_as": spec.model_id,
        "difference": f"{BENCH}: {spec.difference}; {COMMON_DIFFERENCE}",
    }


def table_row(spec: DiT) -> dict[str, str]:
    """The row of ``data/graphs/diffusion_v3.csv`` for ``spec``."""
    return {
        "model_id": spec.model_id,
        "graph": f"data/graphs/{spec.name}.onnx",
        "image_px": "1024",
        "latent": "x".join(map(str, spec.latent)),
        "text_tokens": str(spec.text_tokens),
        "passes_per_step": str(spec.passes_per_step),
        "dtype": "bfloat16",
        "vae_graph": "" if spec.kind == "sana" else VAE_1024,
        "difference": f"{spec.difference}; {COMMON_DIFFERENCE}; {VAE_NOTES[spec.kind]}",
    }


def write_table(path: Path = TABLE) -> None:
    """``diffusion_v3.csv``: one row per model whose graph is committed, in :data:`SPECS` order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for spec in SPECS:
        if (GRAPHS / f"{spec.name}.onnx").exists():
            writer.writerow(table_row(spec))
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Export the denoisers of :data:`SPECS` not yet in the manifest (all with ``--force``), then the table."""
    opts = export_parser(__doc__.split("\n\n")[0], "denoisers").parse_args(argv)
    if opts.list:
        for s in SPECS:
            print(f"{s.name:28s} {s.cls:26s} {'x'.join(map(str, s.latent)):10s} {s.model_id}")
        return 0
    status = export_missing(SPECS, export_one, opts.only, opts.force)
    if status == 0:
        write_table()
    return status


if __name__ == "__main__":
    sys.exit(main())
