"""``dlscaler providers ...``: commands about node-pool providers.

Only typer and the standard library are imported here; the adapters (and the cloud SDKs)
load inside the command, so ``dlscaler --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    providers_app = typer.Typer(
        name="providers",
        help="Node-pool providers (AWS, GCP, Azure, kwok): check access and configuration.",
        no_args_is_help=True,
    )

    @providers_app.command("check")
    def check(
        pools: Annotated[
            Path,
            typer.Option(
                "--pools",
                exists=True,
                dir_okay=False,
                readable=True,
                help="Pools file: a list of pools, {pools: [...]}, or NodePool manifests.",
            ),
        ],
        only: Annotated[
            list[str] | None, typer.Option("--pool", help="Check only this pool (repeatable).")
        ] = None,
        kubeconfig: Annotated[
            Path | None,
            typer.Option(
                "--kubeconfig",
                help="Cluster of kwok pools (default: in-cluster or ~/.kube/config).",
            ),
        ] = None,
        output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
    ) -> None:
        """Describe every pool through its cloud's API and report what is wrong, in plain
        words: missing permissions (named), configuration errors (the field), differences
        between the pool file and the cloud group. Exit status 1 if any pool has an error,
        2 if the pools file is invalid."""
        import yaml

        from dlscaler.config import ConfigError, parse_pools
        from providers.check import check_pools, render_text, to_json
        from providers.factory import build_provider

        if output not in ("text", "json"):
            raise typer.BadParameter("must be text or json", param_hint="--output")
        try:
            data = yaml.safe_load(pools.read_text())
            models = parse_pools(data, source=str(pools))
        except (ConfigError, yaml.YAMLError) as err:
            typer.echo(f"invalid pools file: {err}", err=True)
            raise typer.Exit(2) from None
        if only:
            unknown = sorted(set(only) - {m.name for m in models})
            if unknown:
                typer.echo(f"no pool named {', '.join(unknown)} in {pools}", err=True)
                raise typer.Exit(2)
            models = [m for m in models if m.name in only]

        def build(model, **overrides):  # type: ignore[no-untyped-def]
            if model.provider == "kwok" and kubeconfig is not None:
                overrides["kubeconfig"] = str(kubeconfig)
            return build_provider(model, **overrides)

        results = check_pools(models, build=build)
        if output == "json":
            typer.echo(json.dumps(to_json(results), indent=2))
        else:
            typer.echo(render_text(results))
        if any(not r.ok for r in results):
            raise typer.Exit(1)

    app.add_typer(providers_app, name="providers")
