// Operations dashboard: signs in with a pasted bearer token (kept in sessionStorage), reads the
// statistics API and draws the figures. Everything is written with textContent or SVG attributes:
// names coming from the API are never parsed as HTML.
"use strict";

const TOKEN_KEY = "tracing.dashboard.token";
const STATES = ["submitted", "forwarded", "answered", "closed"];
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch (error) {
    return null;
  }
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, accept = "application/json") {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}`, Accept: accept } });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch (error) {
      /* not problem+json */
    }
    throw new ApiError(response.status, detail);
  }
  return accept === "text/csv" ? response.blob() : response.json();
}

function showError(error) {
  const box = $("error");
  if (!error) {
    box.hidden = true;
    return;
  }
  const prefix = error.status === 401 ? "Your token was refused: " : error.status === 403 ? "Not allowed: " : "";
  box.textContent = prefix + error.message;
  box.hidden = false;
}

const number = (n) => (n === null || n === undefined ? "—" : n.toLocaleString("en"));
const percent = (r) => (r === null || r === undefined ? "—" : `${(r * 100).toFixed(1)}%`);

function duration(hours) {
  if (hours === null || hours === undefined) return "—";
  if (hours < 48) return `${hours.toFixed(1)} h`;
  return `${(hours / 24).toFixed(1)} days`;
}

function selectedScope() {
  const value = $("scope").value;
  return value ? { operation: value } : {};
}

function statsPath(extra = {}) {
  const params = new URLSearchParams(extra);
  if ($("period-from").value) params.set("from", $("period-from").value);
  if ($("period-to").value) params.set("to", $("period-to").value);
  const scope = selectedScope();
  const base = scope.operation ? `/v1/operations/${encodeURIComponent(scope.operation)}/stats` : "/v1/stats";
  const query = params.toString();
  return query ? `${base}?${query}` : base;
}

function card(label, value, hint) {
  const node = el("div", { class: "card" });
  node.append(el("div", { class: "card-value" }, value), el("div", { class: "card-label" }, label));
  if (hint) node.append(el("div", { class: "card-hint" }, hint));
  return node;
}

function renderCards(stats) {
  const cards = $("cards");
  cards.replaceChildren(
    card("Trace requests", number(stats.total_requests)),
    card("Forwarded", number(stats.forwarded), "at least once"),
    card("Answered", number(stats.answered)),
    card("Response rate", percent(stats.response_rate), "answered / forwarded"),
    card("Median time to answer", duration(stats.time_to_answer_hours.median),
      `90% within ${duration(stats.time_to_answer_hours.p90)}`),
    card("Median time to first forward", duration(stats.time_to_first_forward_hours.median)),
    card("Overdue", stats.overdue === null ? "—" : number(stats.overdue),
      stats.overdue === null ? "no deadlines recorded" : "past a deadline"),
  );
  if (stats.operation) {
    const recovered = stats.operation.recovered;
    cards.prepend(card("Firearms recovered", number(recovered.total),
      `${recovered.seized} seized · ${recovered.found} found · ${recovered.surrendered} surrendered`));
  }
}

function renderChart(weekly) {
  const chart = $("chart");
  const legend = $("legend");
  legend.replaceChildren(...STATES.map((state) => {
    const item = el("li");
    item.append(el("span", { class: `swatch state-${state}` }), document.createTextNode(state));
    return item;
  }));
  if (!weekly.length) {
    chart.replaceChildren(el("p", { class: "note" }, "No trace requests in this scope."));
    return;
  }
  const width = 640;
  const height = 300;
  const left = 36;
  const bottom = 40;
  const top = 10;
  const max = Math.max(...weekly.map((w) => w.submitted), 1);
  const step = (width - left - 8) / weekly.length;
  const bar = Math.max(1, Math.min(48, step * 0.75));
  const scale = (height - top - bottom) / max;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Trace requests by state per week" });
  for (const tick of [0, Math.ceil(max / 2), max]) {
    const y = height - bottom - tick * scale;
    root.append(svg("line", { x1: left, x2: width - 4, y1: y, y2: y, class: "grid" }));
    root.append(svg("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, tick));
  }
  const labelEvery = Math.ceil(weekly.length / 10);
  weekly.forEach((week, index) => {
    const x = left + index * step + (step - bar) / 2;
    let y = height - bottom;
    for (const state of STATES) {
      const count = week.by_state[state] || 0;
      if (!count) continue;
      const h = count * scale;
      y -= h;
      const rect = svg("rect", { x, y, width: bar, height: h, class: `state-${state}` });
      rect.append(svg("title", {}, `week of ${week.week}: ${count} ${state}`));
      root.append(rect);
    }
    if (index % labelEvery === 0) {
      root.append(svg("text", { x: x + bar / 2, y: height - bottom + 16, class: "axis", "text-anchor": "middle" },
        week.week.slice(5)));
    }
  });
  root.append(svg("text", { x: left, y: height - 6, class: "axis" },
    `weeks from ${weekly[0].week} to ${weekly[weekly.length - 1].week}`));
  chart.replaceChildren(root);
}

function renderEndings(stats) {
  const table = $("endings");
  const rows = [];
  const section = (title, counts) => {
    rows.push(el("tr", { class: "group" }, undefined));
    rows[rows.length - 1].append(el("th", { colspan: "2" }, title));
    for (const [key, count] of Object.entries(counts)) {
      const row = el("tr");
      row.append(el("td", {}, key.replace(/_/g, " ")), el("td", { class: "num" }, number(count)));
      rows.push(row);
    }
  };
  section("State now", stats.by_state);
  section("Answer", stats.by_outcome);
  section("Resolution", stats.by_resolution);
  table.replaceChildren(...rows);
}

function renderCountries(rows) {
  const body = $("countries").querySelector("tbody");
  if (!rows.length) {
    const empty = el("tr");
    empty.append(el("td", { colspan: "6", class: "note" }, "No trace requests in this scope."));
    body.replaceChildren(empty);
    return;
  }
  body.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    tr.append(
      el("td", {}, row.country),
      el("td", { class: "num" }, number(row.requests)),
      el("td", { class: "num" }, number(row.forwarded)),
      el("td", { class: "num" }, number(row.answered)),
      el("td", { class: "num" }, percent(row.response_rate)),
      el("td", { class: "num" }, duration(row.median_answer_hours)),
    );
    return tr;
  }));
}

async function renderSdg() {
  const box = $("sdg");
  const country = $("sdg-country").value.toUpperCase();
  const year = $("sdg-year").value;
  try {
    const sdg = await api(`/v1/stats/sdg-16-4-2?country=${encodeURIComponent(country)}&year=${encodeURIComponent(year)}`);
    const headline = el("p", { class: "sdg-headline" });
    headline.append(el("strong", { class: "sdg-value" }, percent(sdg.proportion)),
      document.createTextNode(` of arms recovered in ${sdg.country} in ${sdg.year} had their illicit origin or context established (${sdg.numerator} of ${sdg.denominator}).`));
    const table = el("table");
    const head = el("tr");
    for (const title of ["Recovery type", "Established", "Recovered", "Proportion", "Trace requests", "Reported, not traced"]) {
      head.append(el("th", { class: title === "Recovery type" ? "" : "num" }, title));
    }
    table.append(head);
    for (const [kind, part] of Object.entries(sdg.by_recovery_type)) {
      const row = el("tr");
      row.append(el("td", {}, kind), el("td", { class: "num" }, number(part.numerator)),
        el("td", { class: "num" }, number(part.denominator)), el("td", { class: "num" }, percent(part.proportion)),
        el("td", { class: "num" }, number(part.trace_requests)), el("td", { class: "num" }, number(part.reported_not_traced)));
      table.append(row);
    }
    const method = el("details");
    method.append(el("summary", {}, "Method"), el("p", {}, sdg.method));
    box.replaceChildren(headline, table, method);
  } catch (error) {
    box.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

let operationsById = {};

async function loadScopes(claims) {
  const listed = await api("/v1/operations");
  operationsById = Object.fromEntries(listed.items.map((op) => [op.code, op]));
  const select = $("scope");
  const options = listed.items.map((op) => el("option", { value: op.code }, `${op.name} (${op.code})`));
  const own = claims && claims.roles && claims.roles.includes("admin") ? "All trace requests" : `Requests involving ${claims ? claims.country : "my country"}`;
  select.replaceChildren(...options, el("option", { value: "" }, own));
}

function defaultSdg(claims) {
  const operation = operationsById[$("scope").value];
  let country = claims ? claims.country : "";
  if (operation && !operation.countries.includes(country)) country = operation.countries[0];
  $("sdg-country").value = country;
  $("sdg-year").value = operation ? operation.start.slice(0, 4) : String(new Date().getFullYear());
}

async function refresh() {
  showError(null);
  try {
    const stats = await api(statsPath());
    const scope = stats.operation
      ? `${stats.operation.name}: ${stats.operation.start} to ${stats.operation.end}, ${stats.operation.countries.join(" ")}; organised by ${stats.operation.organisers.join(", ") || "—"}`
      : stats.scope.party_country ? `Trace requests ${stats.scope.party_country} filed or received` : "All trace requests";
    $("scope-note").textContent = scope;
    renderCards(stats);
    renderChart(stats.weekly);
    renderEndings(stats);
    renderCountries(stats.requested_countries);
  } catch (error) {
    showError(error);
  }
}

async function downloadCsv() {
  try {
    const blob = await api(statsPath({ format: "csv" }), "text/csv");
    const link = el("a", { href: URL.createObjectURL(blob), download: `${$("scope").value || "statistics"}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    showError(error);
  }
}

async function start() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    $("sign-in").hidden = false;
    $("board").hidden = true;
    $("who").hidden = true;
    return;
  }
  const claims = claimsOf(token);
  try {
    await loadScopes(claims);
  } catch (error) {
    showError(error);
    if (error.status === 401 || error.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("sign-in").hidden = false;
    }
    return;
  }
  $("who-text").textContent = claims ? `${claims.sub} · ${claims.agency} · ${claims.country} · ${(claims.roles || []).join(", ")}` : "signed in";
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("board").hidden = false;
  defaultSdg(claims);
  await Promise.all([refresh(), renderSdg()]);
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showError(null);
    start();
  });
  $("scope").addEventListener("change", () => {
    defaultSdg(claimsOf(sessionStorage.getItem(TOKEN_KEY) || ""));
    refresh();
    renderSdg();
  });
  $("refresh").addEventListener("click", refresh);
  $("download-csv").addEventListener("click", downloadCsv);
  $("sdg-form").addEventListener("submit", (event) => {
    event.preventDefault();
    renderSdg();
  });
  start();
});
