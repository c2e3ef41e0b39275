// The models page: the registry's list, pulls followed through the registry's job events (SSE,
// relayed by the web service) with a progress bar, cancel, delete, serve and stop.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const errorBox = $("models-error");
  const jobsBox = $("jobs");
  const tbody = $("models");
  const TERMINAL = ["finished", "failed", "stopped", "canceled"];
  const followed = new Map();

  async function refresh() {
    const reply = await llf.api("GET", "/api/registry/models");
    if (!reply.ok) { llf.showError(errorBox, reply.error); return; }
    const models = reply.body || [];
    if (!models.length) {
      const row = llf.el("tr");
      row.appendChild(llf.el("td", { colspan: "5", class: "muted" }, "No models yet: pull one above."));
      tbody.replaceChildren(row);
      return;
    }
    tbody.replaceChildren(...models.map(row));
  }

  function row(model) {
    const tr = llf.el("tr", { dataset: { model: model.name } });
    tr.appendChild(llf.el("td", { class: "name" }, model.name));
    tr.appendChild(llf.el("td", null, llf.bytes(model.size_bytes)));
    tr.appendChild(llf.el("td", { class: model.verified ? "verified ok" : "verified bad" }, model.verified ? "verified" : "not verified"));
    tr.appendChild(llf.el("td", { class: "served" }, model.served ? "served" : "—"));
    const actions = llf.el("td", { class: "actions" });
    const serve = llf.el("button", { type: "button", class: "secondary serve" }, model.served ? "Stop" : "Serve");
    serve.addEventListener("click", () => (model.served ? stopModel(model.name) : serveModel(model.name)));
    const remove = llf.el("button", { type: "button", class: "danger delete" }, "Delete");
    remove.addEventListener("click", () => {
      if (remove.dataset.confirm) { deleteModel(model.name); return; }
      remove.dataset.confirm = "1";
      remove.textContent = "Confirm delete";
      setTimeout(() => { delete remove.dataset.confirm; remove.textContent = "Delete"; }, 4000);
    });
    actions.append(serve, remove);
    tr.appendChild(actions);
    return tr;
  }

  async function serveModel(name) {
    llf.showError(errorBox, "");
    const reply = await llf.api("POST", "/api/serve", { model: name });
    if (!reply.ok) llf.showError(errorBox, reply.error);
    refresh();
  }

  async function stopModel(name) {
    llf.showError(errorBox, "");
    const reply = await llf.api("DELETE", "/api/serve/" + name);
    if (!reply.ok) llf.showError(errorBox, reply.error);
    refresh();
  }

  async function deleteModel(name) {
    llf.showError(errorBox, "");
    const reply = await llf.api("DELETE", "/api/registry/models/" + name);
    if (!reply.ok) llf.showError(errorBox, reply.error);
    refresh();
  }

  function progressText(job) {
    const p = job.progress || {};
    const parts = [job.state, p.phase];
    if (p.bytes_total) parts.push(llf.bytes(p.bytes_done) + " / " + llf.bytes(p.bytes_total));
    if (p.rate_bps) parts.push(llf.bytes(p.rate_bps) + "/s");
    if (job.position !== null && job.position !== undefined && job.state === "queued") parts.push("position " + job.position);
    if (job.error) parts.push(job.error);
    return parts.filter(Boolean).join(" · ");
  }

  function follow(jobId, repo) {
    if (followed.has(jobId)) return;
    const box = llf.el("div", { class: "job", dataset: { job: jobId } });
    box.appendChild(llf.el("div", { class: "job-repo" }, repo));
    const bar = llf.el("progress", { max: "100", value: "0", "aria-label": "Progress of " + repo });
    const text = llf.el("div", { class: "job-text muted" }, "queued");
    const cancel = llf.el("button", { type: "button", class: "danger cancel" }, "Cancel");
    cancel.addEventListener("click", async () => {
      const reply = await llf.api("DELETE", "/api/jobs/" + encodeURIComponent(jobId));
      if (!reply.ok) llf.showError(errorBox, reply.error);
      else update(reply.body);
    });
    box.append(bar, text, cancel);
    jobsBox.prepend(box);
    const source = new EventSource("/api/jobs/" + encodeURIComponent(jobId) + "/events");
    followed.set(jobId, source);

    function update(job) {
      const p = job.progress || {};
      const percent = p.bytes_total ? Math.min(100, (100 * p.bytes_done) / p.bytes_total) : job.state === "finished" ? 100 : 0;
      bar.value = percent;
      bar.dataset.percent = percent.toFixed(1);
      text.textContent = progressText(job);
      box.dataset.state = job.state;
      if (TERMINAL.includes(job.state)) {
        source.close();
        cancel.hidden = true;
        if (job.state === "failed" && job.error) llf.showError(errorBox, job.error);
        refresh();
      }
    }
    source.onmessage = (event) => {
      try { update(JSON.parse(event.data)); } catch (e) { /* ignore a broken event */ }
    };
    source.onerror = () => {
      if (!TERMINAL.includes(box.dataset.state)) text.textContent = "connection lost, retrying…";
    };
  }

  $("pull-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    llf.showError(errorBox, "");
    const repo = $("repo").value.trim();
    const reply = await llf.api("POST", "/api/pulls", { repo: repo });
    if (!reply.ok) { llf.showError(errorBox, reply.error); return; }
    if (reply.body.state === "present") { llf.showError(errorBox, repo + " is already present and verified."); refresh(); return; }
    follow(reply.body.job_id, repo);
    $("repo").value = "";
  });

  async function resume() {
    const reply = await llf.api("GET", "/api/jobs");
    if (!reply.ok) return;
    for (const job of reply.body || []) {
      if (job.kind === "pull" && !TERMINAL.includes(job.state)) follow(job.id, job.repo);
    }
  }

  refresh();
  resume();
})();
