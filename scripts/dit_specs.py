"""The diffusion-transformer denoisers ML.ENERGY Benchmark v3 measured, as specs for ``scripts/dit_graphs.py``:
each one's diffusers class, published configuration (with its source), inputs, and how the benchmark ran it.
"""

from __future__ import annotations

from dataclasses import dataclass

BENCH = (
    "ML.ENERGY Benchmark v3.0 (github.com/ml-energy/benchmark @ c1d6557), diffusers 0.35.2 defaults on 1 GPU"
)
DIFFUSERS = "github.com/huggingface/diffusers @ 58eb52c0803ea9af3abec60841c2a093bdf1f951"
NO_MASK = (
    "the prompt attention mask is not passed (the symbolic-batch export fails in diffusers' mask reshaping):"
    " the graph lacks one bias add per cross-attention score"
)
COMMON_DIFFERENCE = (
    "denoiser only (text encoders, VAE decode and PIL conversion are in the measured window but not in the graph);"
    " exported in bfloat16 as run, diffusers' float32 upcasts explicit (bind dtype bfloat16); one graph call = one"
    " batched pass"
)


@dataclass(frozen=True)
class DiT:
    """One denoiser: its diffusers class and published configuration, its inputs, and what ML.ENERGY ran."""

    name: str
    model_id: str
    cls: str
    config: dict
    kind: str  # sd3 | flux | pixart | sana | hunyuan: which call signature
    latent: tuple[int, int, int]  # C, H, W the denoiser sees (FLUX: packed tokens, channels)
    text_tokens: int
    passes_per_step: int
    published_params: float  # as published, in parameters
    source: str
    difference: str = ""


