"""`estimate hardware list|show`: the shipped hardware profiles."""

from __future__ import annotations

from typing import Annotated

import typer

from estimator.cli._app import _clean_errors, app

hardware_app = typer.Typer(help="Hardware profiles: list and show.", no_args_is_help=True)
app.add_typer(hardware_app, name="hardware")


@hardware_app.command("list")
@_clean_errors
def hardware_list() -> None:
    """List the shipped hardware profiles."""
    from estimator.energy.hardware import list_profiles, load_profile

    for name in list_profiles():
        p = load_profile(name)
        typer.echo(f"{name:16s} {p.kind:4s} {p.display_name:44s} {p.measurement_boundary}")


@hardware_app.command("show")
@_clean_errors
def hardware_show(name: Annotated[str, typer.Argument(help="Profile name or path.")]) -> None:
    """Show one profile: every value with its source and confidence."""
    from estimator.energy.hardware import load_profile

    p = load_profile(name)
    typer.echo(f"{p.name}: {p.display_name} ({p.kind}, {p.architecture})")
    typer.echo(
        f"boundary {p.measurement_boundary}; default runtime {p.default_runtime}; file {p.source_path}"
    )
    for key, c in sorted(p.sources().items()):
        typer.echo(f"  {key:42s} {c.value:<12.4g} {c.confidence:9s} [{c.source_id}] {c.note}")
