"""examples/deploy/container and kubernetes, validated (nothing runs them here: no Docker
engine, no cluster). Kubernetes manifests against the API schemas `kubernetes-validate`
bundles (strict: unknown fields fail); the compose file against the Compose Specification's
schema, pinned by checksum in tests/deploy/schemas. Needs the ``deploy-check`` extra."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from deploy_support import DEPLOY

yaml = pytest.importorskip("yaml", reason="pip install -e '.[deploy-check]' (PyYAML)")
jsonschema = pytest.importorskip("jsonschema", reason="pip install -e '.[deploy-check]'")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install -e '.[deploy-check]' (kubernetes-validate)"
)

SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "container" / "compose.yaml"
MANIFESTS = sorted(p.name for p in KUBERNETES.glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_errors(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{doc.get('kind')}: {error.message} at {list(error.path)}"
    return None


def _compose_errors(doc: dict[str, Any]) -> list[str]:
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, f"{SCHEMA} is not the pinned one"
    validator = jsonschema.Draft7Validator(json.loads(raw))
    return [f"{e.message} at {list(e.path)}" for e in validator.iter_errors(doc)]


def test_the_manifests_hold_what_the_guide_names() -> None:
    kinds = sorted(
        (doc["kind"], doc["metadata"]["name"])
        for m in MANIFESTS
        for doc in _documents(KUBERNETES / m)
    )
    assert kinds == [
        ("Deployment", "zmqpipeline-collector"),
        ("Deployment", "zmqpipeline-worker"),
        ("Job", "zmqpipeline-run"),
        ("Secret", "zmqpipeline-keys"),
        ("Service", "zmqpipeline-collector"),
        ("Service", "zmqpipeline-distributor"),
    ]


@pytest.mark.parametrize("name", MANIFESTS)
def test_kubernetes_manifest_validates(name: str) -> None:
    errors = [_k8s_errors(doc) for doc in _documents(KUBERNETES / name)]
    assert errors and not any(errors), errors


def test_a_misspelt_field_fails_kubernetes_validation() -> None:
    doc = _documents(KUBERNETES / "workers.yaml")[0]
    doc["spec"]["replica"] = doc["spec"].pop("replicas")
    assert "replica" in (_k8s_errors(doc) or "")


def test_compose_file_validates_against_the_compose_spec() -> None:
    doc = _documents(COMPOSE)[0]
    assert _compose_errors(doc) == []
    assert set(doc["services"]) == {"distributor", "collector", "worker"}
    assert doc["services"]["worker"]["deploy"]["replicas"] > 1


def test_a_bad_compose_file_fails() -> None:
    doc = _documents(COMPOSE)[0]
    doc["services"]["worker"]["replicas"] = 4  # belongs under deploy:
    doc["secrets"]["worker.key_secret"] = {"path": "./keys/worker.key_secret"}
    errors = _compose_errors(doc)
    assert any(e.startswith("'replicas' does not match") for e in errors), errors
    assert any(e.startswith("'path' does not match") for e in errors), errors


def test_every_secret_key_travels_as_a_secret_and_ports_match_the_services() -> None:
    services = _documents(COMPOSE)[0]["services"]
    for service in services.values():
        secret_env = service["environment"]["ZMQPIPELINE_CURVE_SECRET_KEY"]
        assert secret_env.startswith("/run/secrets/"), secret_env
        assert all(".key_secret" not in volume for volume in service.get("volumes", []))
    ports = {
        port["port"]
        for doc in _documents(KUBERNETES / "services.yaml")
        for port in doc["spec"]["ports"]
    }
    assert ports == {5555, 5556, 5557}  # app.py's defaults


def test_dockerfile_runs_as_non_root_from_the_wheel_only() -> None:
    text = (DEPLOY / "container" / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    copies = [line.split()[1] for line in lines if line.startswith("COPY")]
    assert copies == ["dist/zmqpipeline-*-py3-none-any.whl", "examples/deploy/app.py"]
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users == ["10001:10001"]
    assert (DEPLOY / "app.py").exists()