SD3_CFG = "SD3 pipeline guidance_scale 7.0 > 1: negative and positive prompts batched (passes_per_step 2)"
SPECS: list[DiT] = [
    DiT(
        "dit-sd3.5-medium",
        "stabilityai/stable-diffusion-3.5-medium",
        "SD3Transformer2DModel",
        {
            "sample_size": 128,
            "patch_size": 2,
            "in_channels": 16,
            "num_layers": 24,
            "attention_head_dim": 64,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "caption_projection_dim": 1536,
            "pooled_projection_dim": 2048,
            "out_channels": 16,
            "pos_embed_max_size": 384,
            "dual_attention_layers": tuple(range(13)),
            "qk_norm": "rms_norm",
        },
        "sd3",
        (16, 128, 128),
        77 + 256,
        2,
        2.5e9,
        "transformer/config.json of the HF repo (values as reproduced in public code; structure as"
        f" scripts/convert_sd3_to_diffusers.py, {DIFFUSERS}); 2.5B: Stability AI model card",
        f"text = 77 CLIP + 256 T5 tokens (max_sequence_length 256); {SD3_CFG}",
    ),
    DiT(
        "dit-sd3.5-large",
        "stabilityai/stable-diffusion-3.5-large",
        "SD3Transformer2DModel",
        {
            "sample_size": 128,
            "patch_size": 2,
            "in_channels": 16,
            "num_layers": 38,
            "attention_head_dim": 64,
            "num_attention_heads": 38,
            "joint_attention_dim": 4096,
            "caption_projection_dim": 2432,
            "pooled_projection_dim": 2048,
            "out_channels": 16,
            "pos_embed_max_size": 192,
            "dual_attention_layers": (),
            "qk_norm": "rms_norm",
        },
        "sd3",
        (16, 128, 128),
        77 + 256,
        2,
        8.1e9,
        "transformer/config.json of the HF repo (values as reproduced in public code; structure as"
        f" scripts/convert_sd3_to_diffusers.py, {DIFFUSERS}); 8.1B: Stability AI model card",
        f"text = 77 CLIP + 256 T5 tokens (max_sequence_length 256); {SD3_CFG}",
    ),
    DiT(
        "dit-pixart-sigma-xl-2-1024",
        "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
        "PixArtTransformer2DModel",
        {
            "sample_size": 128,
            "num_layers": 28,
            "attention_head_dim": 72,
            "num_attention_heads": 16,
            "in_channels": 4,
            "out_channels": 8,
            "patch_size": 2,
            "attention_bias": True,
            "cross_attention_dim": 1152,
            "activation_fn": "gelu-approximate",
            "num_embeds_ada_norm": 1000,
            "norm_type": "ada_norm_single",
            "norm_elementwise_affine": False,
            "norm_eps": 1e-6,
            "caption_channels": 4096,
            "interpolation_scale": 2,
            "use_additional_conditions": False,
        },
        "pixart",
        (4, 128, 128),
        300,
        2,
        0.6e9,
        f"scripts/convert_pixart_sigma_to_diffusers.py (PixArt XL/2, 1024: interpolation_scale 2; {DIFFUSERS});"
        " no micro-conditions (PixArtSigmaPipeline passes resolution/aspect_ratio None); 0.6B: PixArt-Sigma paper",
        "text = 300 T5 tokens (max_sequence_length 300); guidance_scale 4.5: CFG batched (passes_per_step 2); "
        + NO_MASK,
    ),
    DiT(
        "dit-flux.1-dev",
        "black-forest-labs/FLUX.1-dev",
        "FluxTransformer2DModel",
        {
            "patch_size": 1,
            "in_channels": 64,
            "num_layers": 19,
            "num_single_layers": 38,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "pooled_projection_dim": 768,
            "guidance_embeds": True,
            "axes_dims_rope": (16, 56, 56),
        },
        "flux",
        (64, 64, 64),
        512,
        1,
        12e9,
        f"scripts/convert_flux_to_diffusers.py (19 double + 38 single blocks, inner 3072, mlp 4.0; {DIFFUSERS});"
        " dev: guidance_embeds True; 12B: Black Forest Labs model card",
        "latent 16x128x128 packed 2x2 into 4096 tokens of 64 channels (written 64x64x64); text = 512 T5 tokens"
        " (max_sequence_length 512); guidance-distilled: guidance 3.5 embedded, one pass per step",
    ),
    DiT(
        "dit-sana1.5-1.6b",
        "Efficient-Large-Model/SANA1.5_1.6B_1024px_diffusers",
        "SanaTransformer2DModel",
        {
            "in_channels": 32,
            "out_channels": 32,
            "num_attention_heads": 70,
            "attention_head_dim": 32,
            "num_layers": 20,
            "num_cross_attention_heads": 20,
            "cross_attention_head_dim": 112,
            "cross_attention_dim": 2240,
            "caption_channels": 2304,
            "mlp_ratio": 2.5,
            "attention_bias": False,
            "sample_size": 32,
            "patch_size": 1,
            "norm_elementwise_affine": False,
            "norm_eps": 1e-6,
            "interpolation_scale": None,
            "qk_norm": "rms_norm_across_heads",
        },
        "sana",
        (32, 32, 32),
        300,
        2,
        1.6e9,
        f"scripts/convert_sana_to_diffusers.py model_kwargs['SanaMS1.5_1600M_P1_D20'], 1024 px ({DIFFUSERS});"
        " 1.6B: model name / SANA-1.5 paper",
        "DC-AE f32 latent 32x32x32; text = 300 Gemma-2 tokens (max_sequence_length 300, after the complex human"
        " instruction is cut off); guidance_scale 4.5: CFG batched (passes_per_step 2); " + NO_MASK,
    ),
    DiT(
        "dit-sana1.5-4.8b",
        "Efficient-Large-Model/SANA1.5_4.8B_1024px_diffusers",
        "SanaTransformer2DModel",
        {
            "in_channels": 32,
            "out_channels": 32,
            "num_attention_heads": 70,
            "attention_head_dim": 32,
            "num_layers": 60,
            "num_cross_attention_heads": 20,
            "cross_attention_head_dim": 112,
            "cross_attention_dim": 2240,
            "caption_channels": 2304,
            "mlp_ratio": 2.5,
            "attention_bias": False,
            "sample_size": 32,
            "patch_size": 1,
            "norm_elementwise_affine": False,
            "norm_eps": 1e-6,
            "interpolation_scale": None,
            "qk_norm": "rms_norm_across_heads",
        },
        "sana",
        (32, 32, 32),
        300,
        2,
        4.8e9,
        f"scripts/convert_sana_to_diffusers.py model_kwargs['SanaMS1.5_4800M_P1_D60'], 1024 px ({DIFFUSERS});"
        " 4.8B: model name / SANA-1.5 paper",
        "DC-AE f32 latent 32x32x32; text = 300 Gemma-2 tokens; guidance_scale 4.5: CFG batched"
        " (passes_per_step 2); " + NO_MASK,
    ),
    DiT(
        "dit-hunyuandit-v1.2",
        "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers",
        "HunyuanDiT2DModel",
        {
            "num_attention_heads": 16,
            "attention_head_dim": 88,
            "in_channels": 4,
            "patch_size": 2,
            "activation_fn": "gelu-approximate",
            "sample_size": 128,
            "hidden_size": 1408,
            "num_layers": 40,
            "mlp_ratio": 4.3637,
            "learn_sigma": True,
            "cross_attention_dim": 1024,
            "norm_type": "layer_norm",
            "cross_attention_dim_t5": 2048,
            "pooled_projection_dim": 1024,
            "text_len": 77,
            "text_len_t5": 256,
            "use_style_cond_and_image_meta_size": False,
        },
        "hunyuan",
        (4, 128, 128),
        77 + 256,
        2,
        1.5e9,
        "Tencent-Hunyuan/HunyuanDiT-Diffusers transformer config (DiT-g/2: 40 blocks, hidden 1408, 16 heads, mlp"
        f" 4.3637) with use_style_cond_and_image_meta_size False for v1.2 (scripts/convert_hunyuandit_to_diffusers.py,"
        f" {DIFFUSERS}); 1.5B: HunyuanDiT model card",
        "text = 77 BERT (CLIP-zh) + 256 mT5 tokens with their masks; 2D RoPE for the 64x64 patch grid computed in"
        " the graph's wrapper as the pipeline does; guidance_scale 5.0: CFG batched (passes_per_step 2)",
    ),
]
