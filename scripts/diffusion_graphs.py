"""Export the denoisers (and VAE decoders) of ML.ENERGY v2's text-to-image models as weight-stripped ONNX graphs.

    python scripts/diffusion_graphs.py [--only NAME ...] [--force] [--list]

Writes ``data/graphs/<name>.onnx`` and one row per graph in ``data/graphs/manifest.csv`` (the manifest of
``scripts/export_graphs.py``, whose reading, writing and reference-count helpers are reused here). What each
measured model runs (resolution, passes per step, dtype) is in ``data/graphs/diffusion.csv``.

Optional dependencies (not needed by the estimator or its tests): ``torch==2.13.0`` (CPU), ``diffusers``,
``onnxscript``. A fp32 SDXL UNet holds ~10 GB of weights, so nothing here holds a weight: each network is built on
PyTorch's ``meta`` device from the architecture values of its original release (cited per spec), in float16 as
ML.ENERGY ran it, and exported with ``torch.onnx.export(dynamo=True)`` (constant folding off: meta tensors have no
data) with a symbolic batch; every parameter then becomes an initializer stub that keeps its name, type and dims and
points at an external file that is not written (``load_graph`` never reads weight data). Peak memory < 1.5 GiB.

Reference counts (manifest columns), at batch 1 on meta tensors: ``reference_flops`` from
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add) under the math attention backend, and
``reference_params`` the parameters of the modules that run (``export_graphs._references``).
"""

from __future__ import annotations

import math
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_graphs import GRAPHS, _references, export_missing, export_parser

OPSET = 18
TEXT_TOKENS = 77  # CLIP tokenizer max length, padded to it by every SD / SDXL pipeline

# Original-release architecture values (diffusers' UNet2DConditionModel keyword names, mapped as diffusers'
# single-file conversion maps them: num_head_channels 64 -> attention_head_dim = channels // 64).
#: SD 1.x: github.com/CompVis/stable-diffusion @ 21f890f configs/stable-diffusion/v1-inference.yaml (model_channels
#: 320, channel_mult [1,2,4,4], attention_resolutions [4,2,1], num_res_blocks 2, num_heads 8, context_dim 768).
SD1_UNET: dict = {"cross_attention_dim": 768, "attention_head_dim": 8}
#: SD 2.x: github.com/Stability-AI/stablediffusion @ cf1d67a configs/stable-diffusion/v2-inference-v.yaml (as SD 1.x
#: but num_head_channels 64, use_linear_in_transformer, context_dim 1024); the released diffusers config
#: (huggingface.co/stabilityai/stable-diffusion-2-1 commit a1b4fa4, unet_config.json) has the same values and
#: sample_size 96 (768 px).
SD2_UNET: dict = {
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
}
#: SDXL base: github.com/Stability-AI/generative-models @ 0ad7de9 configs/inference/sd_xl_base.yaml (channel_mult
#: [1,2,4], attention_resolutions [4,2], transformer_depth [1,2,10], num_head_channels 64, context_dim 2048,
#: adm_in_channels 2816 = pooled text 1280 + 6 size/crop values x 256-channel Fourier features).
SDXL_UNET: dict = {
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
#: The KL autoencoder's decoder of SD 1.x / 2.x / SDXL (same layout in all three yaml files: ch 128, ch_mult
#: [1,2,4,4], num_res_blocks 2, z_channels 4); diffusers' AutoencoderKL defaults take block_out_channels below.
VAE: dict = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
}


@dataclass(frozen=True)
class DiffusionSpec:
    """One graph to export: a UNet denoiser or a VAE decoder at a latent resolution.

    Attributes:
        name: the graph's file stem under data/graphs/.
        kind: "unet" or "vae-decoder".
        config: diffusers constructor keywords.
        latent: (channels, height, width) of the latent the network sees.
        measured_as: the ML.ENERGY model ids it stands for.
        difference: what differs from what was measured.
        cite: where the configuration comes from.
    """

    name: str
    kind: str
    config: dict = field(default_factory=dict)
    latent: tuple[int, int, int] = (4, 64, 64)
    measured_as: str = ""
    difference: str = ""
    cite: str = ""


