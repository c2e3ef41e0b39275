"""The web pages driven by a real chromium against the real stack (see conftest.py).

Tests run in file order and build on each other: the first one logs in (the cookie then stays in
the browser), the chat tests leave a conversation behind, the status test kills vLLM last.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.integration.web.conftest import API_KEY, ENGINE_WAIT, FAKE, TINY, WebStack
from tests.support.hub import HubStandIn
from tests.support.net import wait_for

Shot = Callable[[str], Path]
PULLED = "llf-test/web-pulled"
CANCELED = "llf-test/web-canceled"
WEIGHTS = "model.safetensors"

FETCH = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {credentials: "same-origin"}).then((r) => done(r.status), (e) => done(String(e)));
"""


def text(driver: Any, css: str) -> str:
    elements = driver.find_elements(By.CSS_SELECTOR, css)
    return str(elements[-1].text) if elements else ""


def last_answer(driver: Any) -> dict[str, Any]:
    script = """
    const items = document.querySelectorAll("#messages li.message.assistant");
    const last = items[items.length - 1];
    if (!last) return null;
    return {content: last.querySelector(".content").textContent, stats: last.querySelector(".stats").textContent,
            done: last.classList.contains("done"), count: items.length};
    """
    return driver.execute_script(script) or {}  # type: ignore[no-any-return]


