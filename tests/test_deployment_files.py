"""The deployment files agree with the code they deploy, checked without Docker or a cluster.

docker-compose.yml, deploy/docker/Dockerfile (with .dockerignore) and deploy/k8s/ are parsed and held
against the settings classes the processes really read, and against DESIGN.md's shape: one MongoDB
per service, Kafka in KRaft mode, pinned images, non-root images installed from hashed pins. Each
check is a function that returns the problems it finds, so the tests can also show it catching a
broken file.
"""

from __future__ import annotations

import copy
import importlib
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared.auth import new_signing_key
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DIR = ROOT / "deploy" / "k8s"

SERVICES = ("merchants", "payments", "tourism", "insights")
PLATFORM = (*SERVICES, "gateway")
EMULATOR = "vnpay-emulator"
PORT = 8000

# What each image runs, and the only repository paths it may copy: its dependencies, shared/ and its
# own folder (the emulator needs no shared/).
APPS = {**{s: f"services.{s}.app:create_app" for s in SERVICES},
        "gateway": "gateway.app:create_app", EMULATOR: "deploy.vnpay_emulator.app:create_app"}
COPIES = {**{s: {"requirements.txt", "shared", f"services/{s}"} for s in SERVICES},
          "gateway": {"requirements.txt", "shared", "gateway"},
          EMULATOR: {"requirements.txt", "deploy/__init__.py", "deploy/vnpay_emulator"}}


# --- the settings each process reads ---------------------------------------------------------------

@cache
def settings_class(process: str) -> type[BaseSettings]:
    if process in SERVICES:
        module = importlib.import_module(f"services.{process}.app")
        found = {obj for obj in vars(module).values()
                 if isinstance(obj, type) and issubclass(obj, ServiceSettings) and obj is not ServiceSettings}
        # The most derived one, whether defined in app.py or imported into it.
        found = {cls for cls in found if not any(o is not cls and issubclass(o, cls) for o in found)}
        if len(found) != 1:
            raise LookupError(f"services.{process}.app: expected one ServiceSettings subclass, found {found}")
        return found.pop()
    if process == "gateway":
        from gateway.settings import GatewaySettings
        return GatewaySettings
    if process == EMULATOR:
        from deploy.vnpay_emulator.settings import EmulatorSettings
        return EmulatorSettings
    raise LookupError(f"no settings class known for {process!r}")


def env_names(cls: type[BaseSettings]) -> dict[str, bool]:
    """The env names pydantic-settings reads for `cls`, each with whether it holds a secret."""
    prefix = cls.model_config.get("env_prefix", "")
    names = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        secret = SecretStr in (info.annotation, *typing.get_args(info.annotation))
        names[(alias or prefix + name).upper()] = secret
    return names


# --- docker-compose.yml ----------------------------------------------------------------------------

def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services_of(compose: dict) -> dict[str, dict]:
    return compose.get("services") or {}


def target_of(service: dict) -> str | None:
    build = service.get("build")
    return build.get("target") if isinstance(build, dict) else None


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def image_name(image: str) -> str:
    reference = image.split("@", 1)[0]
    return reference.rsplit(":", 1)[0] if ":" in reference.rsplit("/", 1)[-1] else reference


def image_version(image: str) -> tuple[int, ...]:
    tag = image.split("@", 1)[0].rsplit(":", 1)[-1]
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", tag)
    return tuple(int(n) for n in match.groups()) if match else ()


_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::(?P<tag>\w[\w.-]*))?(?:@sha256:(?P<digest>[0-9a-f]{64}))?$")


def pin_problem(image: str) -> str | None:
    """None when `image` names one exact build: a digest, or a tag that starts with a full version."""
    match = _IMAGE.match(image or "")
    if not match:
        return f"{image!r} is not an image reference"
    if match["digest"]:
        return None
    if not match["tag"]:
        return f"{image!r} has no tag (that is `latest`)"
    if not image_version(image):
        return f"{image!r}: tag {match['tag']!r} is not an exact version"
    return None


