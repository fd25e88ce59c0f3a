"""Runs the AWS SAM CLI (venv-sam) with two fixes for local runs against the local stack.

`cargo xtask sam` starts SAM through this file instead of `venv-sam/bin/sam`. Everything else is
SAM's own code; only these two behaviours change, and only when asked for:

1. `--docker-network host` puts the function containers on the host's network. SAM 1.170 accepts
   the option but creates the container on Docker's default bridge anyway and skips connecting it
   to `host` (samcli/local/docker/container.py: `if self.network_id != "host"`; aws-sam-cli issue
   4236, fix proposed in pull request 7278, not merged), so a function cannot reach services that
   listen on the host's loopback, as the local stack does. On the host's network two containers
   would both want the runtime interface emulator's fixed ports (8080 for invokes, 9001 for the
   Runtime API), so each container gets two free loopback ports of its own, taken from
   TGSEARCH_SAM_PORTS ("first-last", default SAM's own 5000-9000) and handed to the emulator with
   its `--runtime-interface-emulator-address` and `--runtime-api-address` options.

2. `--env-vars` may set variables the template does not declare. SAM passes a function only the
   variables its template declares (plus AWS_* credentials and region), so the SDK's
   AWS_ENDPOINT_URL, which points the functions at moto, could not reach them. Declared variables
   keep SAM's precedence (the file over the shell over the template).

Anything else, including an unknown SAM version, runs SAM unchanged apart from these patches,
which check that the code they wrap is still there and fail with a message if it is not.
"""

import os
import random
import socket
import sys
import threading

import samcli
from samcli.cli.main import cli
from samcli.local.docker import container as sam_container
from samcli.local.lambdafn import env_vars as sam_env_vars

TESTED_SAM_VERSION = "1.170.0"
RIE = "/var/rapid/aws-lambda-rie"


def _require(owner, name):
    if not hasattr(owner, name):
        sys.exit(
            f"xtask/sam/samcli_local.py: SAM {samcli.__version__} has no {owner.__name__}.{name} "
            f"(written against {TESTED_SAM_VERSION}); update the patch or xtask/sam-requirements.txt"
        )
    return getattr(owner, name)


def _port_range():
    text = os.environ.get("TGSEARCH_SAM_PORTS", "5000-9000")
    try:
        first, last = (int(p) for p in text.split("-", 1))
    except ValueError:
        sys.exit(f"TGSEARCH_SAM_PORTS must look like 3002-3019, not {text!r}")
    if not 0 < first <= last < 65536:
        sys.exit(f"TGSEARCH_SAM_PORTS {text!r} is not a port range")
    return first, last


_taken = set()
_taken_lock = threading.Lock()


def _free_loopback_port():
    """A port nothing listens on and this process has not handed out (containers start later)."""
    first, last = _port_range()
    candidates = list(range(first, last + 1))
    random.shuffle(candidates)
    with _taken_lock:
        for port in candidates:
            if port in _taken:
                continue
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                probe.close()
            _taken.add(port)
            return port
    raise sam_container.ContainerNotStartableException(
        f"no free loopback port in TGSEARCH_SAM_PORTS={first}-{last} for a function container"
    )


_original_create = _require(sam_container.Container, "create")


class _WithoutPortBindings:
    """The Docker client as SAM uses it, but containers are created without published ports:
    Docker refuses port bindings on the host's network (there is nothing to publish)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    @property
    def containers(self):
        return _ContainersWithoutPorts(self._client.containers)


class _ContainersWithoutPorts:
    def __init__(self, containers):
        self._containers = containers

    def __getattr__(self, name):
        return getattr(self._containers, name)

    def create(self, image, **kwargs):
        kwargs.pop("ports", None)
        return self._containers.create(image, **kwargs)


def _create_on_host_network(self, context):
    if self.network_id == "host" and self._entrypoint and self._entrypoint[0] == RIE:
        invoke_port = _free_loopback_port()
        runtime_api_port = _free_loopback_port()
        # SAM invokes the container at localhost:rapid_port_host; on the host's network that is
        # where the emulator itself must listen.
        self.rapid_port_host = invoke_port
        self._entrypoint = list(self._entrypoint) + [
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{invoke_port}",
            "--runtime-api-address",
            f"127.0.0.1:{runtime_api_port}",
        ]
        self._container_opts = {**(self._container_opts or {}), "network_mode": "host"}
        client = self.docker_client
        self._validated_docker_client = _WithoutPortBindings(client)
        try:
            return _original_create(self, context)
        finally:
            self._validated_docker_client = client
    return _original_create(self, context)


_original_resolve = _require(sam_env_vars.EnvironmentVariables, "resolve")


def _resolve_with_undeclared(self):
    result = _original_resolve(self)
    for name, value in self.override_values.items():
        if name not in self.variables:
            result[name] = self._stringify_value(value)
    return result


sam_container.Container.create = _create_on_host_network
sam_env_vars.EnvironmentVariables.resolve = _resolve_with_undeclared

if __name__ == "__main__":
    sys.argv[0] = "sam"
    sys.exit(cli())
