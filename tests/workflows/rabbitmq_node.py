"""A private RabbitMQ node for outage tests: the machine's shared broker is never stopped.

The node runs from the same installation as the shared one, under its own node name, ports,
Erlang cookie, data and log directories, with no plugins (the management plugin would want the
shared node's port 15672). Stopping its application is a real broker outage for whoever is
connected to it, and touches nobody else.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pika
import pytest

from tests.workflows.conftest import free_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
START_WITHIN = 90.0


class PrivateRabbitMQ:
    """One RabbitMQ node in ``directory``, on free ports; ``url`` is its AMQP address."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.node = f"acci-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.process: subprocess.Popen[bytes] | None = None
        dist_port = free_port()
        while dist_port == self.port:
            dist_port = free_port()
        self._env = self._environment(dist_port)

    def _environment(self, dist_port: int) -> dict[str, str]:
        home = self.directory / "home"
        home.mkdir(parents=True, exist_ok=True)
        # Readable by its owner only from the start (Erlang refuses a cookie others may read).
        fd = os.open(home / ".erlang.cookie", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as cookie:
            cookie.write(secrets.token_hex(16))
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq-env.conf").write_text("")  # not the shared node's
        (self.directory / "conf.d").mkdir(exist_ok=True)
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("RABBITMQ_", "ERL_"))
        }
        return {
            **inherited,
            "HOME": str(home),
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(self.directory / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.directory / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # Erlang distribution on loopback only, as the shared node's is.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> None:
        """Start the node and wait until it takes AMQP connections; on failure it is stopped."""
        server = RABBITMQ_BIN / "rabbitmq-server"
        if not server.exists():
            pytest.fail(f"{server} is missing: the outage tests run a private RabbitMQ node")
        with (self.directory / "server.out").open("ab") as out:
            self.process = subprocess.Popen(
                [str(server)],
                env=self._env,
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: close() ends every process
            )
        try:
            self._await_amqp()
        except BaseException:
            self.close()
            raise

    def _await_amqp(self) -> None:
        deadline = time.monotonic() + START_WITHIN
        while True:
            assert self.process is not None and self.process.poll() is None, self._output()
            try:
                pika.BlockingConnection(pika.URLParameters(self.url)).close()
                return
            except pika.exceptions.AMQPError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the private RabbitMQ node did not answer:\n{self._output()}")
                time.sleep(0.2)

    def _output(self) -> str:
        return (self.directory / "server.out").read_text(errors="replace")[-4000:]

    def ctl(self, *args: str) -> None:
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")

    def close(self) -> None:
        """Stop every process of the node's group (the broker outlives its start script), then
        remove its directory."""
        if self.process is not None:
            group = self.process.pid  # start_new_session: the group's id is the leader's pid
            # A throwaway node: a short grace, then killed (its data is deleted anyway).
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    break  # nothing of the group is left
                if _group_ends(group, within=wait):
                    break
            if self.process.poll() is None:
                self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _group_ends(group: int, *, within: float) -> bool:
    """Whether every process of ``group`` is gone within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


class RabbitMQApp:
    """Stops and starts a private node's RabbitMQ application (the node stays up), off the
    event loop."""

    def __init__(self, node: PrivateRabbitMQ) -> None:
        self.node = node
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True  # before: a stop that fails half-way is still started again
        await asyncio.to_thread(self.node.ctl, "stop_app")

    async def start(self) -> None:
        await asyncio.to_thread(self.node.ctl, "start_app")
        await asyncio.to_thread(self.node.ctl, "await_startup")
        self.stopped = False