SPECS: tuple[DiffusionSpec, ...] = (
    DiffusionSpec(
        "unet-sd15-512",
        "unet",
        SD1_UNET,
        (4, 64, 64),
        "prompthero/openjourney-v4",
        "SD 1.5 UNet (openjourney-v4 is a fine-tune of SD 1.5: same architecture, other weights)",
        "CompVis/stable-diffusion@21f890f v1-inference.yaml",
    ),
    DiffusionSpec(
        "unet-sd21-768",
        "unet",
        SD2_UNET,
        (4, 96, 96),
        "stabilityai/stable-diffusion-2-1",
        "",
        "Stability-AI/stablediffusion@cf1d67a v2-inference-v.yaml",
    ),
    DiffusionSpec(
        "unet-sdxl-1024",
        "unet",
        SDXL_UNET,
        (4, 128, 128),
        "stabilityai/stable-diffusion-xl-base-1.0",
        "",
        "Stability-AI/generative-models@0ad7de9 sd_xl_base.yaml",
    ),
    DiffusionSpec(
        "unet-sdxl-512",
        "unet",
        SDXL_UNET,
        (4, 64, 64),
        "stabilityai/sdxl-turbo",
        "SDXL base UNet layout at 512 px (sdxl-turbo is SDXL distilled by ADD: same architecture, other weights)",
        "Stability-AI/generative-models@0ad7de9 sd_xl_base.yaml",
    ),
    DiffusionSpec(
        "vae-decoder-512", "vae-decoder", VAE, (4, 64, 64), "", "", "SD / SDXL yaml first_stage_config"
    ),
    DiffusionSpec(
        "vae-decoder-768", "vae-decoder", VAE, (4, 96, 96), "", "", "SD / SDXL yaml first_stage_config"
    ),
    DiffusionSpec(
        "vae-decoder-1024", "vae-decoder", VAE, (4, 128, 128), "", "", "SD / SDXL yaml first_stage_config"
    ),
)


