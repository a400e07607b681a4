// The chat page: sends a question to /chat/stream and renders the server-sent events of the turn as they come —
// the answer as it is written, tool calls folded under it (failed ones marked as failures, never as sources), signed
// effect charts as inline SVG with their PGI/PGU check beside them, what-if and counterfactual diffs as tables, and
// numbers that no tool returned marked in the answer. All text goes in through textContent, never as HTML.
"use strict";

const log = document.getElementById("log");
const form = document.getElementById("ask");
const input = document.getElementById("message");
const modelSelect = document.getElementById("model");
let sessionId = newSessionId();

function newSessionId() {
  return "web-" + Math.random().toString(36).slice(2, 12);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// When the server asks for an API key (401), ask the person once and keep it for this tab only.
async function apiFetch(url, options = {}) {
  const withKey = () => {
    const key = sessionStorage.getItem("xplain-api-key");
    const headers = { ...(options.headers || {}), ...(key ? { "X-API-Key": key } : {}) };
    return fetch(url, { ...options, headers });
  };
  let response = await withKey();
  if (response.status === 401) {
    const key = window.prompt("This server needs an API key:");
    if (key) {
      sessionStorage.setItem("xplain-api-key", key);
      response = await withKey();
    }
  }
  return response;
}

async function loadModels() {
  const reply = await apiFetch("/chat/models");
  const { models } = await reply.json();
  for (const name of models) modelSelect.append(new Option(name, name));
}

function startTurn(question) {
  const turn = element("section", "turn");
  turn.append(element("div", "question", question));
  const answer = element("div", "answer pending", "Working…");
  const plots = element("div", "plots");
  const tools = element("div", "tools");
  turn.append(answer, plots, tools);
  log.append(turn);
  return { turn, answer, plots, tools, calls: new Map() };
}

function argumentsText(args) {
  return Object.entries(args).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
}

function onToolCall(view, event) {
  const details = element("details", "tool-call");
  details.append(element("summary", "", `${event.name}(${argumentsText(event.arguments)})`));
  const output = element("pre", "", "running…");
  details.append(output);
  view.tools.append(details);
  view.calls.set(event.id, output);
}

function onToolResult(view, event) {
  const output = view.calls.get(event.id);
  if (event.error) {
    if (output) {
      output.textContent = event.error;
      output.parentElement.classList.add("failed");
      output.parentElement.querySelector("summary").prepend("failed: ");
    }
    return;
  }
  let data = event.result;
  if (!data) { try { data = JSON.parse(event.output); } catch (_) { data = null; } }
  if (output) output.textContent = data ? JSON.stringify(data, null, 2) : event.output;
  if (!data) return;
  if (event.chart) view.plots.append(chartFigure(event.chart, data));
  if (data.curve) view.plots.append(curveTable(data));
  if (data.counterfactuals) view.plots.append(counterfactualTable(data));
  else if (data.before && data.after) view.plots.append(diffTable(data));
}

function chartFigure(spec, data) {
  // drawn by xplainCharts, the same renderer as the batch report's (xplain/display/charts.js)
  const figure = element("figure", "plot");
  figure.innerHTML = xplainCharts.svg(spec);  // the chart carries its own title
  if (data.check && data.check.pgi !== null && data.check.pgu !== null) {
    const check = data.check;
    const words = {"faithful": "holds up", "not faithful": "not borne out", "inconclusive": "inconclusive"};
    const verdict = words[check.verdict] ?? (check.pgi > check.pgu ? "holds up" : "doubtful");
    const interval = check.interval ? ` (difference in [${check.interval[0]}, ${check.interval[1]}])` : "";
    const badge = element("div", "check " + (check.verdict === "faithful" ? "good" : "weak"),
      `Check (top ${check.top_k}): PGI ${check.pgi} vs PGU ${check.pgu}${interval}: ${verdict}`);
    badge.title = "PGI: change in the prediction when the top inputs are perturbed; PGU: when the others are. " +
      "A faithful ranking has PGI above PGU.";
    figure.append(badge);
  }
  return figure;
}

function curveTable(data) {
  const table = element("table", "curve");
  const head = table.insertRow();
  for (const title of [data.feature, `mean P(${data.class_name})`]) head.append(element("th", "", title));
  for (const point of data.curve) {
    const row = table.insertRow();
    row.append(element("td", "", String(point.value)), element("td", "", String(point.mean_probability)));
  }
  return table;
}

function counterfactualTable(data) {
  const table = element("table", "diff counterfactual");
  const head = table.insertRow();
  for (const title of ["counterfactual", "changes", "prediction", "valid"]) head.append(element("th", "", title));
  const original = table.insertRow();
  original.append(element("td", "", "original"), element("td", "", data.text ?? `row ${data.row}`),
    element("td", "", `${data.original_prediction} (${data.original_probability})`), element("td", "", ""));
  data.counterfactuals.forEach((candidate, i) => {
    const row = table.insertRow();
    row.className = candidate.valid ? "valid" : "invalid";
    const changes = candidate.changes  // a row's: [{feature, old, new}]; a text's counterfactual is its text
      ? candidate.changes.map((change) => `${change.feature}: ${change.old} → ${change.new}`).join(", ")
      : candidate.text;
    row.append(element("td", "", `#${i + 1}`), element("td", "", changes),
      element("td", "", `${candidate.prediction} (${candidate.probability})`),
      element("td", "", candidate.valid ? "yes" : "no"));
  });
  return table;
}

function diffTable(data) {
  const table = element("table", "diff");
  const head = table.insertRow();
  for (const title of ["", "before", "after"]) head.append(element("th", "", title));
  const rows = [];
  if (data.changes) {
    for (const [feature, change] of Object.entries(data.changes)) rows.push([feature, change.old, change.new]);
  }
  if (data.edited_text != null) rows.push(["text", data.text ?? `row ${data.row}`, data.edited_text]);
  rows.push(["prediction", data.before.predicted, data.after.predicted]);
  for (const cells of rows) {
    const row = table.insertRow();
    for (const value of cells) row.append(element("td", "", String(value)));
  }
  return table;
}

function markUngrounded(node, text, numbers) {
  node.textContent = "";
  if (!numbers.length) { node.textContent = text; return; }
  const escaped = numbers.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(?<![\\w.])(${escaped.join("|")})(?![\\w])`, "g");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    node.append(document.createTextNode(text.slice(last, match.index)));
    const mark = element("mark", "ungrounded", match[0]);
    mark.title = "No tool returned this number in this turn";
    node.append(mark);
    last = match.index + match[0].length;
  }
  node.append(document.createTextNode(text.slice(last)));
}

function onDelta(view, text) {
  if (view.answer.classList.contains("pending")) {
    view.answer.classList.remove("pending");
    view.answer.textContent = "";
  }
  view.answer.append(document.createTextNode(text));
}

function onAnswer(view, answer) {
  view.answer.classList.remove("pending");
  markUngrounded(view.answer, answer.text, answer.ungrounded_numbers);
  const good = answer.tool_calls.filter((c) => !c.error);
  const calls = good.map((c) => `${c.name}(${argumentsText(c.arguments)})`);
  view.turn.append(element("div", "sources", "Based on: " + (calls.length ? calls.join(", ") : "no tool result")));
  for (const failed of answer.tool_calls.filter((c) => c.error)) {
    view.turn.append(element("div", "failure", `Failed: ${failed.name}: ${failed.error}`));
  }
  if (answer.plan) {
    view.turn.append(element("div", "plan", `operation: ${answer.plan.operation} (chosen by ${answer.plan.chosen_by})`));
  }
  if (answer.ungrounded_numbers.length) {
    view.turn.append(element("div", "warning", "Not backed by any tool result: " + answer.ungrounded_numbers.join(", ")));
  }
}

function onError(view, message) {
  view.answer.classList.remove("pending");
  view.answer.classList.add("error");
  view.answer.textContent = message;
}

async function* serverSentEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { type: "message", data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event.type = line.slice(7);
        else if (line.startsWith("data: ")) event.data += line.slice(6);
      }
      yield event;
    }
  }
}

async function ask(question) {
  const view = startTurn(question);
  const response = await apiFetch("/chat/stream", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: modelSelect.value, session_id: sessionId, message: question }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    onError(view, body.error || body.detail && JSON.stringify(body.detail) || `request failed (${response.status})`);
    return;
  }
  for await (const event of serverSentEvents(response)) {
    const data = JSON.parse(event.data);
    if (event.type === "tool_call") onToolCall(view, data);
    else if (event.type === "tool_result") onToolResult(view, data);
    else if (event.type === "answer_delta") onDelta(view, data.text);
    else if (event.type === "answer") onAnswer(view, data.answer);
    else if (event.type === "error") onError(view, data.error);
    log.scrollTop = log.scrollHeight;
  }
}

form.addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const question = input.value.trim();
  if (!question) return;
  input.value = "";
  form.querySelector("button").disabled = true;
  try { await ask(question); } finally { form.querySelector("button").disabled = false; }
});
input.addEventListener("keydown", (key) => {
  if (key.key === "Enter" && !key.shiftKey) { key.preventDefault(); form.requestSubmit(); }
});
document.getElementById("new-session").addEventListener("click", () => {
  sessionId = newSessionId();
  log.textContent = "";
});
loadModels();
