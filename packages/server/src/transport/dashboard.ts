// GET /dashboard: one self-contained page (no build step, no third-party code)
// showing the cluster as GET /api/info sees it: every instance, its
// connections, rooms, event-loop load and heartbeat age, refreshed every two
// seconds. The page holds no data of its own: it asks for the HTTP API key,
// keeps it in the tab's sessionStorage only, and sends it as a Bearer token.
// `dashboard: false` in the configuration turns the page off.

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>crier dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.2rem; margin: 0 0 1rem; }
  table { border-collapse: collapse; min-width: 40rem; }
  th, td { padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: right; }
  th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
  tfoot td { font-weight: 600; border-bottom: 0; }
  #error { color: #a00; }
  form { margin-bottom: 1rem; }
  .stale { color: #a60; }
</style>
<h1>crier cluster</h1>
<form id="login" hidden>
  <label>HTTP API key <input id="key" type="password" autocomplete="off" size="40"></label>
  <button type="submit">show</button>
</form>
<p id="error" role="alert"></p>
<table id="nodes" hidden>
  <thead><tr><th>instance</th><th>address</th><th>connections</th><th>rooms</th><th>load</th><th>up</th><th>heartbeat</th></tr></thead>
  <tbody></tbody>
  <tfoot><tr><td>total</td><td id="count"></td><td id="connections"></td><td id="rooms"></td><td></td><td></td><td></td></tr></tfoot>
</table>
<p><small id="updated"></small></p>
<script>
"use strict";
const STORE = "crier-dashboard-key";
const $ = (id) => document.getElementById(id);
const ago = (ms) => ms < 1000 ? "now" : ms < 60000 ? Math.round(ms / 1000) + " s" : ms < 3600000 ? Math.round(ms / 60000) + " min" : Math.round(ms / 3600000) + " h";
let timer;

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
}

function render(info) {
  const now = Date.now();
  const nodes = [...info.nodes].sort((a, b) => String(a.id).localeCompare(String(b.id)));
  const body = $("nodes").tBodies[0];
  body.replaceChildren(...nodes.map((node) => {
    const row = document.createElement("tr");
    row.dataset.node = node.id;
    cell(row, node.id + (node.id === info.node ? " (answered)" : ""));
    cell(row, node.address);
    cell(row, String(node.connections));
    cell(row, String(node.rooms));
    cell(row, Math.round(node.load * 100) + "%");
    cell(row, ago(now - node.startedAt));
    const age = now - node.updatedAt;
    cell(row, ago(age), age > 10000 ? "stale" : "");
    return row;
  }));
  $("count").textContent = nodes.length + (nodes.length === 1 ? " instance" : " instances");
  $("connections").textContent = String(nodes.reduce((t, n) => t + n.connections, 0));
  $("rooms").textContent = String(nodes.reduce((t, n) => t + n.rooms, 0));
  $("nodes").hidden = false;
  $("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
}

async function refresh() {
  const key = sessionStorage.getItem(STORE);
  if (!key) return showLogin("");
  try {
    const response = await fetch("/api/info", { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) {
      sessionStorage.removeItem(STORE);
      return showLogin("that key was refused: " + (body.error?.message ?? "unauthorized"));
    }
    if (!response.ok) throw new Error(body.error?.message ?? "HTTP " + response.status);
    $("error").textContent = "";
    render(body);
  } catch (error) {
    $("error").textContent = "cannot read /api/info: " + error.message;
  }
  timer = setTimeout(refresh, 2000);
}

function showLogin(message) {
  clearTimeout(timer);
  $("error").textContent = message;
  $("login").hidden = false;
  $("nodes").hidden = true;
  $("key").focus();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(STORE, $("key").value);
  $("key").value = "";
  $("login").hidden = true;
  refresh();
});
refresh();
</script>
</html>
`;
