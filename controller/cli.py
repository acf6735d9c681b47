"""``dlscaler`` commands of the controller package.

Only typer and the standard library at import time: ``dlscaler --help`` must stay fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

dev_app = typer.Typer(help="Developer tools.", no_args_is_help=True)
cluster_app = typer.Typer(
    help="A local Kubernetes control plane (etcd, kube-apiserver, kube-scheduler, "
    "kube-controller-manager, kwok) with dlscaler's CRDs, as the e2e tests use.",
    no_args_is_help=True,
)
dev_app.add_typer(cluster_app, name="cluster")


def _default_dir() -> Path:
    cache = os.environ.get("DLSCALER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dlscaler"
    )
    return Path(cache) / "dev-cluster"


DirOption = typer.Option(
    None, "--dir", help="Where the cluster keeps its state (default: $DLSCALER_CACHE/dev-cluster)."
)


@cluster_app.command("up")
def cluster_up(
    directory: Path | None = DirOption,
    node_ready_delay: float = typer.Option(
        0.0, help="Seconds a new kwok node stays NotReady (per node: dlscaler.io/kwok-ready-delay)."
    ),
    gpu_nodes: int = typer.Option(0, help="Create this many kwok GPU nodes (kwok-gpu-N)."),
    gpus_per_node: int = typer.Option(8, help="nvidia.com/gpu per created node."),
    gpu_type: str = typer.Option("a100", help="GPU type label of the created nodes."),
) -> None:
    """Start the cluster in the background and install the CRDs."""
    import shutil

    from controller.devcluster import DevCluster, DevClusterError, find_bin_dir

    workdir = directory or _default_dir()
    try:
        previous = DevCluster.attach(workdir)
    except DevClusterError:
        previous = None
    if previous is not None and any(previous.alive().values()):
        typer.echo(
            f"a cluster already runs in {workdir}: `dlscaler dev cluster down` first", err=True
        )
        raise typer.Exit(1)
    # Whatever is left of a cluster that died (a reboot): start afresh.
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        cluster = DevCluster(
            workdir=workdir,
            bin_dir=find_bin_dir(),
            node_ready_delay_s=node_ready_delay,
            detach=True,
        )
    except DevClusterError as err:
        typer.echo(f"dlscaler dev cluster up: {err}", err=True)
        raise typer.Exit(1) from None
    try:
        cluster.start()
        cluster.install_crds()
        for i in range(gpu_nodes):
            cluster.create_gpu_node(f"kwok-gpu-{i}", gpus=gpus_per_node, gpu_type=gpu_type)
    except DevClusterError as err:
        cluster.stop()  # detached processes would otherwise outlive this failed command
        typer.echo(f"dlscaler dev cluster up: {err}\n(logs kept in {cluster.log_dir})", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"API server:  {cluster.server}")
    typer.echo(f"logs:        {cluster.log_dir}")
    typer.echo(f"kubectl:     {cluster.bin('kubectl')}")
    typer.echo(f"export KUBECONFIG={cluster.kubeconfig}")


@cluster_app.command("down")
def cluster_down(directory: Path | None = DirOption) -> None:
    """Stop the cluster and delete its state (etcd data, certificates, logs)."""
    import shutil

    from controller.devcluster import DevCluster, DevClusterError

    workdir = directory or _default_dir()
    try:
        cluster = DevCluster.attach(workdir)
    except DevClusterError as err:
        typer.echo(f"dlscaler dev cluster down: {err}", err=True)
        raise typer.Exit(1) from None
    cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    typer.echo(f"stopped; removed {workdir}")


@cluster_app.command("kubeconfig")
def cluster_kubeconfig(directory: Path | None = DirOption) -> None:
    """Print the admin kubeconfig's path: `export KUBECONFIG=$(dlscaler dev cluster kubeconfig)`."""
    from controller.devcluster import DevCluster, DevClusterError

    workdir = directory or _default_dir()
    try:
        cluster = DevCluster.attach(workdir)
    except DevClusterError as err:
        typer.echo(
            f"dlscaler dev cluster kubeconfig: {err}; start one with `dlscaler dev cluster up`",
            err=True,
        )
        raise typer.Exit(1) from None
    typer.echo(str(cluster.kubeconfig))


def register(app: typer.Typer) -> None:
    from controller.run_cli import register_run  # typer and stdlib only, like this module

    register_run(app)
    app.add_typer(dev_app, name="dev")