_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|(?P<named>[A-Za-z_]\w*))")
_REQUIRED = re.compile(r"^\$\{[A-Za-z_]\w*:\?[^}]+\}$")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}."""
    def one(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, op = match["braced"] or match["named"], match["op"] or ""
        if name in env and (env[name] or not op.startswith(":")):
            return env[name]
        if op.endswith("?"):
            raise KeyError(f"{name} is required: {match['arg']}")
        return match["arg"] if op.endswith("-") else ""
    return _VAR.sub(one, value)


def required_variables(node) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(required_variables(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(required_variables(v) for v in node))
    if isinstance(node, str):
        return {m["braced"] for m in _VAR.finditer(node) if (m["op"] or "").endswith("?")}
    return set()


def addressed(value: str, names) -> set[str]:
    """The compose services that an env value reaches by name (host:port)."""
    return {name for name in names if re.search(rf"(?<![\w.-]){re.escape(name)}:\d+", value)}


def check_platform_services(compose: dict) -> list[str]:
    problems = []
    services = services_of(compose)
    for name in PLATFORM:
        service = services.get(name)
        if service is None:
            problems.append(f"{name}: missing (DESIGN.md names it)")
            continue
        build = service.get("build")
        if not isinstance(build, dict):
            problems.append(f"{name}: needs a build section with dockerfile and target")
            continue
        dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"{name}: build.dockerfile {dockerfile.relative_to(ROOT)} does not exist")
        elif build.get("target") != name:
            problems.append(f"{name}: builds target {build.get('target')!r}, expected {name!r}")
        elif name not in {stage.name for stage in parse_dockerfile(dockerfile.read_text())}:
            problems.append(f"{name}: {dockerfile.relative_to(ROOT)} has no stage {name!r}")
        if service.get("profiles"):
            problems.append(f"{name}: must start without a profile")
    emulators = [name for name, service in services.items() if target_of(service) == EMULATOR]
    if not emulators:
        problems.append(f"no service builds the {EMULATOR} target (wanted under the `sandbox` profile)")
    for name in emulators:
        if "sandbox" not in (services[name].get("profiles") or []):
            problems.append(f"{name}: the VNPay emulator is never deployed; run it only under `sandbox`")
    return problems


def check_images_pinned(compose: dict) -> list[str]:
    problems = []
    for name, service in services_of(compose).items():
        if "image" in service:
            problem = pin_problem(str(service["image"]))
            if problem:
                problems.append(f"{name}: {problem}")
        elif "build" not in service:
            problems.append(f"{name}: neither image nor build")
    return problems


def check_env_names(compose: dict) -> list[str]:
    """Every variable set on one of our processes is one its settings class reads."""
    problems = []
    for name, service in services_of(compose).items():
        process = target_of(service)
        if process is None:
            continue
        if process not in APPS:
            problems.append(f"{name}: builds {process!r}, which no settings class is known for")
            continue
        if "env_file" in service:
            problems.append(f"{name}: env_file hides variables from this check; list them under environment")
        cls = settings_class(process)
        unknown = sorted(set(environment(service)) - set(env_names(cls)))
        if unknown:
            problems.append(f"{name}: sets {', '.join(unknown)}, which {cls.__module__}.{cls.__name__} "
                            "does not read")
    return problems


def check_production(compose: dict) -> list[str]:
    """Production mode everywhere, and every secret from the operator's environment, never the file:
    production refuses a secret left at its development default."""
    problems = []
    for name, service in services_of(compose).items():
        process = target_of(service)
        if process not in APPS:
            continue
        names, env = env_names(settings_class(process)), environment(service)
        if "APP_ENV" in names and env.get("APP_ENV") != "production":
            problems.append(f"{name}: APP_ENV is {env.get('APP_ENV')!r}, expected 'production'")
        for var, secret in sorted(names.items()):
            if not secret:
                continue
            if var not in env:
                problems.append(f"{name}: secret {var} is not set")
            elif not _REQUIRED.match(env[var]):
                problems.append(f"{name}: secret {var} must come from the environment as ${{VAR:?message}}")
    return problems


def _replica_set(command) -> str | None:
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command or []]
    for i, arg in enumerate(args):
        if arg == "--replSet" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--replSet="):
            return arg.split("=", 1)[1]
    return None


def _mount_targets(service: dict) -> set[str]:
    targets = set()
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            targets.add(volume.get("target"))
        else:
            parts = str(volume).split(":")
            targets.add(parts[1] if len(parts) > 1 else parts[0])
    return targets


def check_own_databases(compose: dict) -> list[str]:
    """Each process that reads MONGODB_URI has a MongoDB replica set of its own, on a volume."""
    problems, owners = [], {}
    services = services_of(compose)
    for name, service in services.items():
        process = target_of(service)
        if process not in PLATFORM or "MONGODB_URI" not in env_names(settings_class(process)):
            continue
        uri = environment(service).get("MONGODB_URI")
        if not uri:
            problems.append(f"{name}: MONGODB_URI is not set")
            continue
        parts = urlsplit(uri)
        wanted_set = parse_qs(parts.query).get("replicaSet", [None])[0]
        for host in (h.rsplit(":", 1)[0] for h in parts.netloc.rsplit("@", 1)[-1].split(",")):
            db = services.get(host)
            if db is None or image_name(str(db.get("image", ""))) != "mongo":
                problems.append(f"{name}: MONGODB_URI host {host!r} is not a MongoDB service of this stack")
                continue
            if host in owners and owners[host] != name:
                problems.append(f"{name} and {owners[host]} share the database {host!r}")
            owners[host] = name
            if image_version(db["image"])[:1] != (7,):
                problems.append(f"{host}: {db['image']} is not MongoDB 7")
            running_set = _replica_set(db.get("command"))
            if running_set is None:
                problems.append(f"{host}: not started as a replica set (--replSet); transactions need one")
            elif wanted_set != running_set:
                problems.append(f"{name}: MONGODB_URI says replicaSet={wanted_set}, "
                                f"{host} runs --replSet {running_set}")
            if "/data/db" not in _mount_targets(db):
                problems.append(f"{host}: /data/db is not on a volume, so the data dies with the container")
    return problems


def check_kafka_kraft(compose: dict) -> list[str]:
    problems = []
    services = services_of(compose)
    for name, service in services.items():
        if "zookeeper" in name.lower() or "zookeeper" in str(service.get("image", "")).lower():
            problems.append(f"{name}: ZooKeeper has no place in a KRaft stack")
        problems += [f"{name}: sets {key}; Kafka must run in KRaft mode"
                     for key in environment(service) if "ZOOKEEPER" in key.upper()]
    brokers = {n: s for n, s in services.items() if image_name(str(s.get("image", ""))) == "apache/kafka"}
    if not brokers:
        return [*problems, "no apache/kafka service"]
    advertised, roles = set(), set()
    for name, service in brokers.items():
        env = environment(service)
        if image_version(service["image"]) < (3, 7):
            problems.append(f"{name}: {service['image']} is older than Kafka 3.7")
        node_roles = {r.strip() for r in env.get("KAFKA_PROCESS_ROLES", "").split(",") if r.strip()}
        if not node_roles:
            problems.append(f"{name}: KAFKA_PROCESS_ROLES is not set, so it is not a KRaft node")
        roles |= node_roles
        for key in ("KAFKA_NODE_ID", "KAFKA_CONTROLLER_LISTENER_NAMES"):
            if not env.get(key):
                problems.append(f"{name}: {key} is not set")
        if not any(env.get(f"KAFKA_CONTROLLER_QUORUM_{key}") for key in ("VOTERS", "BOOTSTRAP_SERVERS")):
            problems.append(f"{name}: no controller quorum (KAFKA_CONTROLLER_QUORUM_VOTERS)")
        log_dirs = env.get("KAFKA_LOG_DIRS")
        if not log_dirs or log_dirs not in _mount_targets(service):
            problems.append(f"{name}: KAFKA_LOG_DIRS must be set and on a volume (the image's is under /tmp)")
        listeners = env.get("KAFKA_ADVERTISED_LISTENERS", "").split(",")
        advertised |= {listener.split("://", 1)[-1] for listener in listeners}
    if not {"broker", "controller"} <= roles:
        problems.append(f"the KRaft nodes have roles {sorted(roles)}; broker and controller are both needed")
    for name, service in services.items():
        bootstrap = environment(service).get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap and not set(bootstrap.split(",")) <= advertised:
            problems.append(f"{name}: KAFKA_BOOTSTRAP_SERVERS={bootstrap} is not what the broker advertises")
    return problems


def has_healthcheck(service: dict, stages: list[Stage]) -> bool:
    """Its own in compose, or its image's HEALTHCHECK when built here."""
    if "healthcheck" in service:
        return not service["healthcheck"].get("disable")
    target = target_of(service)
    return bool(target) and any(keyword == "HEALTHCHECK" and not args.upper().startswith("NONE")
                                for keyword, args in instructions(stages, target))


