"""The web pages in a real browser against the real stack: Redis, registry + worker, gateway, ``llf-web``.

One stack for the module (each vLLM start costs ~25 s or more on 2 busy cores), API key on: the
gateway serves the tiny model on the vLLM CPU engine and a second model on the fake engine
(``engine_switch.py``), the registry pulls from the hub stand-in, and ``llf-web`` sits in front
of both. The browser is Debian's ``chromium`` through ``chromium-driver`` with Selenium,
headless and ``--no-sandbox``; nothing is downloaded. Screenshots go to ``$LLF_TEST_OUTPUT``
(when set) or the test's ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.cli.conftest import fresh_redis
from tests.support.fake_gateway import model_dir
from tests.support.gateway import GatewayProcess
from tests.support.hub import HubStandIn
from tests.support.net import free_port, wait_for
from tests.support.redis_server import RedisServer
from tests.support.registry import VENV_BIN, ManagedProcess, RegistryStack, coverage_env, import_tiny_model

API_KEY = "web-integration-key"
TINY = "llf-test/web-tiny"
FAKE = "llf-test/web-fake"
ENGINE_WAIT = 900
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@dataclass
class WebStack:
    url: str
    registry: RegistryStack
    gateway: GatewayProcess
    web: ManagedProcess


def start_web(workdir: Path, *, models_url: str, inference_url: str, api_key: str | None) -> tuple[ManagedProcess, str]:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LLF_", "HF_", "COVERAGE_"))}
    env = {
        **base,
        "LLF_HOME": str(workdir / "home"),
        "LLF_CONFIG": str(workdir / "home" / "config.json"),
        "LLF_WEB_PORT": str(port),
        "LLF_WEB_STATUS_INTERVAL_S": "1",
        "LLF_MODELS_URL": models_url,
        "LLF_INFERENCE_URL": inference_url,
        "PYTHONUNBUFFERED": "1",
        **coverage_env(workdir),
    }
    if api_key:
        env["LLF_API_KEY"] = api_key
    web = ManagedProcess("web", [str(VENV_BIN / "llf-web")], env, workdir / "web.log", Path.cwd())
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert web.alive, f"llf-web exited:\n{web.log_tail()}"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        return False

    wait_for(up, 30, lambda: f"llf-web to answer /healthz:\n{web.log_tail()}", 0.1)
    return web, url


@pytest.fixture(scope="module")
def web_stack(
    redis_server: RedisServer,
    hub: HubStandIn,
    engine_python: Path,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebStack]:
    """Registry and gateway knowing each other; TINY served by vLLM, FAKE by the fake engine; llf-web."""
    assert hub.url is not None
    workdir = tmp_path_factory.mktemp("web-stack")
    switch = [sys.executable, str(Path(__file__).with_name("engine_switch.py")), str(engine_python), FAKE]
    env = {
        "LLF_INFERENCE_ENGINE_COMMAND": json.dumps(switch),
        "LLF_INFERENCE_MODEL_PATHS": json.dumps({FAKE: str(model_dir(workdir / "fake-models", FAKE))}),
        "LLF_INFERENCE_RETRY_AFTER_S": "1",
        "FAKE_TOKEN_DELAY": "0.3",  # 16 tokens in ~5 s: room to press Esc mid-answer
    }
    gateway = GatewayProcess(workdir / "gateway", engine_python=engine_python, api_key=API_KEY, env=env)
    registry = RegistryStack(workdir / "registry", redis_url=fresh_redis(redis_server), hf_endpoint=hub.url,
                             api_key=API_KEY, inference_url=gateway.url)  # fmt: skip
    web: ManagedProcess | None = None
    try:
        registry.start_api()
        registry.start_worker()
        gateway.env["LLF_MODELS_URL"] = registry.url
        gateway.start()
        import_tiny_model(registry.url, tiny_model_dir, TINY, api_key=API_KEY)
        gateway.serve(FAKE, timeout=120)
        gateway.serve(TINY, timeout=ENGINE_WAIT)
        web, url = start_web(workdir / "web", models_url=registry.url, inference_url=gateway.url, api_key=API_KEY)
        yield WebStack(url, registry, gateway, web)
    finally:
        if web is not None:
            web.stop()
        gateway.kill()
        registry.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian chromium via chromium-driver (no Selenium Manager, no download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} missing: apt-get install -y chromium chromium-driver", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900",
                     "--disable-gpu", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shot(browser: object, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """``shot(name)`` saves a screenshot; one more is saved when the test ends, whatever its outcome."""
    out = Path(os.environ["LLF_TEST_OUTPUT"]) / "web" if os.environ.get("LLF_TEST_OUTPUT") else tmp_path
    out.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = out / f"{name}.png"
        browser.save_screenshot(str(path))  # type: ignore[attr-defined]
        return path

    yield save
    save(f"{request.node.name}-end")
    docs = os.environ.get("LLF_WEB_SCREENSHOTS")
    if docs:  # scripts refresh docs/screenshots this way
        for png in out.glob("page-*.png"):
            shutil.copy(png, Path(docs) / png.name.removeprefix("page-"))


def chromium_version() -> str:
    return subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, check=False).stdout.strip()
