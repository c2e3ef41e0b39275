// The status page: both services up or not, and the gateway's replicas, refreshed every few seconds.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const root = $("status-root");
  const interval = Number(root.dataset.interval) || 2000;

  function badge(node, up) {
    node.textContent = up ? "up" : "down";
    node.className = "badge " + (up ? "ok" : "bad");
  }

  function device(replica) {
    const p = replica.placement;
    if (!p) return "";
    if (p.gpus && p.gpus.length) {
      const share = p.gpu_memory_utilization ? " (" + Math.round(p.gpu_memory_utilization * 100) + "%)" : "";
      return p.device + " GPU " + p.gpus.join(",") + share;
    }
    if (p.cores && p.cores.length) return p.device + " cores " + p.cores.join(",");
    return p.device;
  }

  function replicaRow(r) {
    const tr = llf.el("tr", { dataset: { replica: r.id, state: r.state } });
    const cells = [r.id, r.model, device(r), r.state, r.in_flight, (r.tokens_per_s || 0).toFixed(1), r.restarts];
    cells.forEach((value, i) => tr.appendChild(llf.el("td", i === 3 ? { class: "state " + r.state } : null, value)));
    return tr;
  }

  function failure(r) {
    const box = llf.el("div", { class: "failure", dataset: { replica: r.id } });
    box.appendChild(llf.el("h2", null, r.model + " · " + r.id + " · " + r.state));
    if (r.last_error) box.appendChild(llf.el("p", { class: "error" }, r.last_error));
    if (r.log_tail && r.log_tail.length) box.appendChild(llf.el("pre", { class: "log" }, r.log_tail.join("\n")));
    return box;
  }

  async function tick() {
    const reply = await llf.api("GET", "/api/status");
    if (!reply.ok) {
      llf.showError($("status-error"), reply.error);
    } else {
      const body = reply.body;
      badge($("gateway-up"), body.gateway.up);
      badge($("registry-up"), body.registry.up);
      llf.showError($("status-error"), body.error);
      const status = body.status || { replicas: [] };
      $("gateway-state").textContent = body.status ? "(" + status.state + ")" : "";
      const replicas = status.replicas || [];
      if (replicas.length) $("replicas").replaceChildren(...replicas.map(replicaRow));
      else {
        const row = llf.el("tr");
        row.appendChild(llf.el("td", { colspan: "7", class: "muted" }, "No replica: serve a model on the Models page."));
        $("replicas").replaceChildren(row);
      }
      const failed = replicas.filter((r) => r.state === "failed" || r.state === "restarting" || (r.last_error && r.state !== "ready"));
      $("failures").replaceChildren(...failed.map(failure));
      $("updated").textContent = new Date().toLocaleTimeString();
    }
    setTimeout(tick, interval);
  }

  tick();
})();