def check_start_order(compose: dict) -> list[str]:
    """Each platform process waits until everything its environment addresses is healthy."""
    problems = []
    services = services_of(compose)
    stages = parse_dockerfile(DOCKERFILE.read_text())
    for name, service in services.items():
        if target_of(service) not in PLATFORM:
            continue
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        wanted = set().union(*(addressed(v, set(services) - {name}) for v in environment(service).values()))
        for dep in sorted(wanted):
            if (depends.get(dep) or {}).get("condition") != "service_healthy":
                problems.append(f"{name}: must depend on {dep} with condition service_healthy")
            if not has_healthcheck(services[dep], stages):
                problems.append(f"{dep}: has no healthcheck, so `{name}` cannot wait for it")
    return problems


COMPOSE_CHECKS = (check_platform_services, check_images_pinned, check_env_names, check_production,
                  check_own_databases, check_kafka_kraft, check_start_order)


# --- deploy/docker/Dockerfile and .dockerignore ----------------------------------------------------

@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Stage]:
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            stages.append(Stage(words[2] if len(words) == 3 and words[1].upper() == "AS" else None, words[0]))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def chain(stages: list[Stage], target: str) -> list[Stage]:
    """The stages `target` is built from, the external base image's first."""
    by_name = {s.name: s for s in stages if s.name}
    if target not in by_name:
        raise LookupError(f"no stage {target!r}")
    found = [by_name[target]]
    while found[0].base in by_name and len(found) <= len(stages):
        found.insert(0, by_name[found[0].base])
    return found


