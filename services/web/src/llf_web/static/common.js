// Shared by every page: calls to this web service (same origin, CSRF header on changes),
// error wording as the services gave it, and DOM helpers that only ever set textContent.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  function errorText(body, status) {
    if (body && typeof body === "object") {
      if (typeof body.detail === "string") return body.detail;
      if (body.error && typeof body.error.message === "string") return body.error.message;
      if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || String(d)).join("; ");
    }
    if (typeof body === "string" && body) return body;
    return "HTTP " + status;
  }

  async function api(method, path, body) {
    const init = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { ok: false, status: 0, body: null, error: "the web service did not answer: " + err.message };
    }
    if (response.status === 401) window.location.assign("/login");
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = text; }
    }
    return { ok: response.ok, status: response.status, body: data, error: response.ok ? null : errorText(data, response.status) };
  }

  function el(tag, options, text) {
    const node = document.createElement(tag);
    if (options) {
      for (const [key, value] of Object.entries(options)) {
        if (key === "class") node.className = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else node.setAttribute(key, value);
      }
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function showError(node, message) {
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  function bytes(n) {
    if (!n && n !== 0) return "";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    let v = n;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }

  window.llf = { api: api, el: el, csrf: csrf, errorText: errorText, showError: showError, bytes: bytes };
})();
