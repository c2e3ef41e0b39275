// The chat page: a streamed answer from /api/chat (the gateway's SSE, relayed by the web service),
// rendered with textContent only; the conversation lives in localStorage and survives a reload.
"use strict";
(function () {
  const STORE = "llf.chat.v1";
  const $ = (id) => document.getElementById(id);
  const modelSelect = $("model");
  const list = $("messages");
  const prompt = $("prompt");
  const sendButton = $("send");
  const stopButton = $("stop");
  const errorBox = $("chat-error");
  const system = $("system");
  const temperature = $("temperature");
  const temperatureValue = $("temperature-value");
  let state = load();
  let controller = null;

  function load() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORE) || "null");
      if (saved && Array.isArray(saved.messages)) return saved;
    } catch (e) { /* a broken entry starts a new chat */ }
    return { model: "", system: "", temperature: 0.7, messages: [], session: newSession() };
  }
  function save() { localStorage.setItem(STORE, JSON.stringify(state)); }
  function newSession() { return Math.random().toString(36).slice(2, 14); }

  function statsText(stats) {
    if (!stats) return "";
    const parts = [];
    if (stats.note) parts.push(stats.note);
    if (stats.ttft_ms !== undefined) parts.push("first token " + (stats.ttft_ms / 1000).toFixed(2) + " s");
    if (stats.tokens_per_s !== undefined) parts.push(stats.tokens_per_s.toFixed(1) + " tokens/s");
    if (stats.tokens !== undefined) parts.push(stats.tokens + " tokens");
    if (stats.model) parts.push(stats.model);
    return parts.join(" · ");
  }

  function messageNode(message) {
    const item = llf.el("li", { class: "message " + message.role });
    item.appendChild(llf.el("div", { class: "role" }, message.role === "user" ? "You" : "Model"));
    const content = llf.el("div", { class: "content" }, message.content);
    item.appendChild(content);
    if (message.role === "assistant") {
      const footer = llf.el("div", { class: "meta" });
      footer.appendChild(llf.el("span", { class: "stats" }, statsText(message.stats)));
      const copy = llf.el("button", { type: "button", class: "link copy" }, "Copy");
      copy.addEventListener("click", () => copyText(content.textContent, copy));
      footer.appendChild(copy);
      item.appendChild(footer);
    }
    return item;
  }

  function render() {
    list.replaceChildren(...state.messages.map(messageNode));
    system.value = state.system || "";
    temperature.value = String(state.temperature ?? 0.7);
    temperatureValue.textContent = temperature.value;
    list.lastElementChild && list.lastElementChild.scrollIntoView({ block: "end" });
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const area = llf.el("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  }

  async function loadModels() {
    const reply = await llf.api("GET", "/api/models");
    if (!reply.ok) { llf.showError(errorBox, reply.error); return; }
    const models = (reply.body && reply.body.data) || [];
    const order = { loaded: 0, loading: 1, asleep: 2, available: 3 };
    models.sort((a, b) => (order[a.state] ?? 9) - (order[b.state] ?? 9) || a.id.localeCompare(b.id));
    modelSelect.replaceChildren(...models.map((m) => llf.el("option", { value: m.id }, m.id + " (" + (m.state || "?") + ")")));
    if (state.model && models.some((m) => m.id === state.model)) modelSelect.value = state.model;
    state.model = modelSelect.value;
    save();
    if (!models.length) llf.showError(errorBox, "No model is loaded or available: pull one on the Models page.");
  }

  function setBusy(busy) {
    sendButton.hidden = busy;
    stopButton.hidden = !busy;
  }

  async function send() {
    const text = prompt.value;
    if (!text.trim() || controller) return;
    llf.showError(errorBox, "");
    const model = modelSelect.value;
    state.model = model;
    state.messages.push({ role: "user", content: text });
    const answer = { role: "assistant", content: "", stats: { model: model } };
    state.messages.push(answer);
    prompt.value = "";
    save();
    render();
    const node = list.lastElementChild;
    node.classList.add("streaming");
    const content = node.querySelector(".content");
    const stats = node.querySelector(".stats");
    const history = state.messages.slice(0, -1).map((m) => ({ role: m.role, content: m.content }));
    if (state.system && state.system.trim()) history.unshift({ role: "system", content: state.system });
    controller = new AbortController();
    setBusy(true);
    const started = performance.now();
    let first = null;
    let chunks = 0;
    let usageTokens = null;
    try {
      const response = await fetch("/api/chat", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": llf.csrf, Accept: "text/event-stream" },
        body: JSON.stringify({ model: model, messages: history, temperature: Number(state.temperature), session_id: state.session }),
        signal: controller.signal,
      });
      if (response.status === 401) { window.location.assign("/login"); return; }
      if (!response.ok) {
        const body = await response.text();
        let parsed = body;
        try { parsed = JSON.parse(body); } catch (e) { /* text */ }
        throw new Error(llf.errorText(parsed, response.status));
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, cut).replace(/\r$/, "");
          buffer = buffer.slice(cut + 1);
          if (line.startsWith(":")) {
            const note = line.slice(1).trim();
            if (note.startsWith("loading")) { answer.stats.note = note; stats.textContent = statsText(answer.stats); }
            continue;
          }
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          let event;
          try { event = JSON.parse(data); } catch (e) { continue; }
          if (event.error) throw new Error(llf.errorText(event, 0));
          if (event.model) answer.stats.model = event.model;
          if (event.usage && event.usage.completion_tokens) usageTokens = event.usage.completion_tokens;
          const choice = event.choices && event.choices[0];
          const delta = choice && choice.delta && choice.delta.content;
          if (delta) {
            if (first === null) first = performance.now();
            chunks += 1;
            answer.content += delta;
            content.textContent = answer.content;
            delete answer.stats.note;
            answer.stats.ttft_ms = first - started;
            stats.textContent = statsText(answer.stats);
            node.scrollIntoView({ block: "end" });
          }
        }
      }
    } catch (err) {
      if (err.name === "AbortError") answer.stats.note = "stopped";
      else { answer.stats.note = "failed"; llf.showError(errorBox, err.message); }
    } finally {
      const ended = performance.now();
      const tokens = usageTokens || chunks;
      if (first !== null) {
        answer.stats.ttft_ms = first - started;
        answer.stats.tokens = tokens;
        if (ended > first && tokens > 1) answer.stats.tokens_per_s = (tokens - 1) / ((ended - first) / 1000);
      }
      if (answer.stats.note && answer.stats.note.startsWith("loading")) delete answer.stats.note;
      stats.textContent = statsText(answer.stats);
      node.classList.remove("streaming");
      node.classList.add("done");
      controller = null;
      setBusy(false);
      save();
      prompt.focus();
    }
  }

  function stop() { if (controller) controller.abort(); }

  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  stopButton.addEventListener("click", stop);
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") stop(); });
  $("new-chat").addEventListener("click", () => {
    stop();
    state = { model: modelSelect.value, system: state.system, temperature: state.temperature, messages: [], session: newSession() };
    save();
    render();
    prompt.focus();
  });
  modelSelect.addEventListener("change", () => { state.model = modelSelect.value; save(); });
  system.addEventListener("input", () => { state.system = system.value; save(); });
  temperature.addEventListener("input", () => {
    state.temperature = Number(temperature.value);
    temperatureValue.textContent = temperature.value;
    save();
  });
  if (!state.session) state.session = newSession();
  render();
  loadModels();
  prompt.focus();
})();
