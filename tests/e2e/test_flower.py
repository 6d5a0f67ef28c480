"""`tensorq flower`: a real Flower, behind basic auth, sees the real worker and the jobs the CLI submits.

One Flower for the module (the `flower` fixture), started before any job it is asked about, so it receives
their task events. The CLI runs in-process (`cli`), but `flower` itself, which execs Flower.
The browser test drives Debian's Chromium through Playwright and saves screenshots to tests/artifacts/.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from tests.support.cli import assert_one_line_error
from tests.support.flower import PASSWORD, USER, Flower, http_get, poll
from tests.support.processes import CLOSED_BROKER, REPO, Tq, free_port, tq_env

ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def train_job(flower, cli) -> dict[str, Any]:
    """A 50-iteration training job, submitted (after Flower started) and waited for; its `status --json`."""
    done = cli("submit", "train", "--iterations", "50", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def finished_task(flower: Flower, job_id: str) -> dict[str, Any]:
    """Flower's record of a task once its task-succeeded event has arrived."""
    tasks = poll(lambda: flower.api("/api/tasks"), lambda t: t.get(job_id, {}).get("state") == "SUCCESS", 15,
                 f"Flower shows no SUCCESS for task {job_id}")
    return tasks[job_id]


# --- the HTTP API -----------------------------------------------------------------------------------------

def test_api_workers_lists_the_worker_by_node_name(flower, node) -> None:
    """Given a running worker, when /api/workers is asked with the login, then it lists the node by name."""
    workers = poll(lambda: flower.api("/api/workers?refresh=1"), lambda w: node in w, 20,
                   f"/api/workers does not list {node}")
    assert {"tensorq.train", "tensorq.tensor_op"} <= set(workers[node]["registered"])


def test_a_training_job_shows_as_a_readable_successful_task(flower, train_job) -> None:
    """Given a finished training job, then Flower shows its id, task name, a one-line description and the summary."""
    assert train_job["state"] == "succeeded"
    task = finished_task(flower, train_job["id"])
    assert task["name"] == "tensorq.train"
    assert "iterations=50" in task["kwargs"], task["kwargs"]
    assert len(task["kwargs"]) < 300 and "\n" not in task["kwargs"], task["kwargs"]
    assert "{" not in task["kwargs"]  # a description, not the spec dumped as a dict
    assert repr(train_job["summary"]["final_loss"]) in task["result"], task["result"]


def test_an_op_job_shows_as_a_tensor_op_task(flower, cli) -> None:
    done = cli("submit", "op", "add", "[1,2]", "[3,4]", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    task = finished_task(flower, json.loads(done.stdout)["id"])
    assert task["name"] == "tensorq.tensor_op"
    assert task["kwargs"].startswith("add 2:int64 2:int64 -> 2"), task["kwargs"]  # not the base64 operands
    assert task["result"] == "'add -> int64[2] on cpu'", task["result"]  # one line; the summary is in the store


def test_prometheus_metrics_count_training_tasks(flower, train_job) -> None:
    finished_task(flower, train_job["id"])
    status, body = http_get(flower.url + "/metrics")
    assert status == 200
    assert 'task="tensorq.train"' in body


@pytest.mark.parametrize("path", ["/api/workers", "/"])
def test_a_wrong_password_gets_401(flower, path) -> None:
    status, _ = http_get(flower.url + path, login=(USER, "wrong"))
    assert status == 401
    assert http_get(flower.url + path, login=None)[0] == 401


# --- the command's own checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    (["--address", "0.0.0.0"], "needs --basic-auth"),
    (["--basic-auth", "nocolon"], "expected USER:PASS"),
    (["--basic-auth", ":"], "expected USER:PASS"),
    (["--basic-auth", "tester:a,b"], "a comma would split the login"),
])
def test_unsafe_or_malformed_logins_are_refused(tmp_path, args, fragment) -> None:
    """A closed broker: a check that let these through would exit 3 (or start Flower), not 2."""
    env = {k: v for k, v in tq_env(CLOSED_BROKER, tmp_path).items() if k != "FLOWER_BASIC_AUTH"}
    assert_one_line_error(Tq(env)("flower", "--port", str(free_port()), *args, timeout=30), 2, fragment)


# --- a real browser ---------------------------------------------------------------------------------------

def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("the browser test needs Chromium: install it (sudo apt-get install -y chromium; "
                    "scripts/test.sh does this in CI)", pytrace=False)
    return found


def test_the_dashboard_renders_the_worker_and_the_training_task(flower, node, train_job) -> None:
    """Given a logged-in headless Chromium, when it opens /workers and /tasks, then their scripts render
    the worker's node name and the training task, whose page reads iterations=50; screenshots go to
    tests/artifacts/."""
    from playwright.sync_api import expect, sync_playwright

    finished_task(flower, train_job["id"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD},
                                          viewport={"width": 1400, "height": 900})
            page = context.new_page()

            page.goto(flower.url + "/workers")
            expect(page.locator("#workers-table")).to_contain_text(node, timeout=20_000)
            page.screenshot(path=ARTIFACTS / "flower-workers.png", full_page=True)  # before asserting: evidence
            assert node in page.inner_text("body")

            page.goto(flower.url + "/tasks")
            expect(page.locator("#tasks-table")).to_contain_text(train_job["id"], timeout=20_000)
            page.screenshot(path=ARTIFACTS / "flower-tasks.png", full_page=True)
            assert "tensorq.train" in page.inner_text("#tasks-table")

            # the task's own page shows the one-line description, not the encoded spec
            page.get_by_role("link", name=train_job["id"]).click()
            expect(page.locator("#task-page")).to_contain_text("iterations=50")
            page.screenshot(path=ARTIFACTS / "flower-task.png", full_page=True)
        finally:
            browser.close()
