// The inbox page: polls /api/state and draws it; every button calls the same JSON API that
// tests use. Everything shown is built with textContent, never parsed as HTML: message texts
// come from whatever an application sent.
"use strict";

const POLL_MS = 800;
// Every time on the page is the emulator's clock, which keeps the gateway's time: Moscow.
const GATEWAY_TIME = "MSK, the gateway's time (Moscow, UTC+3)";
// Messages per page: the API builds and the page draws only these, however full the outbox.
const PAGE_SIZE = 50;
const STATUS_LABELS = {
  queued: "queued",
  sent: "sent",
  delivered: "delivered",
  undelivered: "not delivered",
  error: "error",
};
const FATE_NOTES = {
  undeliverable: "never delivered: the emulator's rule for undeliverable numbers",
  fail: "fails when sent: the emulator's rule for failing numbers",
};
const FAULT_LABELS = {
  close_before: "close before",
  close_after: "close after",
  http_500: "HTTP 500",
  delay: "delay",
  garbage: "garbage",
  body: "custom body",
  oversized: "oversized body",
};

const page = {
  query: "",
  offset: 0,
  compact: false,
  open: new Set(),  // messages opened in the compact list, by key
  data: null,
  drawnMessages: null,
  drawnSide: null,
  known: new Set(),
  firstDraw: true,
  timer: null,
};

function $(id) {
  return document.getElementById(id);
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, method, body) {
  const options = { method: method || "GET", headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// --- formatting ------------------------------------------------------------------------------

function formatPhone(digits) {
  // Russian numbers the way people read them; others as international digits.
  const match = /^7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(digits);
  return match ? `+7 ${match[1]} ${match[2]}-${match[3]}-${match[4]}` : `+${digits}`;
}

function timeOf(iso) {
  return iso ? iso.slice(11, 19) : "";
}

function dayOf(iso) {
  return iso ? iso.slice(0, 10) : "";
}

function count(n) {
  return n.toLocaleString("en-US");
}

function shortTime(iso, today) {
  if (!iso) return "";
  return dayOf(iso) === today ? timeOf(iso) : `${dayOf(iso).slice(5)} ${timeOf(iso).slice(0, 5)}`;
}

// --- drawing ---------------------------------------------------------------------------------

function drawRecipient(recipient, today) {
  const status = recipient.status || "queued";
  const steps = recipient.timeline.map((step) =>
    el("li", { className: step.reached ? "reached" : "pending",
               title: step.reached ? "reached" : "expected" },
       `${STATUS_LABELS[step.status] || step.status} ${shortTime(step.at, today)}`));
  return el("li", { className: "recipient", "data-phone": recipient.phone, "data-status": status },
    el("span", { className: "phone" }, formatPhone(recipient.phone)),
    el("span", { className: `badge ${status}` }, STATUS_LABELS[status] || status),
    el("ol", { className: "timeline", "aria-label": "delivery timeline" }, ...steps),
    FATE_NOTES[recipient.fate] ? el("span", { className: "fate" }, FATE_NOTES[recipient.fate]) : null);
}

function drawMessage(message, today) {
  const meta = [
    el("li", {}, "from ", el("b", {}, message.sender_shown || "—"),
       message.sender ? "" : " (account default)"),
    el("li", {}, "id ", el("b", {}, message.request_id)),
    el("li", {}, message.rus_sms ? "rus_sms=1 (Unicode)" : "rus_sms=0 (transliterated)"),
    el("li", {}, `${message.length}/${message.limit} characters`),
    el("li", {}, `lifetime ${message.valid_hours} h, until ${shortTime(message.lifetime_ends, today)}`),
    message.schedule ? el("li", {}, "scheduled ", el("b", {}, message.schedule.replace("T", " ").slice(0, 16))) : null,
    message.user_id ? el("li", {}, `account ${message.user_id}`) : null,
  ];
  const to = message.phones.map(formatPhone).join(", ");
  const item = el("li", { className: "message", "data-request-id": message.request_id,
                          "data-status": message.status },
    el("div", { className: "message-head" },
      el("span", { className: "from" }, "To ", to),
      el("time", { datetime: message.received_at, title: GATEWAY_TIME }, shortTime(message.received_at, today))),
    el("div", { className: "bubble" },
      message.code ? el("p", { className: "otp-code", title: "one-time code" }, message.code) : null,
      el("p", { className: "text", lang: "" }, message.text),
      message.parts > 1 ? el("span", { className: "part" }, `part ${message.part} of ${message.parts}`) : null),
    el("ul", { className: "meta" }, ...meta),
    el("ul", { className: "recipients" }, ...message.recipients.map((r) => drawRecipient(r, today))));
  markFresh(item, message);
  return item;
}

function keyOf(message) {
  return `${message.user_id}:${message.request_id}`;
}

function markFresh(item, message) {
  const key = keyOf(message);
  if (!page.firstDraw && !page.known.has(key)) item.classList.add("fresh");
  page.known.add(key);
}

// The compact list: one line per message (time, recipients, text, statuses), like a mail
// client's; a click opens the whole card below its line.
function drawRow(message, today) {
  const key = keyOf(message);
  const open = page.open.has(key);
  const statuses = [...new Set(message.recipients.map((r) => r.status || "queued"))];
  const more = message.phones.length > 1 ? ` +${message.phones.length - 1}` : "";
  const row = el("li", { className: "row", "data-request-id": message.request_id,
                         "data-status": message.status, tabindex: 0, role: "button",
                         "aria-expanded": open ? "true" : "false" },
    el("time", { datetime: message.received_at, title: GATEWAY_TIME }, shortTime(message.received_at, today)),
    el("span", { className: "to" }, formatPhone(message.phones[0]) + more),
    el("span", { className: "snippet" }, message.text),
    el("span", { className: "statuses" },
      ...statuses.map((status) => el("span", { className: `badge ${status}` }, STATUS_LABELS[status] || status))));
  const toggle = () => {
    if (page.open.has(key)) page.open.delete(key);
    else page.open.add(key);
    drawMessages(page.data);
  };
  row.addEventListener("click", toggle);
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      toggle();
    }
  });
  markFresh(row, message);
  return open ? [row, drawMessage(message, today)] : [row];
}

