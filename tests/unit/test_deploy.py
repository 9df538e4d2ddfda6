"""The files under deploy/, checked for what breaks silently when they drift from the code.

Nothing here runs Docker or Kubernetes: the files are parsed and held against
pyproject.toml, coordinator/config.py, the coordinator's CLI flags and the worker SDK.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import importlib
import inspect
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from coordinator import config
from worker_sdk import Worker

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
PORT = config.DEFAULT_PORT
IMAGE = "stepline"  # the image name the Kubernetes manifests use (kustomization `images:`)

COORDINATOR_ENV = frozenset(env for env, _ in config._ENV.values())
WORKER_ENV = frozenset({"STEPLINE_ADDRESS", "STEPLINE_WORKER_ID", "STEPLINE_API_KEY"})
WORKER_SHUTDOWN_GRACE = float(inspect.signature(Worker).parameters["shutdown_grace"].default)

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@functools.cache
def _docs(path: Path) -> tuple[dict[str, Any], ...]:
    docs = tuple(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    assert all(isinstance(d, dict) for d in docs), f"{_rel(path)}: every document must be a mapping"
    return docs


def _seconds(duration: str | int) -> float:
    """A compose duration ("30s", "1m30s") in seconds."""
    if isinstance(duration, int):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * unit[u] for n, u in parts)


# --- the Dockerfile ------------------------------------------------------------------------


@dataclass
class Image:
    """What the Dockerfile's stages say, as far as these tests need it."""

    base_images: list[str] = field(default_factory=list)
    build_copies: list[str] = field(default_factory=list)
    build_runs: list[str] = field(default_factory=list)
    copies: list[tuple[list[str], str, str]] = field(default_factory=list)  # final stage
    workdir: str = "/"
    user: str = ""
    expose: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)

    def repo_file(self, path: str, workdir: str | None = None) -> Path | None:
        """The repository file the final image has at ``path`` (relative to ``workdir``)."""
        target = PurePosixPath(workdir or self.workdir) / path
        for sources, dest, at in reversed(self.copies):
            dest_path = PurePosixPath(at) / dest
            for src in sources:
                local = ROOT / src
                if local.is_dir() or dest.endswith("/"):
                    base = dest_path if local.is_dir() else dest_path / local.name
                    if local.is_dir() and target.is_relative_to(base):
                        return local / target.relative_to(base)
                    if not local.is_dir() and target == base:
                        return local
                elif target == dest_path:
                    return local
        return None


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    line = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also comment lines inside a continued instruction
        if stripped.endswith("\\"):
            line += stripped[:-1] + " "
            continue
        keyword, _, rest = (line + stripped).partition(" ")
        line = ""
        yield keyword.upper(), rest.strip()


@functools.cache
def _image() -> Image:
    image = Image()
    args: dict[str, str] = {}
    stage = -1
    for keyword, rest in _instructions((DEPLOY / "Dockerfile").read_text()):
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            stage += 1
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], rest.split()[0])
            image.base_images.append(base)
            image.copies, image.workdir = [], "/"
        elif keyword == "WORKDIR":
            image.workdir = str(PurePosixPath(image.workdir) / rest)
        elif keyword in ("COPY", "ADD"):
            words = rest.split()
            if any(w.startswith("--from") for w in words):
                continue
            *sources, dest = [w for w in words if not w.startswith("--")]
            image.copies.append((sources, dest, image.workdir))
            image.build_copies.extend(sources)
        elif keyword == "RUN":
            image.build_runs.append(rest)
        elif keyword == "USER":
            image.user = rest
        elif keyword == "EXPOSE":
            image.expose = [int(p.split("/")[0]) for p in rest.split()]
        elif keyword == "ENV":
            image.env.update(dict(pair.split("=", 1) for pair in rest.split()))
        elif keyword == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        elif keyword == "CMD":
            image.cmd = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            image.healthcheck = json.loads(rest.partition(" CMD ")[2])
    assert stage >= 1, "the Dockerfile should be multi-stage"
    return image


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dockerfile_base_user_and_port() -> None:
    image = _image()
    assert set(image.base_images) == {"python:3.11-slim"}
    uid, _, gid = image.user.partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify the image's user.
    assert uid.isdigit(), f"USER {image.user!r} must be numeric"
    assert int(uid) != 0, "the image must not run as root"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert image.expose == [PORT]
    assert image.env.get("STEPLINE_DATA_DIR") == "/data"


