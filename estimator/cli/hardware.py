"""`estimate hardware list|show`: the shipped hardware profiles, fitted to the terminal's width."""

from __future__ import annotations

import textwrap
from typing import Annotated

import typer

from estimator.cli._app import _clean_errors, app

hardware_app = typer.Typer(help="Hardware profiles: list and show.", no_args_is_help=True)
app.add_typer(hardware_app, name="hardware")


@hardware_app.command("list")
@_clean_errors
def hardware_list() -> None:
    """List the shipped hardware profiles: name, kind, device and measurement boundary."""
    from estimator.cli.format import shorten, terminal_width
    from estimator.energy.hardware import list_profiles, load_profile

    profiles = [load_profile(name) for name in list_profiles()]
    width = terminal_width()
    name_w = max(len(p.name) for p in profiles)
    boundary_w = max(len(p.measurement_boundary) for p in profiles)
    device_w = max(min(max(len(p.display_name) for p in profiles), width - name_w - boundary_w - 10), 12)
    header = f"{'name':<{name_w}}  kind  {'device':<{device_w}}  boundary"
    typer.echo(header)
    for p in profiles:
        device = shorten(p.display_name, device_w, keep="start")
        typer.echo(f"{p.name:<{name_w}}  {p.kind:<4}  {device:<{device_w}}  {p.measurement_boundary}")
    typer.echo("\n`estimate hardware show NAME` lists every value with its source.")


@hardware_app.command("show")
@_clean_errors
def hardware_show(name: Annotated[str, typer.Argument(help="Profile name or path.")]) -> None:
    """Show one profile: every value with its source and confidence."""
    from estimator.cli.format import terminal_width
    from estimator.energy.hardware import load_profile
    from estimator.report.wording import boundary_sentence

    p = load_profile(name)
    width = terminal_width()

    def wrap(text: str, indent: str = "") -> list[str]:
        return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False) or [""]

    out = wrap(f"{p.name}: {p.display_name} ({p.kind}, {p.architecture})", "  ")
    out += wrap(f"boundary {p.measurement_boundary}: {boundary_sentence(p.measurement_boundary)}", "  ")
    out += wrap(f"default runtime {p.default_runtime}; file {p.source_path}", "  ")
    out.append("")
    sources = sorted(p.sources().items())
    key_w = min(max(len(k) for k, _ in sources), width - 34)
    for key, c in sources:
        line = f"{key:<{key_w}}  {c.value:<10.4g}  {c.confidence:<9}"
        note = f"[{c.source_id}] {c.note.strip()}"
        if len(line) + len(c.source_id) + 4 <= width:
            line, note = f"{line}  [{c.source_id}]", c.note.strip()
        out.append(line)
        if note:
            out += textwrap.wrap(note, width, initial_indent="    ", subsequent_indent="    ")
    typer.echo("\n".join(out))
