"""Screenshots of the Temporal Web UI as an ACCI operator sees it, taken with headless Chromium.

    .venv/bin/python docs/screenshots.py        # writes docs/screenshots/*.png

Starts a dev server with its Web UI and a worker on free ports over a database of its own
(acci_screenshots, dropped at the end), sends a few commands (one of them rejected), and
photographs the workflow list, a command run, the rejected run and a projection's page.
Needs Debian's `chromium` (apt-get install chromium) and Playwright's Python driver (pip install
playwright; it drives that Chromium, and downloads no browser of its own); nothing else of the
machine is touched.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from playwright.async_api import Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout
from psycopg import sql
from temporalio.client import Client, WorkflowFailureError

from acci.activities.models import CommandInput, projection_workflow_id
from acci.domain.principals import SYSTEM_ADMIN, Principal
from acci.workers.devserver import DevServer
from acci.workers.settings import Settings
from acci.workers.temporal_client import connect, start_command
from acci.workers.worker import running_worker
from acci.workflows.projection import ProjectionWorkflow

OUT = Path(__file__).resolve().parent / "screenshots"
SERVER = "postgresql://postgres@127.0.0.1:5432/"
DATABASE = "acci_screenshots"
# The flags the machine's Chromium needs headless as root, without a network beyond localhost.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(tenant: str, command_type: str, **payload: object) -> CommandInput:
    return CommandInput(
        command_id=uuid.uuid4(),
        tenant_id=tenant,
        command_type=command_type,
        payload=payload,
        principal=Principal(id="cli", roles=frozenset({SYSTEM_ADMIN})),
    )


async def send_commands(client: Client, queue: str) -> dict[str, str]:
    """A tenant, two users, a rename and a rejected registration; returns the runs to show."""
    runs: dict[str, str] = {}
    for name, cmd in (
        ("create", command("acme", "CreateTenant", name="Acme Corp")),
        (
            "register",
            command(
                "acme",
                "RegisterUser",
                user_id="eve",
                email="eve@acme.example",
                display_name="Eve Example",
            ),
        ),
        ("rename", command("acme", "RenameTenant", name="Acme Corporation")),
        (
            "rejected",
            command(
                "acme", "RegisterUser", user_id="mallory", email="not-an-email", display_name="M"
            ),
        ),
    ):
        sent = await start_command(client, cmd, task_queue=queue)
        try:
            await sent.handle.result()
        except WorkflowFailureError:
            pass  # the rejected one: its page is one of the pictures
        description = await sent.handle.describe()
        runs[name] = f"{sent.handle.id}/{description.run_id}"
    return runs


async def projection_run(client: Client) -> str:
    handle = client.get_workflow_handle_for(ProjectionWorkflow.run, projection_workflow_id("users"))
    for _ in range(100):
        status = await handle.query(ProjectionWorkflow.status)
        if status.applied_total and status.lag_events == 0:
            break
        await asyncio.sleep(0.1)
    return f"{handle.id}/{(await handle.describe()).run_id}"


async def photograph(chromium: str, pages: dict[str, tuple[str, str]]) -> None:
    """Each page (name: (url, text it shows once loaded)) to ``OUT/<name>.png``."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1600, "height": 900})
        for name, (url, shows) in pages.items():
            await page.goto(url)
            if name == "workflows":
                await show_search_attributes(page)
            # The UI is a single-page app that keeps polling: wait for what the picture is of.
            try:
                await page.get_by_text(shows).first.wait_for(timeout=30_000)
            except PlaywrightTimeout:
                print(f"{name}: {shows!r} not shown after 30 s; photographed as it is")
            out = OUT / f"{name}.png"
            await page.screenshot(path=str(out))
            print(f"{out.relative_to(OUT.parent.parent)}  <-  {url}")
        await browser.close()


async def show_search_attributes(page: Page) -> None:
    """Add the command's search attributes to the list's columns (the UI keeps the choice in
    the browser): a command run then reads as its type, tenant and aggregate in the list."""
    await page.get_by_text("CommandWorkflow").first.wait_for(timeout=30_000)
    await page.get_by_role("button", name="Configure Columns").click()
    for column in ("CommandType", "TenantId", "AggregateId"):
        await page.get_by_role("button", name=f"Add {column} column").click()
    for column in ("Run ID", "Start", "End"):
        await page.get_by_role("button", name=f"Remove {column} column").click()
    await page.reload()
    await page.get_by_role("columnheader", name="CommandType").wait_for(timeout=30_000)


def drop_database() -> None:
    with psycopg.connect(SERVER + "postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )


async def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("needs Chromium: apt-get install chromium", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=SERVER + DATABASE,  # type: ignore[arg-type]
            temporal_address=f"127.0.0.1:{free_port()}",
            temporal_ui_port=free_port(),
            data_dir=tmp,
            task_queue="acci-commands",
            cache_prefix=f"acci-shots-{uuid.uuid4().hex[:8]}",
            metrics_port=0,
        )
        server = DevServer(settings)
        server.start()
        try:
            client = await connect(settings, starting_within=30)
            async with running_worker(settings, client):
                runs = await send_commands(client, settings.task_queue)
                runs["projection"] = await projection_run(client)
                ui = f"{server.ui_url}/namespaces/{settings.temporal_namespace}/workflows"
                await photograph(
                    chromium,
                    {
                        "workflows": (ui, "CommandWorkflow"),
                        "command": (f"{ui}/{runs['register']}/user-metadata", "Current Details"),
                        "rejected-command": (
                            f"{ui}/{runs['rejected']}/history",
                            "Workflow Execution Failed",
                        ),
                        "projection": (
                            f"{ui}/{runs['projection']}/user-metadata",
                            "Current Details",
                        ),
                    },
                )
        finally:
            server.stop()
            drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