function describeCount(data) {
  const shown = data.messages.length;
  if (!shown) return page.query ? `0 found of ${count(data.total)}` : `${count(data.total)} messages`;
  const first = data.offset + 1;
  const last = data.offset + shown;
  if (page.query) {
    if (data.offset === 0 && shown === data.matched) return `${count(shown)} found of ${count(data.total)}`;
    return `${count(first)}–${count(last)} of ${count(data.matched)} found`;
  }
  if (data.offset === 0 && shown === data.total) return `${count(data.total)} message${data.total === 1 ? "" : "s"}`;
  return `${count(first)}–${count(last)} of ${count(data.total)} messages`;
}

function drawMessages(data) {
  const today = dayOf(data.clock.now);
  const list = $("messages");
  list.classList.toggle("compact", page.compact);
  list.replaceChildren(...data.messages.flatMap((m) =>
    page.compact ? drawRow(m, today) : [drawMessage(m, today)]));
  $("count").textContent = describeCount(data);
  $("empty").hidden = data.total > 0;
  $("pager").hidden = data.matched <= PAGE_SIZE;
  $("newer").disabled = data.offset === 0;
  $("older").disabled = data.offset + data.messages.length >= data.matched;
  $("page-range").textContent = describeCount(data);
  page.firstDraw = false;
}

function describeFaults(faults) {
  const label = (kind) => FAULT_LABELS[kind] || kind;
  const parts = [];
  if (faults.queued.length) parts.push(`next request${faults.queued.length > 1 ? "s" : ""}: ${faults.queued.map(label).join(", ")}`);
  if (faults.random.length) parts.push(`every request: ${faults.random.map(label).join(" or ")}`);
  return parts;
}

function drawSide(data) {
  $("accounts").replaceChildren(...data.accounts.map((account) =>
    el("li", { "data-user-id": account.user_id },
      el("span", {}, `${account.user_id} · ${account.login}`,
         account.blocked ? el("span", { className: "blocked" }, " blocked") : null),
      el("span", { className: "balance" }, account.balance))));

  const faults = data.faults;
  const parts = describeFaults(faults);
  const state = $("faults-state");
  state.textContent = parts.length ? `Armed: ${parts.join("; ")}.` : "No faults: every request is answered normally.";
  state.classList.toggle("armed", parts.length > 0);
  for (const button of document.querySelectorAll("[data-fault]")) {
    const kind = button.dataset.fault;
    const armed = faults.queued.includes(kind) || faults.random.includes(kind);
    button.setAttribute("aria-pressed", armed ? "true" : "false");
  }
  $("quirky").checked = faults.quirky;

  const today = dayOf(data.clock.now);
  $("rejected").replaceChildren(...data.rejected.map((request) => {
    const what = request.fault
      ? el("span", { className: "code" }, `fault ${FAULT_LABELS[request.fault] || request.fault}`)
      : el("span", { className: "code" }, `error ${request.error}`);
    const meaning = request.fault ? request.fault_meaning : request.meaning;
    const who = [request.command || "unread request",
                 request.request_id ? `id ${request.request_id}` : null,
                 request.phones.length ? `to ${request.phones.map(formatPhone).join(", ")}` : null]
      .filter(Boolean).join(" · ");
    return el("li", { "data-error": request.error, "data-fault": request.fault },
      el("time", { title: GATEWAY_TIME }, shortTime(request.at, today)), " ", what, " ", meaning || "",
      el("div", { className: "what" }, who));
  }));
  $("rejected-empty").hidden = data.rejected.length > 0;
}

