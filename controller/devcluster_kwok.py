"""kwok's configuration for the local control plane: fake GPU nodes and their pods.

kwok plays the kubelet of every Node carrying the annotation ``kwok.x-k8s.io/node: fake``.
The Stages below decide how those nodes and their pods move through their lifecycle:

Nodes
    Become Ready after a delay: the annotation ``dlscaler.io/kwok-ready-delay`` (a Go
    duration such as ``"5s"``), else the cluster's default (``DevCluster(node_ready_delay_s=)``).
    They report ``nvidia.com/gpu`` capacity and allocatable: whatever the creator put in
    ``status.capacity``/``status.allocatable``, else the count in the label
    ``nvidia.com/gpu.count`` (the label NVIDIA's GPU feature discovery sets on real
    nodes). CPU, memory and pods default to kwok's (1k, 1Ti, 1M) unless given the same way.

Pods (once the scheduler binds them to such a node)
    Run at once (Running, Ready, with a pod IP). They stay Running until the annotation
    ``dlscaler.io/kwok-result`` is ``Succeeded`` or ``Failed``; then, after
    ``dlscaler.io/kwok-run-duration`` (a Go duration; default immediately), every container
    terminates with exit code 0 (Succeeded) or 1 (Failed) and the pod takes that phase. Set
    the annotations in a pod template so the pods finish on their own, or
    ``kubectl annotate`` a running pod to finish it now. Deleted pods go away at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MANAGED_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NODE_READY_DELAY_ANNOTATION = "dlscaler.io/kwok-ready-delay"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_TYPE_LABEL = "dlscaler.io/gpu-type"
GPU_RESOURCE = "nvidia.com/gpu"
POD_RESULT_ANNOTATION = "dlscaler.io/kwok-result"
POD_RUN_DURATION_ANNOTATION = "dlscaler.io/kwok-run-duration"
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}

# The resources a stage template fills in when the node's creator did not: kwok's own
# defaults, plus nvidia.com/gpu from the label.
_RESOURCES_TEMPLATE = """
{{ $gpus := "" }}
{{ with .metadata.labels }}{{ $gpus = index . "nvidia.com/gpu.count" }}{{ end }}
{{ range $field := list "allocatable" "capacity" }}
{{ $given := default (dict) (index $.status $field) }}
{{ $field }}:
  cpu: {{ default "1k" (index $given "cpu") | Quote }}
  memory: {{ default "1Ti" (index $given "memory") | Quote }}
  pods: {{ default "1M" (index $given "pods") | Quote }}
{{ range $name, $value := $given }}
{{ if not (has $name (list "cpu" "memory" "pods" "nvidia.com/gpu")) }}
  {{ $name | Quote }}: {{ $value | Quote }}
{{ end }}
{{ end }}
{{ with (default $gpus (index $given "nvidia.com/gpu")) }}
  nvidia.com/gpu: {{ . | Quote }}
{{ end }}
{{ end }}
"""

_NODE_INITIALIZE = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: dlscaler-node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  delay:
    durationMilliseconds: __DELAY_MS__
    durationFrom:
      expressionFrom: '.metadata.annotations["dlscaler.io/kwok-ready-delay"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      addresses:
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}
__RESOURCES__
      nodeInfo:
        architecture: amd64
        containerRuntimeVersion: {{ printf "kwok-%s" Version }}
        kernelVersion: {{ printf "kwok-%s" Version }}
        kubeProxyVersion: {{ printf "kwok-%s" Version }}
        kubeletVersion: {{ printf "kwok-%s" Version }}
        operatingSystem: linux
      phase: Running
"""

# kwok's node-heartbeat-with-lease stage: conditions refreshed now and then; liveness
# comes from the node Lease kwok renews.
_NODE_HEARTBEAT = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: dlscaler-node-heartbeat
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values: ['True']
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
"""

# kwok's "fast" pod-ready stage: a bound pod runs at once.
_POD_READY = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: dlscaler-pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false )
           ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
"""

_POD_COMPLETE = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: dlscaler-pod-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.annotations["dlscaler.io/kwok-result"]'
      operator: 'In'
      values: ['Succeeded', 'Failed']
  delay:
    durationMilliseconds: 0
    durationFrom:
      expressionFrom: '.metadata.annotations["dlscaler.io/kwok-run-duration"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $failed := eq (index .metadata.annotations "dlscaler.io/kwok-result") "Failed" }}
      {{ $started := or .status.startTime $now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        reason: PodCompleted
        status: "False"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        reason: PodCompleted
        status: "False"
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {{ if $failed }}1{{ else }}0{{ end }}
            reason: {{ if $failed }}Error{{ else }}Completed{{ end }}
            startedAt: {{ $started | Quote }}
            finishedAt: {{ $now | Quote }}
      {{ end }}
      phase: {{ if $failed }}Failed{{ else }}Succeeded{{ end }}
"""

_POD_DELETE = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: dlscaler-pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"""


def kwok_config(*, node_ready_delay_s: float = 0.0, lease_duration_s: int = 40) -> str:
    """The ``kwok --config`` file: a KwokConfiguration and the Stages above."""
    resources = "\n".join("      " + line for line in _RESOURCES_TEMPLATE.strip().splitlines())
    node_initialize = _NODE_INITIALIZE.replace(
        "__DELAY_MS__", str(round(node_ready_delay_s * 1000))
    ).replace("__RESOURCES__", resources)
    configuration = f"""
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  manageAllNodes: false
  manageNodesWithAnnotationSelector: {MANAGED_NODE_ANNOTATION[0]}={MANAGED_NODE_ANNOTATION[1]}
  nodeLeaseDurationSeconds: {lease_duration_s}
  # kwok leaves these at 0 (refusing to start) when a configuration file is given.
  nodeLeaseParallelism: 4
  nodePlayStageParallelism: 4
  podPlayStageParallelism: 4
  podsOnNodeSyncParallelism: 1
"""
    documents = [
        configuration,
        node_initialize,
        _NODE_HEARTBEAT,
        _POD_READY,
        _POD_COMPLETE,
        _POD_DELETE,
    ]
    return "---".join(doc.rstrip() + "\n" for doc in documents)


def _go_duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def gpu_node_manifest(
    name: str,
    *,
    gpus: int = 8,
    gpu_type: str = "",
    ready_delay_s: float | None = None,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
    allocatable: Mapping[str, str] | None = None,
    provider_id: str = "",
) -> dict[str, Any]:
    """A Node that kwok manages: ``gpus`` x ``nvidia.com/gpu``, labelled with its GPU type.

    It starts with the ``node.kubernetes.io/not-ready:NoSchedule`` taint, as a kubelet
    registers a node; the node lifecycle controller lifts it when kwok reports Ready.
    """
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        GPU_COUNT_LABEL: str(gpus),
    }
    if gpu_type:
        node_labels[GPU_TYPE_LABEL] = gpu_type
    node_labels.update(labels or {})
    annotations = {MANAGED_NODE_ANNOTATION[0]: MANAGED_NODE_ANNOTATION[1]}
    if ready_delay_s is not None:
        annotations[NODE_READY_DELAY_ANNOTATION] = _go_duration(ready_delay_s)
    spec: dict[str, Any] = {"taints": [dict(NOT_READY_TAINT), *(dict(t) for t in taints)]}
    if provider_id:
        spec["providerID"] = provider_id
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels, "annotations": annotations},
        "spec": spec,
    }
    if allocatable:
        node["status"] = {"allocatable": dict(allocatable), "capacity": dict(allocatable)}
    return node
