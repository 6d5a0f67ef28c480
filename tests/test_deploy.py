"""Static checks of deploy/: the Kubernetes kustomize base, validated without a cluster (core kinds against
kubernetes-validate's bundled schemas, strict; KEDA kinds against KEDA's CRD schemas kept in tests/data/keda/),
the settings scale-in safety relies on, the exporter's compose service, and the Grafana dashboard's shape."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
KEDA_CRDS = REPO / "tests" / "data" / "keda"
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes the base is written for; KEDA's scalingModifiers need 2.12+
SECRET = "tensorq"
GPU_LISTS = {"gpu.high", "gpu", "gpu.low"}  # shared/protocol.py queues_in_priority_order(["gpu"])


def documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every resource of the base."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"one {kind} {name} expected, found {len(found)}"
    return found[0]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def strict(schema: Any) -> Any:
    """A CRD's OpenAPI schema with unknown fields refused, as the API server's strict field validation does."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of every served version of KEDA's CRDs."""
    out = {}
    for path in sorted(KEDA_CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                    out[(f"{group}/{version['name']}", kind)] = strict(schema)
    return out


def test_kustomization_lists_every_manifest():
    """
    Given deploy/k8s/kustomization.yaml
    Then it names every manifest in the folder (and only those), puts them in one namespace, and maps the image
    names the workloads use.
    """
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml")
                                                         if p.name != "kustomization.yaml")
    assert kustomization["namespace"] == "tensorq"
    mapped = {image["name"] for image in kustomization["images"]}
    used = {c["image"] for kind in ("Deployment", "StatefulSet") for w in of_kind(kind) for c in containers(w)}
    assert {u for u in used if u.startswith("tensorq")} <= mapped


@pytest.mark.parametrize("name,doc", [d for d in documents() if not d[1]["apiVersion"].startswith("keda.sh/")],
                         ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}")
def test_core_manifests_are_valid_kubernetes(name: str, doc: dict[str, Any]):
    """
    Given a core resource of the base
    When it is validated with kubernetes-validate's bundled schemas, strict (unknown fields are errors)
    Then it is valid.
    """
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {'/'.join(map(str, e.path))}")


@pytest.mark.parametrize("name,doc", [d for d in documents() if d[1]["apiVersion"].startswith("keda.sh/")],
                         ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}")
def test_keda_manifests_match_kedas_crds(name: str, doc: dict[str, Any]):
    """
    Given a KEDA resource of the base
    When it is validated against the served version of KEDA's CRD schema (unknown fields refused)
    Then it is valid.
    """
    schemas = crd_schemas()
    key = (doc["apiVersion"], doc["kind"])
    assert key in schemas, f"{name}: no KEDA CRD serves {key}"
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    schema = {**schemas[key], "properties": {k: v for k, v in schemas[key]["properties"].items()
                                             if k not in ("apiVersion", "kind", "metadata")}}
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_scaledobject_counts_every_priority_level_of_gpu():
    """
    Given the ScaledObject on the GPU workers
    Then it has one redis trigger per level of the gpu queue, each authenticated by the TriggerAuthentication
    And a formula that sums all of them (KEDA takes the largest of several triggers, not their sum).
    """
    scaled = named("ScaledObject", "tensorq-worker-gpu")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "tensorq-worker-gpu"
    named("Deployment", "tensorq-worker-gpu")
    triggers = scaled["spec"]["triggers"]
    assert all(t["type"] == "redis" for t in triggers)
    assert {t["metadata"]["listName"] for t in triggers} == GPU_LISTS and len(triggers) == len(GPU_LISTS)
    auth_names = {t["authenticationRef"]["name"] for t in triggers}
    assert auth_names == {"tensorq-redis"}
    auth = named("TriggerAuthentication", "tensorq-redis")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": SECRET, "key": "redis-password"}]
    formula = scaled["spec"]["advanced"]["scalingModifiers"]["formula"]
    assert sorted(re.findall(r"[A-Za-z_]\w*", formula)) == sorted(t["name"] for t in triggers)
    assert set(re.findall(r"[^\w\s]", formula)) == {"+"}, f"the formula must sum the levels: {formula}"


def test_redis_keeps_an_append_only_file_and_a_password_from_the_secret():
    redis = named("StatefulSet", "tensorq-redis")
    (container,) = containers(redis)
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert env_of(container)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": SECRET,
                                                                                 "key": "redis-password"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/data"] in {c["metadata"]["name"] for c in redis["spec"]["volumeClaimTemplates"]}


