"""`estimate llm`: energy of one LLM generation request (prefill + decode with a growing KV cache)."""

from __future__ import annotations

import textwrap
from enum import Enum
from typing import Annotated

import typer

from estimator.cli._app import _clean_errors, app


class LLMDType(str, Enum):
    """Element type to run float kernels, or to store the KV cache, in."""

    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"
    fp8 = "fp8"


_ELEMENT = {"fp8": "float8e4m3fn"}


@app.command()
@_clean_errors
def llm(
    model: Annotated[
        str,
        typer.Argument(
            help="Decoder .onnx (optimum layout, with or without past_key_values) or a zoo spec such as "
            "zoo:llama-3.1-8b, zoo:gpt2;cache=0, zoo:llama-2-7b;quant=int4.",
            show_default=False,
        ),
    ],
    hw: Annotated[str, typer.Option("--hw", help="Hardware profile name or path of a profile .toml file.")],
    prompt: Annotated[int, typer.Option("--prompt", help="Prompt tokens per sequence.")] = 512,
    generate: Annotated[int, typer.Option("--generate", help="Generated tokens per sequence.")] = 256,
    batch: Annotated[int, typer.Option("--batch", help="Sequences decoded together.")] = 1,
    dtype: Annotated[
        LLMDType | None,
        typer.Option("--dtype", help="Run float kernels in this type (default: the graph's)."),
    ] = None,
    kv_dtype: Annotated[
        LLMDType | None, typer.Option("--kv-dtype", help="KV-cache element type, for its size.")
    ] = None,
    tensor_parallel: Annotated[
        int, typer.Option("--tensor-parallel", help="GPUs sharing the model, Megatron style (zoo specs).")
    ] = 1,
    runtime: Annotated[
        str | None, typer.Option("--runtime", help="Runtime (default: the profile's).", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Emit the estimator.llm/1 JSON schema.")] = False,
    blocks: Annotated[int, typer.Option("--blocks", help="Rows of the per-block decode-step table.")] = 6,
) -> None:
    """Energy and time of one generation request: prefill, decode, J per token, TTFT, TPOT, KV cache."""
    from estimator.api import Estimator
    from estimator.cli.format import render_json, si
    from estimator.llm import estimate_request

    def element(choice: LLMDType | None) -> str | None:
        return None if choice is None else _ELEMENT.get(choice.value, choice.value)

    est = Estimator(hw, runtime=runtime)
    r = estimate_request(
        est,
        model,
        prompt=prompt,
        generate=generate,
        batch=batch,
        dtype=element(dtype),
        kv_dtype=element(kv_dtype),
        tensor_parallel=tensor_parallel,
    )
    if json_out:
        typer.echo(render_json(r.to_json()))
        return
    devices = f" x {r.devices} (tensor parallel)" if r.devices > 1 else ""
    cache = "KV cache" if r.has_cache else "no KV cache (each step recomputes the prefix)"
    lines = [
        f"model       {r.model}  ({cache}, {r.dtype})",
        f"hardware    {est.profile.display_name} [{r.hardware}]{devices}, runtime {r.runtime}",
        f"boundary    {r.boundary}",
        f"method      {r.method}",
        f"request     batch {r.batch} x ({r.prompt_tokens} prompt + {r.generated_tokens} generated tokens)",
        "",
        f"prefill     {si(r.prefill_joules, 'J')} in {si(r.prefill_seconds, 's')}   (TTFT {si(r.ttft_s, 's')})",
        f"decode      {si(r.decode_joules, 'J')} in {si(r.decode_seconds, 's')} over {r.decode_steps} steps"
        f"   (TPOT {si(r.tpot_s, 's')})",
        f"            +/- {si(r.decode_error_bound_joules, 'J')} quadrature bound, "
        f"{r.decode_evaluations} steps evaluated",
        f"per token   {si(r.joules_per_output_token, 'J')} per output token (decode)",
        f"per request {si(r.joules_per_request, 'J')} per sequence (prefill + decode)",
        f"KV cache    {si(r.kv_cache_bytes, 'B')} at the end ({r.kv_dtype}); weights "
        f"{si(r.weight_bytes_per_device, 'B')} per device",
    ]
    if r.host_step_seconds > 0:
        lines.append(
            f"host        {si(r.host_step_seconds, 's')} per engine step (scheduler, sampling, output), "
            "the GPU waiting"
        )
    if r.devices > 1:
        lines.append(f"all-reduce  {si(r.all_reduce_joules, 'J')} of the total")
    if r.not_costed:
        missing = ", ".join(f"{op} x{c}" for op, c in sorted(r.not_costed.items()))
        lines.append(f"WARNING     not costed, so the energy is a lower bound: {missing}")
    lines += [f"note        {n}" for n in r.notes]
    if blocks > 0 and r.decode_step_blocks:
        rows = r.decode_step_blocks
        lines += ["", f"one decode step (cache {r.prompt_tokens} tokens) on one device, by block:"]
        shown = rows if len(rows) <= blocks else (*rows[: blocks - 1], None, rows[-1])
        for b in shown:
            if b is None:
                lines.append(f"  ... {len(rows) - blocks} more")
                continue
            lines.append(
                f"  {b.block:<12} {si(b.joules, 'J'):>8}  {si(b.seconds, 's'):>8}  {b.kernels} kernels"
            )
    typer.echo("\n".join(_wrap(line) for line in lines))


def _wrap(line: str, width: int = 80) -> str:
    """``line`` folded at ``width`` columns under its 12-column label (a terminal of 80 columns)."""
    if len(line) <= width:
        return line
    return "\n".join(
        textwrap.wrap(line, width, subsequent_indent=" " * 12, break_long_words=False, break_on_hyphens=False)
    )