def test_dockerfile_entrypoint_is_the_stepline_console_script() -> None:
    image = _image()
    scripts = _pyproject()["project"]["scripts"]
    assert image.entrypoint == ["stepline"]
    module, _, function = scripts["stepline"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    _check_stepline_argv(["stepline", *image.cmd])
    assert image.cmd[image.cmd.index("--host") + 1] == "0.0.0.0"


def test_dockerfile_installs_everything_pip_install_needs() -> None:
    image = _image()
    project = _pyproject()
    copied = {src.rstrip("/") for src in image.build_copies}
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    setuptools = project["tool"]["setuptools"]
    for package in setuptools["packages"]:
        top = package.split(".")[0]
        source = setuptools["package-dir"].get(top, top).split("/")[0]
        assert source in copied, f"package {package} ({source}/) is not copied into the build stage"
    installs = [m for run in image.build_runs for m in re.findall(r"pip install \"?\.(?:\[([\w,]*)\])?", run)]
    assert installs, "the build stage should `pip install .`"
    extras = project["project"]["optional-dependencies"]
    assert all(extra in extras for group in installs for extra in group.split(",") if extra)
    # The image runs `stepline serve`: it needs the coordinator's dependencies.
    assert any("coordinator" in group.split(",") for group in installs)


def test_dockerfile_healthcheck_runs_the_shipped_script() -> None:
    image = _image()
    assert image.healthcheck[0] == "python"
    assert image.repo_file(image.healthcheck[1]) == DEPLOY / "healthcheck.py"


def test_dockerignore_keeps_local_state_out_and_sources_in() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".venv", ".git", ".stepline", "bench/out"} <= set(patterns)

    def ignored(path: str) -> bool:
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/"))
            for pat in patterns
            for p in prefixes
        )

    for src in _image().build_copies:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert not ignored(src.rstrip("/")), f"COPY {src} is excluded by .dockerignore"


# --- the containers of compose.yaml and kubernetes/ -----------------------------------------


@dataclass(frozen=True)
class Container:
    """A container that runs the Stepline image, wherever it is declared."""

    where: str
    argv: list[str]
    env: dict[str, str | None]  # a value from a Secret is None
    workdir: str | None = None

    @property
    def runs_coordinator(self) -> bool:
        return self.argv[0] == "stepline"


def _argv(command: list[str] | None, args: list[str] | None) -> list[str]:
    # Docker and Kubernetes alike: a new entrypoint/command drops the image's CMD.
    image = _image()
    if command is not None:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args if args is not None else image.cmd)]


def _compose() -> dict[str, Any]:
    (doc,) = _docs(DEPLOY / "compose.yaml")
    return doc


def _compose_env(service: Mapping[str, Any]) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return {k: v for k, _, v in (str(item).partition("=") for item in env)}
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def _compose_containers() -> list[Container]:
    found = []
    for name, service in _compose()["services"].items():
        build = service.get("build")
        if isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile":
            argv = _argv(service.get("entrypoint"), service.get("command"))
            found.append(Container(f"compose.yaml: {name}", argv, _compose_env(service)))
    return found


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in sorted(K8S.glob("*.yaml")) if p != KUSTOMIZATION for d in _docs(p)]


def _resources() -> list[dict[str, Any]]:
    return [d for p, d in _manifests() if p != SECRET_EXAMPLE]


def _kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _resources() if d["kind"] == kind}


