"""``dlscaler run`` with the stand-in kwok provider (tests/e2e/op_kwok_stub.py): the real
command line and operator, only the provider factory swapped. Used by the operator e2e
tests while ``providers/kwok.py`` does not exist.

    python tests/e2e/op_run_stub.py --kubeconfig ... [dlscaler run options]
"""

from __future__ import annotations

import sys

# Run as a script, so this directory is on sys.path and the stub imports as a module.
from op_kwok_stub import KwokStubProvider

import controller.operator as operator
from controller.kube import Kube
from controller.pools import ProviderFactory
from controller.settings import ControllerSettings


def stub_factory(settings: ControllerSettings) -> ProviderFactory:
    kube = Kube.connect(settings.kubeconfig)
    return lambda model: KwokStubProvider(kube, model)


operator.default_provider_factory = stub_factory

if __name__ == "__main__":
    from dlscaler.cli import app

    app(["run", *sys.argv[1:]])