def dockerfile_entrypoints() -> list[str]:
    return re.findall(r"^ENTRYPOINT\s+(.+)$", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)


@pytest.mark.parametrize("name,gpus", [("tensorq-worker-gpu", "all"), ("tensorq-worker-cpu", "none")])
def test_workers_get_sigterm_and_time_to_hand_their_job_back(name: str, gpus: str):
    """
    Given a worker Deployment
    Then it runs `tensorq worker --gpus ...` through the image's exec-form entrypoint (no shell in between), so
    the kubelet's SIGTERM reaches tensorq, which hands its running job back with a checkpoint
    And the grace period covers that (at least a minute), GPU pods ask for exactly one GPU.
    """
    assert dockerfile_entrypoints() and all(json.loads(e) == ["tensorq"] for e in dockerfile_entrypoints())
    workload = named("Deployment", name)
    pod = workload["spec"]["template"]["spec"]
    (container,) = containers(workload)
    assert "command" not in container, "keep the image's entrypoint: a shell wrapper would swallow SIGTERM"
    assert container["args"] == ["worker", "--gpus", gpus]
    assert pod["terminationGracePeriodSeconds"] >= 60
    limits = container.get("resources", {}).get("limits", {})
    assert limits.get("nvidia.com/gpu") == (1 if gpus == "all" else None)


def test_no_literal_secret_anywhere():
    """
    Given every manifest
    Then no Secret is committed, every password or login comes from the `tensorq` Secret, and every broker URL
    takes its password from the environment.
    """
    assert not of_kind("Secret")
    for kind in ("Deployment", "StatefulSet"):
        for workload in of_kind(kind):
            for container in containers(workload):
                env = env_of(container)
                for var, entry in env.items():
                    if re.search(r"PASSWORD|AUTH|SECRET|TOKEN", var):
                        assert entry["valueFrom"]["secretKeyRef"]["name"] == SECRET, (workload["metadata"], var)
                url = env.get("TENSORQ_BROKER_URL")
                if url is not None:
                    assert url["value"] == "redis://:$(REDIS_PASSWORD)@tensorq-redis:6379/0"
                    assert list(env).index("REDIS_PASSWORD") < list(env).index("TENSORQ_BROKER_URL")
    for path in K8S.glob("*.yaml"):
        assert not re.search(r"redis://:[^$]", path.read_text()), f"{path.name}: a literal password in a URL"


def test_flower_and_the_exporter_run_with_their_settings():
    flower = named("Deployment", "tensorq-flower")
    (container,) = containers(flower)
    assert container["args"][0] == "flower" and "--basic-auth" not in container["args"]  # never in argv
    assert env_of(container)["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == SECRET
    exporter = named("Deployment", "tensorq-metrics")
    (container,) = containers(exporter)
    assert container["args"][:1] == ["metrics"]
    port = int(container["args"][container["args"].index("--port") + 1])
    service = named("Service", "tensorq-metrics")
    assert service["spec"]["ports"][0]["port"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/metrics"


def test_compose_runs_the_exporter_on_loopback():
    """
    Given docker-compose.yml
    Then a `metrics` service runs `tensorq metrics` with the authenticated broker URL, published on the host's
    loopback only.
    """
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    metrics = services["metrics"]
    args = [*metrics["entrypoint"], *metrics["command"]]
    assert args[:2] == ["tensorq", "metrics"]
    # the redis service's URL unless .env names another broker (the Sentinels', profile `sentinel`)
    assert metrics["environment"]["TENSORQ_BROKER_URL"].startswith("${TENSORQ_BROKER_URL:-redis://:${REDIS_PASSWORD:?")
    assert metrics["ports"] == ["127.0.0.1:9808:9808"]
    assert metrics["depends_on"]["redis"]["condition"] == "service_healthy"


def test_dashboard_panels_each_query_prometheus():
    board = json.loads((REPO / "deploy" / "grafana" / "tensorq.json").read_text())
    titles = [p["title"] for p in board["panels"]]
    assert len(titles) == len(set(titles))
    for panel in board["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["type"] == "prometheus"
    for wanted in ("Queue depth", "Oldest job age", "Jobs by state", "Throughput", "Run time", "Workers",
                   "GPU memory"):
        assert any(t.startswith(wanted) for t in titles), wanted