def _build(spec: DiffusionSpec):
    """(module on the meta device in float16, example args, input names, dynamic shapes, constructor text)."""
    import diffusers
    import torch

    half = torch.float16
    if spec.kind == "vae-decoder":
        with torch.device("meta"):
            vae = diffusers.AutoencoderKL(**spec.config).to(half).eval()

        class Decoder(torch.nn.Module):
            def __init__(self, vae):
                super().__init__()
                self.vae = vae

            def forward(self, latent):
                return self.vae.decoder(self.vae.post_quant_conv(latent))  # AutoencoderKL._decode

        args = (torch.randn(1, *spec.latent, device="meta", dtype=half),)
        text = f"diffusers.AutoencoderKL(**{spec.config}): post_quant_conv + decoder"
        return Decoder(vae), args, ["latent"], text
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(**spec.config).to(half).eval()
    sdxl = spec.config.get("addition_embed_type") == "text_time"

    class Denoiser(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    class DenoiserXL(Denoiser):
        def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
            extra = {"text_embeds": text_embeds, "time_ids": time_ids}
            return self.unet(
                sample, timestep, encoder_hidden_states, added_cond_kwargs=extra, return_dict=False
            )[0]

    meta = {"device": "meta", "dtype": half}
    args = [
        torch.randn(1, *spec.latent, **meta),
        torch.ones(1, **meta),
        torch.randn(1, TEXT_TOKENS, spec.config["cross_attention_dim"], **meta),
    ]
    names = ["sample", "timestep", "encoder_hidden_states"]
    if sdxl:
        args += [torch.randn(1, 1280, **meta), torch.randn(1, 6, **meta)]
        names += ["text_embeds", "time_ids"]
    return (
        (DenoiserXL if sdxl else Denoiser)(unet),
        tuple(args),
        names,
        f"diffusers.UNet2DConditionModel(**{spec.config})",
    )


def _export(model, args, names, path: Path, symbolic_batch: bool = True) -> None:
    """dynamo export (with a symbolic batch unless ``symbolic_batch`` is false), then every parameter as a stub initializer (external data, not
    written); metadata (source locations) dropped to keep the file small."""
    import onnx
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=names,
            dynamic_shapes=tuple({0: batch} for _ in names) if symbolic_batch else None,
            optimize=False,
        )
    stubs = [(n, v.dtype, [int(d) for d in v.shape]) for n, v in program.model.graph.initializers.items()]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        program.save(str(raw), include_initializers=False)
        proto = onnx.load(str(raw), load_external_data=False)
    _sequences_to_split(proto)
    for node in proto.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    offset = 0
    for name, dtype, dims in stubs:
        tensor = onnx.TensorProto(name=name, data_type=int(dtype), dims=dims)
        nbytes = math.prod(dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (
            ("location", f"{path.name}.data"),
            ("offset", str(offset)),
            ("length", str(nbytes)),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        proto.graph.initializer.append(tensor)
        offset += nbytes
    path.write_bytes(proto.SerializeToString())


def _sequences_to_split(proto) -> None:
    """Rewrite ``SplitToSequence(x, c)`` read only by ``SequenceAt(seq, 0..k-1)`` (torch's ``chunk``, e.g. GEGLU's)
    as one ``Split(x, [c] * k)`` whose outputs are the SequenceAt outputs: the same tensors, without sequence
    types. Raises when a split has another reader, a non-constant index, or indices other than 0..k-1."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute[0].name == "value"
    }
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    drop: set[str] = set()  # outputs of the SequenceAt nodes replaced
    keep = []
    for node in graph.node:
        if node.op_type == "SequenceAt" and node.output[0] in drop:
            continue
        if node.op_type != "SplitToSequence":
            keep.append(node)
            continue
        users = readers.get(node.output[0], [])
        index = {
            int(consts[u.input[1]]): u for u in users if u.op_type == "SequenceAt" and u.input[1] in consts
        }
        chunk = consts.get(node.input[1]) if len(node.input) > 1 else None
        if (
            len(index) != len(users)
            or sorted(index) != list(range(len(index)))
            or chunk is None
            or chunk.ndim
        ):
            raise ValueError(f"{node.name}: SplitToSequence not in the chunk pattern this rewrite knows")
        axis = next(a.i for a in node.attribute if a.name == "axis")
        sizes = numpy_helper.from_array(np.full(len(index), int(chunk), dtype=np.int64), f"{node.name}_sizes")
        graph.initializer.append(sizes)
        outputs = [index[i].output[0] for i in range(len(index))]
        keep.append(
            onnx.helper.make_node("Split", [node.input[0], sizes.name], outputs, node.name, axis=axis)
        )
        drop.update(outputs)
    del graph.node[:]
    graph.node.extend(keep)


def export_one(spec: DiffusionSpec) -> dict[str, str]:
    """Build, count and export one network; returns its manifest row."""
    import diffusers
    import torch

    model, args, names, constructor = _build(spec)
    flops, params = _references(model, args)
    # The VAE decoder exports at batch 1 only (a size guard in diffusers' decoder pins a symbolic batch to <= 2);
    # its cost is per image, and the importer multiplies it by the batch.
    unet = spec.kind == "unet"
    _export(model, args, names, GRAPHS / f"{spec.name}.onnx", symbolic_batch=unet)
    latent = "x".join(map(str, spec.latent))
    inputs = f"{names[0]}={'N' if unet else '1'}x{latent}"
    if unet:
        inputs += f", timestep=N, encoder_hidden_states=Nx{TEXT_TOKENS}x{spec.config['cross_attention_dim']}"
        if len(names) > 3:
            inputs += ", text_embeds=Nx1280, time_ids=Nx6"
    return {
        "name": spec.name,
        "source": "diffusers",
        "constructor": f"{constructor} in float16 on the meta device; config from {spec.cite}",
        "input": f"{inputs}; references at N=1",
        "opset": str(OPSET),
        "exporter": "torch.onnx.export(dynamo=True, optimize=False), parameters as external-data stubs",
        "torch_version": torch.__version__,
        "library_version": f"diffusers {diffusers.__version__}",
        "reference_flops": str(flops),
        "reference_params": str(params),
        "measured_as": spec.measured_as,
        "difference": spec.difference,
    }


def main(argv: list[str] | None = None) -> int:
    """Export the graphs of :data:`SPECS` not yet in the manifest (all with ``--force``)."""
    opts = export_parser(__doc__.split("\n\n")[0], "graphs").parse_args(argv)
    if opts.list:
        for s in SPECS:
            print(f"{s.name:20s} {s.kind:12s} {'x'.join(map(str, s.latent)):10s} {s.measured_as}")
        return 0
    return export_missing(SPECS, export_one, opts.only, opts.force)


if __name__ == "__main__":
    sys.exit(main())