def test_with_a_key_the_page_refuses_every_call_until_the_key_is_entered(
    web_stack: WebStack, browser: Any, shot: Shot
) -> None:
    browser.get(web_stack.url + "/")
    assert browser.current_url.endswith("/login"), browser.current_url
    for path in ("/api/models", "/api/status", "/api/registry/models"):
        assert browser.execute_async_script(FETCH, path) == 401, path
    browser.find_element(By.ID, "key").send_keys("not-the-key", Keys.ENTER)
    wait_for(lambda: "Wrong API key" in text(browser, "#login-error"), 10, "the wrong-key message")
    shot("page-login")
    browser.find_element(By.ID, "key").send_keys(API_KEY, Keys.ENTER)
    wait_for(lambda: browser.find_elements(By.ID, "prompt"), 15, "the chat page after logging in")
    assert browser.execute_async_script(FETCH, "/api/models") == 200
    # the session cookie is HttpOnly: page scripts see no cookie at all, and never the key
    assert browser.execute_script("return document.cookie") == ""
    assert API_KEY not in browser.page_source
    cookie = browser.get_cookie("llf_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["value"] != API_KEY


def test_a_prompt_typed_into_the_chat_streams_tokens_onto_the_screen(
    web_stack: WebStack, browser: Any, shot: Shot
) -> None:
    browser.get(web_stack.url + "/")
    picker = Select(browser.find_element(By.ID, "model"))
    wait_for(lambda: len(picker.options) >= 2, 20, lambda: f"two models in the picker: {browser.page_source[:500]}")
    labels = [option.text for option in picker.options]
    assert f"{TINY} (loaded)" in labels and f"{FAKE} (loaded)" in labels, labels
    picker.select_by_value(TINY)
    # Every change of the answer's text is recorded by the page itself, so a fast stream is not missed.
    browser.execute_script("""
        window.__lengths = [];
        new MutationObserver(() => {
          const items = document.querySelectorAll("#messages li.assistant .content");
          const last = items[items.length - 1];
          if (last) window.__lengths.push(last.textContent.length);
        }).observe(document.getElementById("messages"), {subtree: true, childList: true, characterData: true});
    """)
    browser.find_element(By.ID, "prompt").send_keys("Tell me about the sea", Keys.ENTER)
    answer = wait_for(lambda: (a := last_answer(browser)) and a["done"] and a, ENGINE_WAIT, "the answer to end")
    lengths = [n for n in browser.execute_script("return window.__lengths") if n > 0]
    assert answer["content"].strip(), answer
    assert len(set(lengths)) >= 2, f"the answer appeared at once, not token by token: {lengths}"
    assert "first token" in answer["stats"] and "tokens/s" in answer["stats"] and TINY in answer["stats"], answer
    assert text(browser, "#chat-error") == ""
    shot("page-chat")


def test_switching_the_model_picker_sends_the_next_prompt_to_the_other_model_and_esc_stops(
    web_stack: WebStack, browser: Any, shot: Shot
) -> None:
    browser.get(web_stack.url + "/")  # a reload: the conversation comes back from localStorage
    wait_for(lambda: last_answer(browser).get("count") == 1, 10, "the saved conversation after a reload")
    picker = Select(browser.find_element(By.ID, "model"))
    wait_for(lambda: len(picker.options) >= 2, 20, "the model list")
    picker.select_by_value(FAKE)
    browser.find_element(By.ID, "prompt").send_keys("And now you?", Keys.ENTER)
    answer = wait_for(lambda: (a := last_answer(browser)) and a["count"] == 2 and a["done"] and a, 60, "answer 2")
    assert FAKE in answer["stats"] and TINY not in answer["stats"], answer
    # a long answer from the slow fake engine, stopped with Esc once it streams
    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys("count to a thousand please", Keys.ENTER)
    wait_for(lambda: (a := last_answer(browser)) and a["count"] == 3 and a["content"], 30, "answer 3 streaming")
    prompt.send_keys(Keys.ESCAPE)
    answer = wait_for(lambda: (a := last_answer(browser)) and a["done"] and a, 15, "answer 3 to stop")
    assert "stopped" in answer["stats"], answer
    assert browser.find_element(By.ID, "send").is_displayed()
    shot("chat-two-models")


def follow_progress(browser: Any, repo: str) -> dict[str, Any]:
    script = """
    const boxes = [...document.querySelectorAll("#jobs .job")];
    const box = boxes.find((b) => b.querySelector(".job-repo").textContent === arguments[0]);
    if (!box) return null;
    const bar = box.querySelector("progress");
    return {value: bar.value, state: box.dataset.state || "", text: box.querySelector(".job-text").textContent};
    """
    return browser.execute_script(script, repo) or {}  # type: ignore[no-any-return]


def pull_from_page(browser: Any, repo: str) -> None:
    field = browser.find_element(By.ID, "repo")
    field.clear()
    field.send_keys(repo)
    browser.find_element(By.ID, "pull").click()


def test_a_pull_from_the_models_page_shows_its_progress_and_the_model_appears_verified(
    web_stack: WebStack, browser: Any, shot: Shot, hub: HubStandIn
) -> None:
    hub.add_tiny_model(PULLED, seed=3)
    hub.hold(PULLED, WEIGHTS, after_bytes=600_000)  # the weights stop here until released: the pull stays in flight
    try:
        browser.get(web_stack.url + "/models")
        wait_for(lambda: TINY in text(browser, "#models"), 20, "the registry's list")
        pull_from_page(browser, PULLED)
        held = wait_for(lambda: (p := follow_progress(browser, PULLED)) and 0 < p["value"] < 100 and p, 60,
                        lambda: f"a partly filled progress bar: {follow_progress(browser, PULLED)}")  # fmt: skip
        assert held["state"] == "started", held
        shot("page-models")
    finally:
        hub.release(PULLED, WEIGHTS)
    done = wait_for(lambda: (p := follow_progress(browser, PULLED)).get("state") == "finished" and p, 120,
                    lambda: f"the pull to finish: {follow_progress(browser, PULLED)}")  # fmt: skip
    assert done["value"] == 100 and done["value"] > held["value"]
    row = f'#models tr[data-model="{PULLED}"] td.verified'
    wait_for(lambda: text(browser, row) == "verified", 20, f"{PULLED} listed as verified")


def test_cancel_stops_a_pull_in_flight(web_stack: WebStack, browser: Any, shot: Shot, hub: HubStandIn) -> None:
    hub.add_tiny_model(CANCELED, seed=4)
    hub.hold(CANCELED, WEIGHTS, after_bytes=4096)
    try:
        browser.get(web_stack.url + "/models")
        pull_from_page(browser, CANCELED)
        wait_for(lambda: follow_progress(browser, CANCELED).get("value", 0) > 0, 60, "the held pull in progress")
        box = browser.find_element(By.CSS_SELECTOR, "#jobs .job .cancel")
        box.click()
        stopped = {"canceled", "stopped"}
        ended = wait_for(lambda: (p := follow_progress(browser, CANCELED)).get("state") in stopped and p, 30,
                         lambda: f"the pull to be canceled: {follow_progress(browser, CANCELED)}")  # fmt: skip
        shot("models-canceled")
    finally:
        hub.release(CANCELED, WEIGHTS)
    assert ended["state"] in {"canceled", "stopped"}
    assert f'data-model="{CANCELED}"' not in browser.page_source


def replica_states(browser: Any, model: str) -> list[str]:
    script = """
    return [...document.querySelectorAll("#replicas tr[data-replica]")]
      .filter((tr) => tr.children[1].textContent === arguments[0]).map((tr) => tr.dataset.state);
    """
    return browser.execute_script(script, model) or []  # type: ignore[no-any-return]


def test_the_status_page_follows_a_killed_engine_until_it_is_back(
    web_stack: WebStack, browser: Any, shot: Shot
) -> None:
    browser.get(web_stack.url + "/status")
    wait_for(lambda: replica_states(browser, TINY) == ["ready"], 20, lambda: f"TINY ready: {text(browser, 'main')}")
    assert text(browser, "#gateway-up") == "up" and text(browser, "#registry-up") == "up"
    assert "cpu" in text(browser, "#replicas").lower()
    shot("page-status")
    status = web_stack.gateway.status()
    (pid,) = [r["pid"] for r in status["replicas"] if r["model"] == TINY]
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: replica_states(browser, TINY) not in ([], ["ready"]), 60,
             lambda: f"the page to show the engine down: {replica_states(browser, TINY)}")  # fmt: skip
    shot("status-engine-down")
    wait_for(lambda: replica_states(browser, TINY) == ["ready"], ENGINE_WAIT,
             lambda: f"the page to show the engine back: {replica_states(browser, TINY)}", interval=1)  # fmt: skip
    shot("status-engine-back")




def test_every_page_fits_a_phone_width(web_stack: WebStack, browser: Any, shot: Shot) -> None:
    browser.set_window_size(390, 844)
    try:
        for path in ("/", "/models", "/status"):
            browser.get(web_stack.url + path)
            overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at 390 px"
            shot("phone" + path.replace("/", "-").rstrip("-"))
    finally:
        browser.set_window_size(1100, 900)
