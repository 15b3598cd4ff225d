"""deploy/: Kubernetes manifests validate offline against the Kubernetes schemas; Docker and
Heroku files say what the README promises (non-root, pinned, `bridge worker`, release phase)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bridge.mapping.load import load_mappings
from bridge.settings import Settings
from tests.fixtures_sandbox import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_VERSION = "1.30"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> dict[str, Any]:
    return documents(K8S / "kustomization.yaml")[0]


def generated_config_maps() -> list[dict[str, Any]]:
    """What kustomize's configMapGenerator makes, built here (no kustomize binary offline)."""
    maps = []
    for gen in kustomization()["configMapGenerator"]:
        data = {Path(f).name: (K8S / f).read_text() for f in gen.get("files", [])}
        data.update(dict(item.split("=", 1) for item in gen.get("literals", [])))
        maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return maps


def all_resources() -> list[dict[str, Any]]:
    docs = [d for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml" for d in documents(f)]
    return docs + generated_config_maps()


def by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in all_resources() if d["kind"] == kind and (name is None or d["metadata"].get("name") == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


@pytest.mark.parametrize("resource", all_resources(), ids=lambda d: f"{d['kind']}/{d['metadata'].get('name') or d['metadata'].get('generateName')}")
def test_manifest_validates_against_the_kubernetes_schema(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_bad_manifest() -> None:
    bad = json.loads(json.dumps(by_kind("Deployment")))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kustomization_lists_existing_files_and_every_always_applied_manifest() -> None:
    k = kustomization()
    listed = set(k["resources"])
    assert all((K8S / name).is_file() for name in listed)
    examples = {"backfill-job.yaml", "webhooks-ingress.yaml"}
    assert {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"} - listed == examples
    assert [i["name"] for i in k["images"]] == ["bridge"]


def test_the_packaged_mappings_are_valid() -> None:
    files = [f for gen in kustomization()["configMapGenerator"] for f in gen.get("files", [])]
    assert files and all(f.startswith("mappings/") for f in files)
    assert sorted(Path(f).name for f in files) == sorted(p.name for p in (K8S / "mappings").glob("*.yaml"))
    assert set(load_mappings(K8S / "mappings")) == {Path(f).stem for f in files}


def test_deployment_runs_two_probed_workers_with_secrets_and_mappings() -> None:
    dep = by_kind("Deployment", "bridge")
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert spec["replicas"] == 2 and container["args"] == ["worker"]
    assert spec["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == int(env["PORT"])
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == env["PORT"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # The worker's stop: runs settle within the stop timeout, then ~6 s of cleanup, under 25 s.
    stop_timeout = Settings.model_fields["bridge_stop_timeout_seconds"].default
    assert pod["terminationGracePeriodSeconds"] >= 30 > stop_timeout + 6 + 5
    refs = {next(iter(r)): next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {"configMapRef": "bridge-config", "secretRef": "bridge-secrets"}
    [mount] = container["volumeMounts"]
    assert mount["mountPath"] == env["BRIDGE_MAPPINGS"]
    [volume] = pod["volumes"]
    assert volume["configMap"]["name"] == "bridge-mappings" and volume["name"] == mount["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_pdb_covers_the_workers_and_jobs_run_the_right_commands() -> None:
    dep = by_kind("Deployment", "bridge")
    pdb = by_kind("PodDisruptionBudget", "bridge")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]
    jobs = [d for d in all_resources() if d["kind"] == "Job"]
    args = sorted(j["spec"]["template"]["spec"]["containers"][0]["args"][0] for j in jobs)
    assert args == ["backfill", "migrate"]


def test_dockerfile_is_slim_non_root_pinned_and_runs_the_worker() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(?:@sha256:\w+)?", f) for f in froms)
    [user] = re.findall(r"^USER (\S+)", text, re.M)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert 'ENTRYPOINT ["bridge"]' in text and 'CMD ["worker"]' in text


def test_every_dependency_is_pinned_for_the_image() -> None:
    pins = {}
    for line in (DEPLOY / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0]).lower() for d in deps}
    assert names <= set(pins), f"pin these in deploy/requirements.txt: {sorted(names - set(pins))}"


def test_heroku_procfile_and_app_json() -> None:
    procfile = dict(
        line.split(":", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip()
    )
    assert {k: v.strip() for k, v in procfile.items()} == {
        "web": "bridge web", "worker": "bridge worker", "release": "bridge migrate",
    }  # fmt: skip
    app = json.loads((DEPLOY / "heroku" / "app.json").read_text())
    assert [a["plan"].split(":")[0] for a in app["addons"]] == ["heroku-postgresql"]
    assert set(app["formation"]) == {"web", "worker"}  # only web dynos receive HTTP on Heroku
    assert env_has_webhooks(app["env"])
    env = app["env"]
    for key in ("OUTREACH_CLIENT_ID", "OUTREACH_CLIENT_SECRET", "OUTREACH_REFRESH_TOKEN", "ZENDESK_URL",
                "ZENDESK_CLIENT_ID", "ZENDESK_CLIENT_SECRET", "BRIDGE_SECRET_KEY"):
        assert key in env, key
    assert env["BRIDGE_SECRET_KEY"].get("generator") == "secret"
    assert "DATABASE_URL" not in env  # the Postgres add-on sets it


def env_has_webhooks(env: dict[str, Any]) -> bool:
    return env["OUTREACH_WEBHOOK_SECRET"].get("generator") == "secret" and "BRIDGE_PUBLIC_URL" in env


def test_the_ingress_exposes_only_the_webhook_path_of_the_workers_service() -> None:
    ingress = documents(K8S / "webhooks-ingress.yaml")[0]
    kubernetes_validate.validate(ingress, K8S_VERSION, strict=True)
    service = by_kind("Service", "bridge")
    dep = by_kind("Deployment", "bridge")
    assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/webhooks/outreach", "Exact")
    assert path["backend"]["service"]["name"] == service["metadata"]["name"]
    assert ingress["spec"]["tls"]  # Outreach posts to https only


def test_kustomize_build_renders_valid_resources() -> None:
    """Where kubectl (with its built-in kustomize) is installed, the real build validates too."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the generator is checked by the tests above")
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    rendered = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered) == [
        ("ConfigMap", "bridge-config"), ("ConfigMap", "bridge-mappings"), ("Deployment", "bridge"),
        ("Job", "bridge-migrate"), ("PodDisruptionBudget", "bridge"), ("Service", "bridge"),
    ]  # fmt: skip
    for resource in rendered:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
    images = {c["image"] for d in rendered if d["kind"] in ("Deployment", "Job")
              for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert images == {"ghcr.io/example/bridge:0.1.0"}