def instructions(stages: list[Stage], target: str) -> list[tuple[str, str]]:
    return [i for stage in chain(stages, target) for i in stage.instructions]


def words(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def copy_args(args: str) -> tuple[list[str], str, bool]:
    """(sources, destination, from another stage or image)."""
    tokens = words(args)
    flags = [t for t in tokens if t.startswith("--")]
    paths = [t for t in tokens if not t.startswith("--")]
    return paths[:-1], paths[-1], any(f.startswith("--from") for f in flags)


class DockerIgnore:
    """.dockerignore's rules: the last pattern matching a path or one of its parents decides."""

    def __init__(self, text: str):
        self.rules = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
            self.rules.append((negated, re.compile(self._regex(pattern))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return out + r"\Z"

    def excluded(self, path: str) -> bool:
        parts = Path(path).parts
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        verdict = False
        for negated, regex in self.rules:
            if any(regex.match(c) for c in candidates):
                verdict = not negated
        return verdict


def context_files(source: str, ignore: DockerIgnore) -> Iterator[Path]:
    path = ROOT / source
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if not ignore.excluded(file.relative_to(ROOT).as_posix()):
            yield file


def check_image(dockerfile: str, target: str, ignore: DockerIgnore) -> list[str]:
    stages = parse_dockerfile(dockerfile)
    try:
        built = chain(stages, target)
    except LookupError as exc:
        return [f"{target}: {exc}"]
    steps = [i for stage in built for i in stage.instructions]
    problems = []
    if problem := pin_problem(built[0].base):
        problems.append(f"{target}: base image {problem}")
    users = [args.split(":")[0] for keyword, args in steps if keyword == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append(f"{target}: runs as root (no USER, or USER root last)")
    installs = [args for keyword, args in steps
                if keyword == "RUN" and re.search(r"\bpip3?\s+install\b", args)]
    if not installs:
        problems.append(f"{target}: installs no dependencies")
    problems += [f"{target}: pip install without --require-hashes: {args}"
                 for args in installs if "--require-hashes" not in args]
    copied = set()
    for keyword, args in steps:
        if keyword == "ADD":
            problems.append(f"{target}: ADD fetches and unpacks; use COPY: {args}")
        if keyword not in ("COPY", "ADD"):
            continue
        sources, _, from_elsewhere = copy_args(args)
        if from_elsewhere:
            continue
        for source in sources:
            source = posixpath.normpath(source)
            copied.add(source)
            if not (ROOT / source).exists():
                problems.append(f"{target}: COPY source {source} does not exist")
            elif not any(True for _ in context_files(source, ignore)):
                problems.append(f"{target}: COPY source {source} is excluded by .dockerignore")
    if copied - COPIES.get(target, copied):
        problems.append(f"{target}: copies {sorted(copied - COPIES[target])}, which it does not run")
    if COPIES.get(target, copied) - copied:
        problems.append(f"{target}: does not copy {sorted(COPIES[target] - copied)}")
    health = [args for keyword, args in steps if keyword == "HEALTHCHECK"]
    if not health or "/healthz" not in health[-1]:
        problems.append(f"{target}: no HEALTHCHECK on /healthz")
    if not any(keyword == "EXPOSE" and str(PORT) in args.split() for keyword, args in steps):
        problems.append(f"{target}: does not EXPOSE {PORT}")
    commands = [words(args) for keyword, args in steps if keyword == "CMD"]
    expected = ["uvicorn", APPS.get(target), "--factory", "--port", str(PORT)]
    if not commands or not all(part in commands[-1] for part in expected):
        problems.append(f"{target}: CMD should run {' '.join(map(str, expected))}")
    return problems


def materialize(dockerfile: str, target: str, ignore: DockerIgnore, into: Path) -> Path:
    """The files the image's COPY steps put in place, under `into`; returns the WORKDIR."""
    workdir = "/"
    for keyword, args in instructions(parse_dockerfile(dockerfile), target):
        if keyword == "WORKDIR":
            workdir = posixpath.join(workdir, args)
        if keyword != "COPY":
            continue
        sources, dest, from_elsewhere = copy_args(args)
        if from_elsewhere:
            continue
        dest_dir = posixpath.join(workdir, dest)
        for source in sources:
            base = ROOT / source
            for file in context_files(source, ignore):
                if base.is_dir():
                    out = into / dest_dir.lstrip("/") / file.relative_to(base)
                elif dest.endswith("/"):
                    out = into / dest_dir.lstrip("/") / file.name
                else:
                    out = into / dest_dir.lstrip("/")
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, out)
    return into / workdir.lstrip("/")


# --- deploy/k8s/ ----------------------------------------------------------------------------------

def load_k8s() -> list[dict]:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    return [doc for resource in kustomization["resources"]
            for doc in yaml.safe_load_all((K8S_DIR / resource).read_text()) if doc]


def image_user(target: str) -> str:
    users = [args for keyword, args in instructions(parse_dockerfile(DOCKERFILE.read_text()), target)
             if keyword == "USER"]
    return users[-1].split(":")[0] if users else "root"


def _check_container_env(name: str, container: dict, config_maps: dict[str, dict]) -> list[str]:
    problems = []
    names = env_names(settings_class(name))
    defined: set[str] = set()
    for entry in container.get("env") or []:
        var, source = entry["name"], entry.get("valueFrom") or {}
        if var not in names:
            problems.append(f"{name}: sets {var}, which its settings do not read")
        if names.get(var) and "secretKeyRef" not in source:
            problems.append(f"{name}: secret {var} must come from a Secret (valueFrom.secretKeyRef)")
        if var == "APP_ENV" and entry.get("value") != "production":
            problems.append(f"{name}: APP_ENV is {entry.get('value')!r}, expected 'production'")
        ref = source.get("configMapKeyRef")
        if ref and ref["key"] not in config_maps.get(ref["name"], {}):
            problems.append(f"{name}: {var} reads ConfigMap {ref['name']}/{ref['key']}, which is not defined")
        # Kubernetes expands $(VAR) only from variables defined earlier in the list.
        for used in re.findall(r"\$\(([A-Za-z_]\w*)\)", str(entry.get("value", ""))):
            if used not in defined:
                problems.append(f"{name}: {var} uses $({used}) before it is defined")
        defined.add(var)
    problems += [f"{name}: secret {var} is not set"
                 for var, secret in names.items() if secret and var not in defined]
    return problems


def _container_port(container: dict, port) -> int | None:
    """A probe's or Service's port, by name or number, as the container's port number."""
    named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    return named.get(port, port)


def _check_pod(name: str, pod: dict) -> list[str]:
    problems = []
    container = pod["spec"]["containers"][0]
    image = str(container.get("image", ""))
    if problem := pin_problem(image):
        problems.append(f"{name}: {problem}")
    if not image_name(image).endswith(f"/{name}"):
        problems.append(f"{name}: runs image {image!r}, not the {name} image")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or _container_port(container, get.get("port")) != PORT:
            problems.append(f"{name}: {probe} should GET {path} on port {PORT}")
    security = {**(pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
    if security.get("runAsNonRoot") is not True:
        problems.append(f"{name}: runAsNonRoot is not set")
    if str(security.get("runAsUser")) != image_user(name):
        problems.append(f"{name}: runAsUser {security.get('runAsUser')} is not the image's user, "
                        f"{image_user(name)}")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation must be false")
    return problems


def check_k8s(docs: list[dict]) -> list[str]:
    problems = []
    objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}
    config_maps = {name: doc.get("data") or {}
                   for (kind, name), doc in objects.items() if kind == "ConfigMap"}
    service_ports = {name: {p.get("port") for p in doc["spec"].get("ports") or []}
                     for (kind, name), doc in objects.items() if kind == "Service"}
    problems += [f"{name}: only the platform's processes are deployed (never the VNPay emulator)"
                 for kind, name in objects if kind == "Deployment" and name not in PLATFORM]
    mongo_secrets: dict[str, str] = {}
    for name in PLATFORM:
        deployment, service = objects.get(("Deployment", name)), objects.get(("Service", name))
        if deployment is None or service is None:
            problems.append(f"{name}: needs a Deployment and a Service")
            continue
        pod = deployment["spec"]["template"]
        labels = pod["metadata"].get("labels") or {}
        for kind, selector in (("Deployment", deployment["spec"]["selector"]["matchLabels"]),
                               ("Service", service["spec"].get("selector"))):
            if not selector or not selector.items() <= labels.items():
                problems.append(f"{name}: the {kind}'s selector does not select the pods")
        if len(pod["spec"]["containers"]) != 1:
            problems.append(f"{name}: expected one container")
            continue
        container = pod["spec"]["containers"][0]
        problems += _check_pod(name, pod) + _check_container_env(name, container, config_maps)
        if not any(_container_port(container, p.get("targetPort")) == PORT for p in service["spec"]["ports"]):
            problems.append(f"{name}: the Service does not target port {PORT}")
        env = {e["name"]: e for e in container.get("env") or []}
        if "MONGODB_URI" in env_names(settings_class(name)):
            ref = ((env.get("MONGODB_URI") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            if not ref.get("name"):
                problems.append(f"{name}: MONGODB_URI must come from a Secret of its own")
            elif ref["name"] in mongo_secrets:
                problems.append(f"{name} and {mongo_secrets[ref['name']]} share the database Secret "
                                f"{ref['name']}")
            else:
                mongo_secrets[ref["name"]] = name
        for var, entry in env.items():
            upstream = re.fullmatch(r"https?://([a-z0-9-]+):(\d+)", str(entry.get("value", "")))
            answered = upstream and int(upstream[2]) in service_ports.get(upstream[1], {})
            if var.endswith("_URL") and upstream and not answered:
                problems.append(f"{name}: {var} points at {upstream[0]}, which no Service answers")
    return problems


# --- tests: docker-compose.yml ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.mark.parametrize("check", COMPOSE_CHECKS, ids=lambda c: c.__name__)
def test_compose(check, compose):
    assert check(compose) == []


def test_the_emulator_shares_the_terminal_with_payments(compose):
    services = services_of(compose)
    emulator = next(s for s in services.values() if target_of(s) == EMULATOR)
    payments = environment(services["payments"])
    for var in ("VNPAY_TMN_CODE", "VNPAY_HASH_SECRET", "BANK_NOTIFY_SECRET"):
        assert environment(emulator)[var] == payments[var], var


def _keys() -> tuple[str, str]:
    return new_signing_key()


@pytest.fixture(scope="module")
def operator_env(compose) -> dict[str, str]:
    """What an operator supplies for every variable the file requires."""
    private, public = _keys()
    known = {"AUTH_PRIVATE_KEY_PEM": private, "AUTH_PUBLIC_KEY_PEM": public, "VNPAY_TMN_CODE": "QTPROD01",
             "VNPAY_PAY_URL": "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html",
             "VNPAY_API_URL": "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction",
             "PUBLIC_BASE_URL": "https://pay.quangtri.example"}
    return {var: known.get(var, f"operator-{var.lower()}-7f3c9a1e5b2d4f60")
            for var in required_variables(compose)}


@pytest.mark.parametrize("name", [*PLATFORM, EMULATOR])
def test_settings_accept_the_compose_environment(name, compose, operator_env, monkeypatch):
    """The process would start: its settings validate, in production, with what compose gives it."""
    service = services_of(compose)[name]
    cls = settings_class(target_of(service))
    for var in env_names(cls):
        monkeypatch.delenv(var, raising=False)
    for var, value in environment(service).items():
        monkeypatch.setenv(var, interpolate(value, operator_env))
    settings = cls()
    if "APP_ENV" in env_names(cls):
        assert settings.app_env == "production"


def test_compose_refuses_to_start_without_the_secrets(compose):
    for var in ("AUTH_PRIVATE_KEY_PEM", "AUTH_PUBLIC_KEY_PEM", "VNPAY_HASH_SECRET", "BANK_NOTIFY_SECRET"):
        assert var in required_variables(compose)
    with pytest.raises(KeyError, match="AUTH_PRIVATE_KEY_PEM"):
        interpolate(environment(services_of(compose)["gateway"])["AUTH_PRIVATE_KEY_PEM"], {})


def _broken(compose: dict, change) -> dict:
    broken = copy.deepcopy(compose)
    change(broken["services"])
    return broken


@pytest.mark.parametrize(("check", "change", "expected"), [
    (check_platform_services, lambda s: s.pop("gateway"), "gateway: missing"),
    (check_platform_services, lambda s: s["tourism"]["build"].update(dockerfile="deploy/docker/Nope"),
     "does not exist"),
    (check_platform_services, lambda s: s[EMULATOR].pop("profiles"), "sandbox"),
    (check_images_pinned, lambda s: s["kafka"].update(image="apache/kafka:latest"), "not an exact version"),
    (check_images_pinned, lambda s: s["mongo-payments"].update(image="mongo"), "has no tag"),
    (check_images_pinned, lambda s: s["mongo-payments"].update(image="mongo:7"), "not an exact version"),
    (check_env_names, lambda s: s["merchants"]["environment"].update(MONGO_URL="x"), "sets MONGO_URL"),
    (check_production, lambda s: s["gateway"]["environment"].update(AUTH_PRIVATE_KEY_PEM="-----BEGIN"),
     "secret AUTH_PRIVATE_KEY_PEM must come from the environment"),
    (check_production, lambda s: s["insights"]["environment"].update(APP_ENV="local"), "APP_ENV is 'local'"),
    (check_own_databases, lambda s: s["tourism"]["environment"].update(
        MONGODB_URI="mongodb://mongo-merchants:27017/?replicaSet=rs0"), "share the database"),
    (check_own_databases, lambda s: s["mongo-insights"].update(command=["mongod"]),
     "not started as a replica set"),
    (check_own_databases, lambda s: s["mongo-gateway"].pop("volumes"), "not on a volume"),
    (check_kafka_kraft, lambda s: s.update(zookeeper={"image": "zookeeper:3.9.3"}), "ZooKeeper"),
    (check_kafka_kraft, lambda s: s["kafka"]["environment"].pop("KAFKA_PROCESS_ROLES"), "not a KRaft node"),
    (check_kafka_kraft, lambda s: s["payments"]["environment"].update(KAFKA_BOOTSTRAP_SERVERS="kafka:29092"),
     "not what the broker advertises"),
    (check_start_order, lambda s: s["gateway"]["depends_on"].pop("payments"),
     "gateway: must depend on payments"),
])
def test_a_broken_compose_file_is_caught(check, change, expected, compose):
    assert not any(expected in p for p in check(compose))
    problems = check(_broken(compose, change))
    assert any(expected in p for p in problems), problems


# --- tests: the images -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dockerignore() -> DockerIgnore:
    return DockerIgnore(DOCKERIGNORE.read_text())


@pytest.mark.parametrize("target", list(APPS))
def test_image(target, dockerignore):
    assert check_image(DOCKERFILE.read_text(), target, dockerignore) == []


def test_the_build_context_leaves_out_what_no_image_runs(dockerignore):
    for path in (".venv/bin/python", ".run/keys/auth_ed25519.pem", ".git/config", ".env",
                 "services/payments/tests/x.py", "shared/tests/test_bus.py", "tests/test_dev_up.py",
                 "gateway/__pycache__/app.cpython-311.pyc", "deploy/stack.py", "docker-compose.yml"):
        assert dockerignore.excluded(path), path
    for path in ("requirements.txt", "shared/settings.py", "services/payments/app.py", "gateway/app.py",
                 "deploy/vnpay_emulator/app.py"):
        assert not dockerignore.excluded(path), path


@pytest.mark.parametrize("target", list(APPS))
def test_image_files_are_enough_to_build_the_app(target, dockerignore, compose, operator_env, tmp_path):
    """Only what the image copies, imported by a Python that cannot see the checkout, with the environment
    compose gives it: nothing is missing."""
    service = next(s for s in services_of(compose).values() if target_of(s) == target)
    env = {var: interpolate(value, operator_env) for var, value in environment(service).items()}
    workdir = materialize(DOCKERFILE.read_text(), target, dockerignore, tmp_path)
    module, factory = APPS[target].split(":")
    code = (f"import sys; sys.path.insert(0, {str(workdir)!r}); import importlib; "
            f"app = getattr(importlib.import_module({module!r}), {factory!r})(); "
            f"leaked = [m for m in sys.modules.values() if getattr(m, '__file__', None) "
            f"and m.__file__.startswith({str(ROOT)!r} + '/') and '/.venv/' not in m.__file__]; "
            f"assert not leaked, leaked")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env}
    done = subprocess.run([sys.executable, "-I", "-c", code], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("FROM python:3.11.7-slim-bookworm AS", "FROM python:latest AS", "not an exact version"),
    ("FROM python:3.11.7-slim-bookworm AS", "FROM python AS", "has no tag"),
    ("USER 10001:10001", "USER root", "runs as root"),
    ("USER 10001:10001", "", "runs as root"),
    ("--require-hashes ", "", "without --require-hashes"),
    ("COPY services/merchants/ services/", "COPY services/merchant/ services/", "does not exist"),
    ("COPY services/merchants/ services/merchants/", "COPY services/ services/", "which it does not run"),
    ("COPY shared/ shared/", "", "does not copy"),
    ("COPY requirements.txt", "ADD requirements.txt", "use COPY"),
    ("/healthz", "/", "no HEALTHCHECK on /healthz"),
    ("EXPOSE 8000", "EXPOSE 9000", "does not EXPOSE"),
    ("services.merchants.app:create_app", "services.payments.app:create_app", "CMD should run"),
])
def test_a_broken_dockerfile_is_caught(old, new, expected, dockerignore):
    """Each case changes the real Dockerfile in one place; the merchants image's check finds it."""
    text = DOCKERFILE.read_text()
    assert old in text
    assert not any(expected in p for p in check_image(text, "merchants", dockerignore))
    problems = check_image(text.replace(old, new), "merchants", dockerignore)
    assert any(expected in p for p in problems), problems


def test_dockerignore_rules_are_docker_s():
    rules = DockerIgnore("*\n!keep/\n**/tests/\n!keep/tests/conftest.py\n")
    assert rules.excluded("other.txt") and rules.excluded("other/deep/file.py")
    assert not rules.excluded("keep/a/b.py")
    assert rules.excluded("keep/tests/test_x.py") and rules.excluded("keep/a/tests/test_y.py")
    assert not rules.excluded("keep/tests/conftest.py")


# --- tests: deploy/k8s/ ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return load_k8s()


def test_k8s(k8s):
    assert check_k8s(k8s) == []


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}


def _container(docs: list[dict], name: str) -> dict:
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)[
        "spec"]["template"]["spec"]["containers"][0]


def _env(docs: list[dict], name: str, var: str) -> dict:
    return next(e for e in _container(docs, name)["env"] if e["name"] == var)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: _container(d, "tourism")["readinessProbe"]["httpGet"].update(path="/healthz"),
     "tourism: readinessProbe should GET /readyz"),
    (lambda d: _container(d, "gateway")["livenessProbe"]["httpGet"].update(port=8080),
     "gateway: livenessProbe should GET /healthz"),
    (lambda d: _container(d, "insights").update(image="quangtri/insights:latest"), "not an exact version"),
    (lambda d: _container(d, "merchants")["securityContext"].update(runAsUser=0), "runAsUser 0"),
    (lambda d: _env(d, "gateway", "AUTH_PRIVATE_KEY_PEM").update(value="-----BEGIN", valueFrom={}),
     "secret AUTH_PRIVATE_KEY_PEM must come from a Secret"),
    (lambda d: _env(d, "payments", "MONGODB_URI")["valueFrom"]["secretKeyRef"].update(name="tourism-mongodb"),
     "share the database Secret"),
    (lambda d: _container(d, "merchants")["env"].append({"name": "MONGO_URL", "value": "x"}),
     "sets MONGO_URL"),
    (lambda d: _env(d, "gateway", "PAYMENTS_URL").update(value="http://payment:8000"),
     "which no Service answers"),
    (lambda d: _container(d, "payments")["env"].reverse(), "before it is defined"),
    (lambda d: d.append({"kind": "Deployment", "metadata": {"name": EMULATOR}}), "never the VNPay emulator"),
])
def test_a_broken_manifest_is_caught(change, expected, k8s):
    assert not any(expected in p for p in check_k8s(k8s))
    broken = copy.deepcopy(k8s)
    change(broken)
    problems = check_k8s(broken)
    assert any(expected in p for p in problems), problems