def _pod_containers(pod: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def _k8s_containers() -> list[Container]:
    found = []
    for name, deployment in _kind("Deployment").items():
        for c in _pod_containers(deployment["spec"]["template"]["spec"]):
            if c["image"] == IMAGE:
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                argv = _argv(c.get("command"), c.get("args"))
                found.append(Container(f"{name}/{c['name']}", argv, env, c.get("workingDir")))
    return found


def _all_containers() -> list[Container]:
    return _compose_containers() + _k8s_containers()


def _check_stepline_argv(argv: list[str]) -> None:
    """Parses ``argv`` as `stepline ...` would (with coordinator.cli's default of serve)."""
    assert argv[0] == "stepline"
    rest = argv[1:]
    command = "serve" if not rest or rest[0].startswith("-") else rest.pop(0)
    assert command in ("serve", "migrate"), f"stepline has no command {command!r}"
    parser = argparse.ArgumentParser(prog=f"stepline {command}", exit_on_error=False)
    config.add_arguments(parser, database_only=command == "migrate")
    args, unknown = parser.parse_known_args(rest)
    assert not unknown, f"stepline {command} has no flags {unknown}"
    config.load(args, environ={})  # values in range


def test_every_yaml_file_parses() -> None:
    assert YAML_FILES
    for path in YAML_FILES:
        assert _docs(path), f"{_rel(path)} is empty"


def test_containers_run_real_commands() -> None:
    containers = _all_containers()
    assert {c.runs_coordinator for c in containers} == {True, False}
    for c in containers:
        if c.runs_coordinator:
            _check_stepline_argv(c.argv)
        else:
            assert c.argv[:1] == ["python"], c.where
            script = _image().repo_file(c.argv[1], c.workdir)
            assert script is not None, f"{c.where}: {c.argv[1]} is not in the image"
            assert script.is_file(), f"{c.where}: {c.argv[1]} is not in the repository"


def test_env_names_are_real_settings() -> None:
    for c in _all_containers():
        allowed = COORDINATOR_ENV if c.runs_coordinator else WORKER_ENV
        assert set(c.env) <= allowed, f"{c.where}: unknown or misplaced {sorted(set(c.env) - allowed)}"
    known = COORDINATOR_ENV | WORKER_ENV
    for path in [*YAML_FILES, DEPLOY / "Dockerfile", DEPLOY / "README.md"]:
        names = set(re.findall(r"\bSTEPLINE_[A-Z0-9_]+", path.read_text()))
        assert names <= known, f"{_rel(path)} names unknown settings {sorted(names - known)}"


def test_coordinators_are_given_a_database() -> None:
    # Without one the coordinator starts an embedded PostgreSQL inside the container.
    for c in _all_containers():
        if c.runs_coordinator:
            assert "STEPLINE_DATABASE_URL" in c.env, c.where


# --- compose.yaml --------------------------------------------------------------------------


def test_compose_services_reference_defined_volumes_and_services() -> None:
    compose = _compose()
    services = compose["services"]
    volumes = compose.get("volumes") or {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else str(volume).split(":")[0]
            if not source.startswith((".", "/", "~", "$")):
                assert source in volumes, f"service {name} uses undefined volume {source!r}"
        depends = service.get("depends_on", {})
        for dep, spec in depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends):
            assert dep in services, f"service {name} depends on undefined service {dep!r}"
            if spec.get("condition") == "service_healthy":
                check = services[dep].get("healthcheck", {})
                assert check.get("test"), f"{dep} has no healthcheck"
                assert not check.get("disable"), f"{dep} has its healthcheck disabled"


def test_compose_wiring() -> None:
    services = _compose()["services"]
    postgres, coordinator, worker = services["postgres"], services["coordinator"], services["worker"]
    major = int(str(postgres["image"]).partition(":")[2].split(".")[0])
    assert major >= 18
    # From 18 on the postgres image keeps PGDATA under /var/lib/postgresql/<major>/docker.
    assert any(str(v).endswith(":/var/lib/postgresql") for v in postgres["volumes"])

    url = urlsplit(_compose_env(coordinator)["STEPLINE_DATABASE_URL"] or "")
    pg_env = _compose_env(postgres)
    assert (url.hostname, url.port or 5432) == ("postgres", 5432)
    assert url.username == pg_env["POSTGRES_USER"]
    assert url.password == pg_env["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == pg_env["POSTGRES_DB"]

    assert [int(str(p).rsplit(":", 1)[1]) for p in coordinator["ports"]] == [PORT]
    assert coordinator["healthcheck"]["test"][0] == "CMD"
    probe = coordinator["healthcheck"]["test"][1:]
    assert probe[0] == "python"
    assert _image().repo_file(probe[1]) == DEPLOY / "healthcheck.py"
    assert _compose_env(worker)["STEPLINE_ADDRESS"] == f"coordinator:{PORT}"
    assert worker["healthcheck"] == {"disable": True}  # the image's check probes a coordinator


def test_compose_stop_grace_periods() -> None:
    services = _compose()["services"]
    for name in ("postgres", "coordinator", "worker"):
        assert "stop_grace_period" in services[name], name
    assert _seconds(services["worker"]["stop_grace_period"]) > WORKER_SHUTDOWN_GRACE
    assert _seconds(services["coordinator"]["stop_grace_period"]) > 5  # its gRPC grace


# --- kubernetes/ ---------------------------------------------------------------------------


def test_manifests_are_named_and_namespace_agnostic() -> None:
    for path, doc in _manifests():
        assert doc.get("apiVersion"), _rel(path)
        assert doc.get("kind"), _rel(path)
        assert doc.get("metadata", {}).get("name"), f"{_rel(path)}: {doc['kind']} has no name"
        assert "namespace" not in doc["metadata"], f"{_rel(path)} pins a namespace"


def test_kustomization_lists_existing_manifests() -> None:
    (kustomization,) = _docs(KUSTOMIZATION)
    resources = kustomization["resources"]
    assert "namespace" not in kustomization
    for resource in resources:
        assert (K8S / resource).is_file(), f"kustomization lists missing {resource}"
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {KUSTOMIZATION.name, SECRET_EXAMPLE.name}
    assert set(resources) == on_disk, "every manifest but the secret example belongs in resources"
    assert [i["name"] for i in kustomization["images"]] == [IMAGE]


def test_deployment_selectors_match_template_labels() -> None:
    for name, deployment in _kind("Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector, name
        assert selector.items() <= labels.items(), f"{name}: selector does not match the pod labels"


def test_service_selects_only_the_coordinator_on_its_grpc_port() -> None:
    deployments = _kind("Deployment")
    (service,) = _kind("Service").values()
    selector = service["spec"]["selector"].items()
    for name, deployment in deployments.items():
        selected = selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert selected == (name == "stepline-coordinator"), f"the Service selecting {name}: {selected}"
    (port,) = service["spec"]["ports"]
    assert service["spec"]["type"] == "ClusterIP"
    assert (port["port"], port["appProtocol"]) == (PORT, "grpc")
    (container,) = deployments["stepline-coordinator"]["spec"]["template"]["spec"]["containers"]
    target = {p.get("name"): p["containerPort"] for p in container["ports"]}.get(port["targetPort"])
    assert (target or port["targetPort"]) == PORT


def test_container_ports_and_probes_use_the_coordinator_port() -> None:
    for name, deployment in _kind("Deployment").items():
        for c in _pod_containers(deployment["spec"]["template"]["spec"]):
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            expected = {"grpc": PORT, "metrics": int(env.get("STEPLINE_METRICS_PORT") or 0)}
            assert all(p["containerPort"] == expected.get(p["name"]) for p in c.get("ports", [])), name
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in c:
                    assert c[kind]["grpc"]["port"] == PORT, f"{name}/{c['name']} {kind}"
    (coordinator,) = _kind("Deployment")["stepline-coordinator"]["spec"]["template"]["spec"]["containers"]
    assert "grpc" in coordinator["readinessProbe"]
    assert "grpc" in coordinator["livenessProbe"]


def test_coordinators_share_the_database_and_workers_outlive_their_grace() -> None:
    deployments = _kind("Deployment")
    coordinator = deployments["stepline-coordinator"]["spec"]
    # Several coordinators on one database are supported (tests/integration/test_two_coordinators.py):
    # two replicas, and a rolling update that never goes below them.
    assert coordinator["replicas"] == 2
    assert coordinator["strategy"]["type"] == "RollingUpdate"
    assert coordinator["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert [c["args"] for c in coordinator["template"]["spec"]["initContainers"]] == [["migrate"]]
    worker = deployments["stepline-worker"]["spec"]
    assert worker["replicas"] == 2
    assert worker["template"]["spec"]["terminationGracePeriodSeconds"] > WORKER_SHUTDOWN_GRACE
    assert coordinator["template"]["spec"]["terminationGracePeriodSeconds"] > 5


def test_pods_run_as_the_image_user_without_privileges() -> None:
    uid, _, gid = _image().user.partition(":")
    for name, deployment in _kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert str(security.get("runAsUser", uid)) == uid
        assert str(security.get("runAsGroup", gid)) == gid
        for c in _pod_containers(pod):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
            assert c.get("resources", {}).get("requests"), f"{name}/{c['name']} has no resource requests"


def test_secret_references_exist_in_the_example_secret() -> None:
    secrets = {d["metadata"]["name"]: d for _, d in _manifests() if d["kind"] == "Secret"}
    (example,) = _docs(SECRET_EXAMPLE)
    assert example["kind"] == "Secret"
    assert "CHANGE-ME" in str(example["stringData"])
    refs = 0
    for deployment in _kind("Deployment").values():
        for c in _pod_containers(deployment["spec"]["template"]["spec"]):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs += 1
                    assert ref["key"] in secrets[ref["name"]]["stringData"], f"{c['name']}: {ref}"
    assert refs


def test_worker_address_names_the_service() -> None:
    (service,) = _kind("Service").values()
    expected = f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    workers = [c for c in _k8s_containers() if not c.runs_coordinator]
    assert workers
    assert all(c.env["STEPLINE_ADDRESS"] == expected for c in workers)


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_has_no_tabs_or_duplicate_keys(path: Path) -> None:
    # PyYAML keeps the last of two equal keys; Kubernetes and compose may not. Both are typos.
    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader: Strict, node: yaml.MappingNode) -> dict[Any, Any]:
        keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value != "<<"]
        duplicates = {k for k in keys if keys.count(k) > 1}
        assert not duplicates, f"{_rel(path)} line {node.start_mark.line + 1}: duplicate {duplicates}"
        return loader.construct_mapping(node)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    assert "\t" not in path.read_text()
    list(yaml.load_all(path.read_text(), Loader=Strict))