function drawClock(clock) {
  $("clock-time").textContent = timeOf(clock.now);
  $("clock-date").textContent = `${dayOf(clock.now)} MSK${clock.frozen ? " · frozen" : ""}`;
  $("advance-end").disabled = !clock.end_of_lifetimes || clock.end_of_lifetimes <= clock.now;
}

function draw(data) {
  page.data = data;
  drawClock(data.clock);
  const messagesKey = JSON.stringify([data.messages, data.total, data.matched, data.offset, page.compact]);
  if (messagesKey !== page.drawnMessages) {
    page.drawnMessages = messagesKey;
    drawMessages(data);
  }
  const sideKey = JSON.stringify([data.accounts, data.faults, data.rejected]);
  if (sideKey !== page.drawnSide) {
    page.drawnSide = sideKey;
    drawSide(data);
  }
}

// --- live updates ----------------------------------------------------------------------------

function setLive(ok, text) {
  const live = $("live");
  live.textContent = text;
  live.classList.toggle("offline", !ok);
}

async function refresh() {
  clearTimeout(page.timer);
  try {
    const data = await api(`/api/state?limit=${PAGE_SIZE}&offset=${page.offset}&q=${encodeURIComponent(page.query)}`);
    if (page.offset > 0 && data.offset >= data.matched) {
      // The page it was on is gone (messages cleared, a narrower search): the last one left.
      page.offset = Math.max(0, Math.floor((data.matched - 1) / PAGE_SIZE) * PAGE_SIZE);
      return refresh();
    }
    draw(data);
    setLive(true, "live");
  } catch (error) {
    setLive(false, "emulator not reachable, retrying");
  }
  page.timer = setTimeout(refresh, POLL_MS);
}

async function act(path, method, body) {
  try {
    await api(path, method, body);
  } catch (error) {
    setLive(false, error.message);
  }
  await refresh();
}

function faultMode() {
  return document.querySelector('input[name="fault-mode"]:checked').value;
}

function start() {
  $("endpoint").textContent = `${location.origin}/extxml.php`;
  for (const button of document.querySelectorAll("[data-advance]")) {
    button.addEventListener("click", () => {
      const step = button.dataset.advance;
      act("/api/clock", "POST", { advance: step === "end" ? "end" : Number(step) });
    });
  }
  for (const button of document.querySelectorAll("[data-fault]")) {
    button.addEventListener("click", () => {
      const kind = button.dataset.fault;
      if (faultMode() === "every") {
        act("/api/faults", "POST", { kind, every: button.getAttribute("aria-pressed") !== "true" });
      } else {
        act("/api/faults", "POST", { kind, count: 1 });
      }
    });
  }
  $("quirky").addEventListener("change", (event) => act("/api/faults", "POST", { quirky: event.target.checked }));
  $("clear-faults").addEventListener("click", () => act("/api/faults", "DELETE"));
  $("clear").addEventListener("click", () => {
    page.known.clear();
    page.firstDraw = true;
    page.offset = 0;
    act("/api/reset", "POST", {});
  });
  let typing = null;
  $("search").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      page.query = event.target.value;
      page.offset = 0;
      refresh();
    }, 150);
  });
  $("newer").addEventListener("click", () => {
    page.offset = Math.max(0, page.offset - PAGE_SIZE);
    refresh();
  });
  $("older").addEventListener("click", () => {
    page.offset += PAGE_SIZE;
    refresh();
  });
  page.compact = localStorage.getItem("inbox-view") === "compact";
  $("compact").setAttribute("aria-pressed", page.compact ? "true" : "false");
  $("compact").addEventListener("click", () => {
    page.compact = !page.compact;
    localStorage.setItem("inbox-view", page.compact ? "compact" : "cards");
    $("compact").setAttribute("aria-pressed", page.compact ? "true" : "false");
    if (page.data) draw(page.data);
  });
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
