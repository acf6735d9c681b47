"""The demand-history ConfigMap on a real API server: a save changes only its data key, so
Helm's labels and annotations (the chart creates the ConfigMap) and anyone else's keys
survive, and a write by someone else in between is a conflict, not overwritten."""

from __future__ import annotations

import pytest

from controller.devcluster import DevCluster
from controller.kube import ApiError, Kube, core_path
from controller.state import KEY, DemandHistory, StateStore

HELM_LABELS = {
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/instance": "dlscaler",
    "helm.sh/chart": "dlscaler-0.1.0",
}
HELM_ANNOTATIONS = {
    "meta.helm.sh/release-name": "dlscaler",
    "meta.helm.sh/release-namespace": "dlscaler-system",
}


def history(*gpus: float) -> DemandHistory:
    h = DemandHistory(step_s=60)
    for i, value in enumerate(gpus):
        h.observe(1_700_000_000 + i * 60, value)
    return h


def stored(kube: Kube, namespace: str) -> dict:
    obj = kube.get(core_path("configmaps", namespace, "dlscaler-state"))
    assert obj is not None
    return obj


def test_a_save_keeps_helms_labels_and_annotations_and_other_keys(
    kube_cluster: DevCluster, kube_namespace: str
) -> None:
    kube = Kube.connect(str(kube_cluster.kubeconfig))
    # What templates/configmap-state.yaml makes: labels, Helm's ownership annotations, no
    # data. A key someone else added is kept too.
    kube.create(
        core_path("configmaps", kube_namespace),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dlscaler-state",
                "labels": HELM_LABELS,
                "annotations": HELM_ANNOTATIONS,
            },
            "data": {"note": "kept"},
        },
    )
    store = StateStore(kube, kube_namespace)
    assert store.load(step_s=60, max_points=100).values == []
    store.save(history(8, 16))
    store.save(history(8, 16, 4))  # the second save patches on the first one's version

    obj = stored(kube, kube_namespace)
    assert HELM_LABELS.items() <= obj["metadata"]["labels"].items()
    assert HELM_ANNOTATIONS.items() <= obj["metadata"]["annotations"].items()
    assert obj["data"]["note"] == "kept"
    assert DemandHistory.decode(obj["data"][KEY]).values == [8, 16, 4]
    again = StateStore(kube, kube_namespace).load(step_s=60, max_points=100)
    assert again.values == [8, 16, 4]


def test_a_write_by_someone_else_is_a_conflict_and_the_next_save_wins(
    kube_cluster: DevCluster, kube_namespace: str
) -> None:
    kube = Kube.connect(str(kube_cluster.kubeconfig))
    store = StateStore(kube, kube_namespace)
    store.load(step_s=60, max_points=100)
    store.save(history(1))  # nothing there yet: created, with its own label
    assert stored(kube, kube_namespace)["metadata"]["labels"] == {
        "app.kubernetes.io/part-of": "dlscaler"
    }
    path = core_path("configmaps", kube_namespace, "dlscaler-state")
    kube.merge_patch(path, {"metadata": {"labels": {"team": "ml"}}})  # another writer

    with pytest.raises(ApiError) as err:
        store.save(history(2))
    assert err.value.conflict
    assert DemandHistory.decode(stored(kube, kube_namespace)["data"][KEY]).values == [1]

    store.save(history(3))  # based on what is there now
    obj = stored(kube, kube_namespace)
    assert DemandHistory.decode(obj["data"][KEY]).values == [3]
    assert obj["metadata"]["labels"]["team"] == "ml"
