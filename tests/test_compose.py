"""Static checks of docker-compose.yml and the Dockerfile.

No Docker engine runs where these tests run, so nothing here calls docker:
the compose file is parsed with PyYAML, validated against the official
Compose JSON Schema, and then checked for the settings the deployment relies on.

The schema is validated against the raw YAML: `${VAR:?msg}` is compose
interpolation and `$$` is a literal `$` for the container's shell, neither is
expanded here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml  # pyyaml, from the test extra

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_SCHEMA = REPO_ROOT / "tests" / "data" / "compose-spec.json"  # kept in the repository: a clone has it

TENSORQ_SERVICES = ("worker-gpu", "worker-gpu0", "worker-cpu", "flower", "producer")
HEALTHCHECKED_SERVICES = ("redis", "worker-gpu", "worker-cpu", "flower")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    with COMPOSE_FILE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), "docker-compose.yml must be a YAML mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def argv(value) -> list[str]:
    """Return a compose `command`/`entrypoint` as a list of arguments."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(item) for item in value]


def full_command(service: dict) -> list[str]:
    """entrypoint + command, i.e. what the container runs."""
    return argv(service.get("entrypoint")) + argv(service.get("command"))


def option_value(args: list[str], option: str) -> str | None:
    """Value following `option` in an argument list (`--opt value` or `--opt=value`)."""
    for index, arg in enumerate(args):
        if arg == option and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a dict, whether written as a map or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def gpu_devices(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def published_ports(service: dict) -> list[tuple[str | None, str]]:
    """(host_ip, target) for every published port, short or long syntax."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            result.append((port.get("host_ip"), str(port.get("target"))))
            continue
        parts = str(port).split(":")
        if len(parts) == 3:
            result.append((parts[0], parts[2]))
        elif len(parts) == 2:
            result.append((None, parts[1]))
        else:  # only the container port: published on a random port of all interfaces
            result.append((None, parts[0]))
    return result


# ---------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_spec(compose):
    """
    Given the official Compose JSON Schema (tests/data/compose-spec.json)
    When docker-compose.yml is validated against it (Draft 7)
    Then there are no errors.
    """
    assert COMPOSE_SCHEMA.is_file(), (
        f"Compose JSON Schema not found at {COMPOSE_SCHEMA} (from compose-spec/compose-spec, "
        "schema/compose-spec.json)"
    )
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)

    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))

    assert not errors, "docker-compose.yml does not match the Compose schema:\n" + "\n".join(
        f"  {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_expected_services_exist(services):
    """
    Given docker-compose.yml
    Then it defines the broker, both workers, the pinned example, flower and the producer.
    """
    assert set(services) >= {"redis", *TENSORQ_SERVICES}


# ---------------------------------------------------------------------------
# GPU reservation
# ---------------------------------------------------------------------------


def test_gpu_worker_reserves_all_nvidia_gpus(services):
    """
    Given the worker-gpu service
    When its device reservations are read
    Then it reserves NVIDIA devices with the gpu capability
    And it starts `tensorq worker --gpus all`.
    """
    worker = services["worker-gpu"]
    devices = gpu_devices(worker)

    assert devices, "worker-gpu must reserve devices under deploy.resources.reservations.devices"
    gpu = devices[0]
    assert gpu.get("driver") == "nvidia"
    assert "gpu" in gpu.get("capabilities", [])
    assert str(gpu.get("count")) == "all"
    assert full_command(worker) == ["tensorq", "worker", "--gpus", "all"]


def test_gpu_worker_gets_time_for_a_warm_shutdown(services):
    """
    Given the worker-gpu service
    Then it is stopped with SIGTERM (Celery warm shutdown)
    And compose waits at least a minute before killing it.
    """
    worker = services["worker-gpu"]

    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    grace = str(worker.get("stop_grace_period", "10s"))
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", grace)
    assert match and grace, f"unexpected stop_grace_period {grace!r}"
    seconds = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    assert seconds >= 60, f"stop_grace_period {grace} is too short for a warm shutdown"


def test_pinned_gpu_worker_uses_device_ids_and_is_opt_in(services):
    """
    Given the worker-gpu0 example service
    Then it pins the reservation with device_ids (not count)
    And a profile keeps it out of a plain `docker compose up`.
    """
    pinned = services["worker-gpu0"]
    devices = gpu_devices(pinned)

    assert devices, "worker-gpu0 must reserve a device"
    assert devices[0].get("device_ids") == ["0"]
    assert "count" not in devices[0], "count and device_ids are mutually exclusive"
    assert devices[0].get("driver") == "nvidia"
    assert "gpu" in devices[0].get("capabilities", [])
    assert pinned.get("profiles"), "worker-gpu0 must be profile-gated"


def test_cpu_worker_runs_without_gpus(services):
    """
    Given the worker-cpu service
    Then it runs `tensorq worker --gpus none` from the CPU image, without a GPU reservation.
    """
    worker = services["worker-cpu"]

    assert full_command(worker) == ["tensorq", "worker", "--gpus", "none"]
    assert worker["build"]["target"] == "cpu"
    assert not gpu_devices(worker)


def test_services_are_built_from_the_right_dockerfile_targets(services):
    """
    Given the services built from the Dockerfile
    Then GPU workers use the gpu target and everything else the cpu target.
    """
    expected = {
        "worker-gpu": "gpu",
        "worker-gpu0": "gpu",
        "worker-cpu": "cpu",
        "flower": "cpu",
        "producer": "cpu",
    }
    targets = {name: services[name]["build"]["target"] for name in expected}

    assert targets == expected


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


def test_redis_persists_with_aof_and_requires_a_password(services):
    """
    Given the redis service
    Then it runs with `--appendonly yes`
    And `--requirepass` comes from a required REDIS_PASSWORD variable.
    """
    redis = services["redis"]
    args = full_command(redis)

    assert option_value(args, "--appendonly") == "yes"
    password = option_value(args, "--requirepass")
    assert password is not None and password.startswith("${REDIS_PASSWORD:?"), (
        "redis must use --requirepass ${REDIS_PASSWORD:?...} so compose refuses to start without a password"
    )


def test_redis_data_is_on_a_declared_named_volume(compose, services):
    """
    Given the redis service
    Then /data is mounted from a named volume declared at the top level.
    """
    mounts = [str(v).split(":") for v in services["redis"].get("volumes", [])]
    data_sources = [m[0] for m in mounts if len(m) >= 2 and m[1] == "/data"]

    assert data_sources, "redis /data must be on a volume"
    assert all(source in (compose.get("volumes") or {}) for source in data_sources)


def test_redis_is_not_published_on_all_interfaces(services):
    """
    Given the redis service
    Then its port is either not published or bound to the host loopback only.
    """
    for host_ip, target in published_ports(services["redis"]):
        assert host_ip == "127.0.0.1", (
            f"redis port {target} is published on all interfaces; bind it to 127.0.0.1"
        )


def test_redis_healthcheck_authenticates_without_leaking_a_warning(services):
    """
    Given the redis healthcheck
    Then it pings with the password from the container environment (`$$` escape)
    And suppresses redis-cli's warning about -a.
    """
    redis = services["redis"]
    test = " ".join(argv(redis["healthcheck"]["test"]))

    assert "redis-cli" in test and "ping" in test
    assert "--no-auth-warning" in test
    assert "$$REDIS_PASSWORD" in test
    assert "REDIS_PASSWORD" in environment(redis), (
        "the healthcheck reads $REDIS_PASSWORD inside the container"
    )
    assert redis.get("restart") in ("always", "unless-stopped", "on-failure")


# ---------------------------------------------------------------------------
# broker URL, healthchecks, flower, producer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TENSORQ_SERVICES)
def test_services_get_an_authenticated_broker_url(services, name):
    """
    Given a service that talks to Redis
    Then TENSORQ_BROKER_URL points at the redis service with the required password, unless .env names
    another broker (the Sentinels' URL, profile `sentinel`)
    And the service waits for Redis to be healthy.
    """
    service = services[name]
    given = environment(service).get("TENSORQ_BROKER_URL", "")
    assert given.startswith("${TENSORQ_BROKER_URL:-") and given.endswith("}"), f"{name}: {given!r}"
    url = given.removeprefix("${TENSORQ_BROKER_URL:-").removesuffix("}")

    assert url.startswith("redis://:${REDIS_PASSWORD:?"), f"{name}: {url!r}"
    assert url.endswith("@redis:6379/0"), f"{name}: {url!r}"
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", HEALTHCHECKED_SERVICES)
def test_long_running_services_have_healthchecks(services, name):
    """
    Given a long-running service
    Then it declares an enabled healthcheck with a test command.
    """
    healthcheck = services[name].get("healthcheck")

    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable", False)
    assert argv(healthcheck.get("test")), f"{name} healthcheck has no test"


@pytest.mark.parametrize("name", ["worker-gpu", "worker-cpu"])
def test_worker_healthcheck_asks_for_this_containers_workers(services, name):
    """
    Given a worker service
    Then its healthcheck runs `tensorq workers --here` (exit 1 when no worker of the container heartbeats).
    """
    test = argv(services[name]["healthcheck"]["test"])

    assert test[0] in ("CMD", "CMD-SHELL")
    assert " ".join(test[1:]) == "tensorq workers --here"


def test_flower_uses_required_basic_auth_and_loopback_port(services):
    """
    Given the flower service
    Then basic auth comes from a required FLOWER_BASIC_AUTH variable
    And the UI is only published on the host loopback
    And the healthcheck requests /healthcheck.
    """
    flower = services["flower"]
    args = full_command(flower)

    assert args[:2] == ["tensorq", "flower"]
    assert option_value(args, "--port") == "5555"
    auth = option_value(args, "--basic-auth")
    assert auth is not None and auth.startswith("${FLOWER_BASIC_AUTH:?"), auth
    assert published_ports(flower) == [("127.0.0.1", "5555")]
    assert "/healthcheck" in " ".join(argv(flower["healthcheck"]["test"]))


def test_producer_is_a_profile_gated_cli(services):
    """
    Given the producer service
    Then it only starts when asked for (`docker compose run --rm producer submit ...`)
    And its entrypoint is the tensorq CLI, so run arguments become subcommands.
    """
    producer = services["producer"]

    assert producer.get("profiles") == ["tools"]
    assert argv(producer.get("entrypoint")) == ["tensorq"]
    assert str(producer.get("restart", "no")) == "no"


def test_nothing_publishes_ports_on_all_interfaces(services):
    """
    Given every service
    Then any published port is bound to 127.0.0.1.
    """
    exposed = {
        name: target
        for name, service in services.items()
        for host_ip, target in published_ports(service)
        if host_ip != "127.0.0.1"
    }

    assert not exposed, f"ports published on all interfaces: {exposed}"


def test_secrets_are_not_hardcoded(compose):
    """
    Given the raw compose file
    Then passwords only appear as required variables, never as literals.
    """
    text = COMPOSE_FILE.read_text(encoding="utf-8")

    assert re.search(r"redis://:[^$]", text) is None, "literal password in a broker URL"
    assert "${REDIS_PASSWORD}" not in text, "use ${REDIS_PASSWORD:?...} so a missing password fails fast"
    assert "${FLOWER_BASIC_AUTH}" not in text


# ---------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, str]:
    """Map stage name -> base image from `FROM <image> AS <name>` lines."""
    stages = {}
    pattern = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)\s+AS\s+(\S+)\s*$", re.IGNORECASE)
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        match = pattern.match(line)
        if match:
            stages[match.group(2).lower()] = match.group(1)
    return stages


def test_dockerfile_has_gpu_and_cpu_targets():
    """
    Given the Dockerfile
    When its `FROM ... AS name` lines are parsed
    Then it has a `gpu` and a `cpu` stage, the targets compose builds.
    """
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"

    stages = dockerfile_stages()

    assert {"gpu", "cpu"} <= set(stages), f"stages found: {stages}"


def test_dockerfile_runs_as_non_root_with_tensorq_entrypoint():
    """
    Given the Dockerfile
    Then each target switches to a non-root user and uses the tensorq CLI as entrypoint.
    """
    text = DOCKERFILE.read_text(encoding="utf-8")
    users = re.findall(r"^\s*USER\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)

    assert len(users) >= 2 and all(user not in ("root", "0") for user in users), users
    assert len(re.findall(r'^\s*ENTRYPOINT\s+\["tensorq"\]', text, re.MULTILINE)) >= 2


def test_dockerfile_cpu_torch_comes_from_the_cpu_index():
    """
    Given the Dockerfile's cpu target
    Then torch is installed from the CPU-only wheel index before the project.
    """
    text = DOCKERFILE.read_text(encoding="utf-8")
    cpu_stage = re.split(r"^\s*FROM\s+\S+\s+AS\s+cpu\s*$", text, flags=re.MULTILINE | re.IGNORECASE)[1]

    assert "https://download.pytorch.org/whl/cpu" in cpu_stage
    assert cpu_stage.index("download.pytorch.org/whl/cpu") < cpu_stage.index(".[worker]")


def test_dockerignore_keeps_the_context_clean():
    """
    Given .dockerignore
    Then the virtualenv, git metadata, test artifacts and .env stay out of the build context.
    """
    entries = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }

    assert {".venv", ".git", "tests/artifacts", ".env"} <= entries
    assert "README.md" not in entries and "pyproject.toml" not in entries


# ---------------------------------------------------------------------------
# Redis Sentinel (profile `sentinel`)
# ---------------------------------------------------------------------------

SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


def sentinel_conf(service: dict) -> dict[str, list[str]]:
    """The directives a Sentinel service writes to its sentinel.conf (its `sh -c` script's heredoc)."""
    body = full_command(service)[-1].split("<<EOF", 1)[1].split("\nEOF", 1)[0]
    conf: dict[str, list[str]] = {}
    for line in body.strip().splitlines():
        words = line.split()
        key = " ".join(words[:2]) if words[0] == "sentinel" else words[0]
        conf[key] = words[2:] if words[0] == "sentinel" else words[1:]
    return conf


def test_sentinel_services_are_opt_in(services):
    """
    Given the Sentinel services
    Then a replica and three Sentinels exist, each only in the `sentinel` profile
    And each keeps its data (the Sentinels' learned config) on a declared named volume.
    """
    for name in ("redis-replica", *SENTINELS):
        assert services[name].get("profiles") == ["sentinel"], name
        assert services[name].get("restart") == "unless-stopped", name
    volumes = {str(v).split(":")[0] for name in ("redis-replica", *SENTINELS) for v in services[name]["volumes"]}
    assert len(volumes) == 4, "each Sentinel and the replica need a volume of their own"


def test_the_replica_follows_redis_with_its_password(services):
    """
    Given the redis-replica service
    Then it replicates `redis` with the required password and asks the same of its clients
    And `redis` can rejoin as a replica after a failover (it knows the password to replicate with).
    """
    args = full_command(services["redis-replica"])
    assert args[0] == "redis-server" and option_value(args, "--replicaof") == "redis"
    for option in ("--requirepass", "--masterauth"):
        assert option_value(args, option).startswith("${REDIS_PASSWORD:?"), option
        assert option_value(full_command(services["redis"]), option).startswith("${REDIS_PASSWORD:?"), option
    assert option_value(args, "--appendonly") == "yes"
    assert "$$REDIS_PASSWORD" in " ".join(argv(services["redis-replica"]["healthcheck"]["test"]))


@pytest.mark.parametrize("name", SENTINELS)
def test_each_sentinel_watches_redis_with_a_quorum_of_two_and_passwords(services, name):
    """
    Given a Sentinel service
    Then it runs redis-server in Sentinel mode on 26379, watching `redis` as `tensorq` with quorum 2 (of 3)
    And it authenticates to Redis, requires a password of its own, and announces its own name
    And its healthcheck pings it with that password.
    """
    service = services[name]
    script = full_command(service)[-1]
    assert full_command(service)[:2] == ["sh", "-c"] and "exec redis-server /data/sentinel.conf --sentinel" in script
    assert "[ -f /data/sentinel.conf ] ||" in script, "a restart must keep what the Sentinel learned"
    conf = sentinel_conf(service)
    assert conf["sentinel monitor"] == ["tensorq", "redis", "6379", "2"]
    assert conf["sentinel auth-pass"] == ["tensorq", "$$REDIS_PASSWORD"]
    assert conf["requirepass"] == ["$$SENTINEL_PASSWORD"] == conf["sentinel sentinel-pass"]
    assert conf["port"] == ["26379"] and conf["sentinel announce-ip"] == ["$$SENTINEL_NAME"]
    assert conf["sentinel resolve-hostnames"] == ["yes"] == conf["sentinel announce-hostnames"]
    env = environment(service)
    assert env["SENTINEL_NAME"] == name and env["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert env["SENTINEL_PASSWORD"].startswith("${SENTINEL_PASSWORD:-${REDIS_PASSWORD:?")
    test = " ".join(argv(service["healthcheck"]["test"]))
    assert "-p 26379" in test and "$$SENTINEL_PASSWORD" in test and "ping" in test


def test_the_documented_sentinel_url_is_one_tensorq_reads():
    """
    Given the Sentinel URL docker-compose.yml tells users to put in .env
    Then tensorq reads it: the three Sentinels, the master name the Sentinels use, both passwords.
    """
    from shared import sentinel

    text = COMPOSE_FILE.read_text(encoding="utf-8")
    [url] = re.findall(r"TENSORQ_BROKER_URL='([^']+)'", text)
    parsed = sentinel.parse(url.replace("REDIS_PASSWORD", "rpw").replace("SENTINEL_PASSWORD", "spw"))
    assert parsed.sentinels == tuple((s, 26379) for s in SENTINELS)
    assert (parsed.master_name, parsed.password, parsed.sentinel_password) == ("tensorq", "rpw", "spw")
