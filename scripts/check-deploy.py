#!/usr/bin/env python3
"""Checks the deployment files that cannot run here (no Docker engine, no cluster).

- docker-compose.yml against the Compose Specification's JSON schema (check-jsonschema's
  vendored `compose-spec`), then what the schema cannot see: every secret comes from .env with
  a message when missing, ports are published on 127.0.0.1 only, one service builds the image
  the others run, every `depends_on` names a service, the server waits for migrate and seed, and
  its stop grace period covers the shutdown deadline.
- deploy/kubernetes/*.yaml against the Kubernetes OpenAPI schemas, strictly (kubernetes-validate),
  for the oldest and newest versions we support, then: probes on the internal port, the grace
  period covers preStop + the shutdown deadline, config and secrets by reference only.
- Dockerfile: a non-root user, a health check, a supported Node, cached cargo dependencies.

Usage: python3 scripts/check-deploy.py   (exit 1 with every problem listed)
"""

import glob
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSIONS = ["1.30.0", "1.37.0"]
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    print(result.stdout.strip() or result.stderr.strip())
    check(result.returncode == 0, f"{' '.join(cmd[:3])}: failed:\n{result.stdout}{result.stderr}")


def compose():
    path = ROOT / "docker-compose.yml"
    run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)])
    text = path.read_text()
    doc = yaml.safe_load(text)
    services = doc["services"]
    for secret in ["POSTGRES_PASSWORD", "SECURECART_JWT_SECRET"]:
        check(re.search(r"\$\{" + secret + r":\?[^}]+\}", text), f"compose: {secret} must be ${{{secret}:?message}}")
    check(not re.search(r"change-me|securecart:securecart@", text), "compose: a committed secret")
    builders = [n for n, s in services.items() if "build" in s]
    check(builders == ["server"], f"compose: exactly one service builds (server), not {builders}")
    image = services["server"].get("image")
    for name, s in services.items():
        for port in s.get("ports", []):
            check(str(port).startswith("127.0.0.1:"), f"compose: {name} publishes {port} beyond loopback")
        for dep in s.get("depends_on", []) or []:
            check(dep in services, f"compose: {name} depends on unknown {dep}")
        if s.get("image", "").startswith("securecart"):
            check(s["image"] == image, f"compose: {name} runs {s.get('image')}, not the built {image}")
            env = s.get("environment", {})
            check(env.get("SECURECART_ENV", "").startswith("${SECURECART_ENV:-production}"), f"compose: {name} not production by default")
    server = services["server"]
    check(server["depends_on"]["seed"]["condition"] == "service_completed_successfully", "compose: server must wait for seed")
    check(services["seed"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", "compose: seed must wait for migrate")
    check("--if-empty" in services["seed"]["command"], "compose: seed must succeed when rerun (--if-empty)")
    check("healthcheck" in server, "compose: the server needs a healthcheck")
    deadline = int(server["environment"]["SECURECART_SHUTDOWN_DEADLINE_SECS"])
    grace = int(str(server["stop_grace_period"]).rstrip("s"))
    check(grace >= deadline + 1, f"compose: stop_grace_period {grace}s < deadline {deadline}s + 1")
    example = (ROOT / ".env.example").read_text()
    for secret in ["POSTGRES_PASSWORD", "SECURECART_JWT_SECRET"]:
        check(re.search(rf"^{secret}=$", example, re.M), f".env.example: {secret} must be listed, empty")
    check(".env" in (ROOT / ".gitignore").read_text().split(), ".gitignore: .env must be ignored")


def kubernetes():
    files = sorted(glob.glob(str(ROOT / "deploy/kubernetes/*.yaml")))
    check(files, "deploy/kubernetes: no manifests")
    for version in K8S_VERSIONS:
        run(["kubernetes-validate", "--strict", "--quiet", "-k", version, *files])
    docs = {d["kind"]: d for f in files for d in yaml.safe_load_all(Path(f).read_text()) if d}
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "ConfigMap"]:
        check(kind in docs, f"kubernetes: no {kind}")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"]:
        check(container.get(probe, {}).get("httpGet", {}).get("port") == "internal", f"kubernetes: {probe} on the internal port")
    check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "kubernetes: readiness is /readyz")
    deadline = int(docs["ConfigMap"]["data"]["SECURECART_SHUTDOWN_DEADLINE_SECS"])
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod["terminationGracePeriodSeconds"]
    check(grace >= pause + deadline + 1, f"kubernetes: grace {grace}s < preStop {pause}s + deadline {deadline}s + 1")
    check(all("value" not in e for e in container.get("env", [])), "kubernetes: settings by reference only (envFrom)")
    refs = [list(e)[0] for e in container["envFrom"]]
    check(refs == ["configMapRef", "secretRef"], f"kubernetes: envFrom config and secret, got {refs}")
    check("resources" in container and "requests" in container["resources"], "kubernetes: resources")


def dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    check(re.search(r"^USER (?!root|0\b)", text, re.M), "Dockerfile: runs as root")
    check("HEALTHCHECK" in text, "Dockerfile: no HEALTHCHECK")
    check("--mount=type=cache,target=/usr/local/cargo/registry" in text, "Dockerfile: dependencies not cached")
    node = re.search(r"FROM node:(\d+)", text)
    check(node and int(node.group(1)) >= 22, "Dockerfile: Node older than 22")
    check("COPY --from=assets /playground/node_modules" not in text, "Dockerfile: copies all of node_modules")


compose()
kubernetes()
dockerfile()
if problems:
    print("\n".join(f"PROBLEM: {p}" for p in problems))
    sys.exit(1)
print("deployment files: compose, Kubernetes manifests and Dockerfile check out")
