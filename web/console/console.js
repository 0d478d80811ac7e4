// The technician console: readers and cards live, card info with the ID
// number masked, diagnostics, operations with their steps, the audit trail
// and the requests the station refused. It is served by stationd itself,
// loads nothing from outside, and talks to the API with a token kept in
// sessionStorage only (gone when the tab closes; never localStorage, never
// a cookie). Everything it shows is set as text, never as HTML.
import { Station, StationError, browserLang, maskSSN, localNetworkAccessState } from "/sdk/sscard.js";

const TEXT = {
  zh: {
    title: "技术控制台", stream: "事件流", signIn: "登录", signOut: "退出", tokenPh: "粘贴令牌 (sst_…)",
    tabReaders: "读卡器与卡", tabDiag: "诊断", tabOps: "操作", tabAudit: "审计", tabAccess: "访问与拒绝",
    readers: "读卡器", colReader: "读卡器", colRole: "用途", colCard: "卡", colProfile: "卡型", colPinpad: "密码键盘", colQueue: "队列",
    noReaders: "没有读卡器。", cardInfo: "卡片信息", live: "实时事件", present: "有卡", absent: "无卡", busy: "忙",
    readCard: "读卡", yes: "有", no: "无",
    diagnostics: "诊断", diagIntro: "检查本机服务、读卡器、卡片、浏览器与连接。", runDiag: "运行诊断",
    colCheck: "检查项", colSent: "发送", colExpected: "期望", colGot: "实际", colVerdict: "结论", colResult: "结果", colDetail: "详情", pass: "正常", fail: "异常", info: "信息",
    diagFull: "服务端诊断 (GET /v1/diagnostics)", diagFallback: "本服务未提供 GET /v1/diagnostics：以下为控制台能做的检查（服务、就绪、PC/SC、读卡器、事件流、浏览器）。",
    conformance: "一致性测试", checkConform: "运行一致性检查", conformNoCard: "没有插着卡的读卡器。", conformNA: "本服务未提供一致性测试接口 (POST /v1/readers/{id}/conform)。请在本机运行：sscard conform --profile <卡型> [--json]",
    operations: "操作", show: "查看", opPh: "操作编号", colOp: "编号", colKind: "类型", colState: "状态", colProgress: "进度", steps: "步骤",
    audit: "审计记录", cardId: "卡识别码", from: "起", to: "止", limit: "条数", search: "查询", chainCheck: "校验哈希链",
    colTime: "时间", colOpName: "操作", colWho: "令牌 / 操作员", colSSN: "社会保障号码", colOutcome: "结果",
    chainOK: (n) => `哈希链完整：${n} 条记录。`, chainBad: (s, r) => `哈希链在第 ${s} 条断开：${r}`,
    chainNA: "本服务未提供哈希链校验接口 (GET /v1/audit/verify)。请在本机运行：sscard audit verify",
    records: (n) => `${n} 条记录。`,
    refused: "被拒绝的来源与主机名", refusedIntro: "页面“连不上”时，先看这里：哪些来源 (Origin) 或主机名 (Host) 被服务拒绝。",
    refresh: "刷新", refusedNA: "本服务尚未提供被拒绝请求的记录接口 (GET /v1/refusals)。请查看服务日志中 code 为 ORIGIN_NOT_ALLOWED 或 HOST_NOT_ALLOWED 的记录。",
    refusedNone: "没有被拒绝的请求。", refusedCount: (n, c) => `最近 ${n} 类被拒绝的请求（最多保留 ${c} 类）。`, colCode: "拒绝原因", colOrigin: "来源 (Origin)", colHost: "主机名 (Host)", colRequest: "请求", colCount: "次数", colReason: "说明",
    thisBrowser: "本浏览器", origin: "本页来源", secure: "安全上下文", lna: "本地网络访问权限", language: "语言", station: "服务地址",
    needToken: "请输入技术员令牌后登录。", signedIn: (v) => `已登录 · stationd ${v}`,
    cStation: "本机服务", cReady: "就绪", cPCSC: "智能卡服务 (PC/SC)", cReader: (n) => `读卡器 ${n}`, cStream: "事件流", cBrowser: "浏览器",
    cCard: "卡", notAvailable: "不可用", streamOpen: "已连接", streamDown: "未连接",
  },
  en: {
    title: "Technician console", stream: "Events", signIn: "Sign in", signOut: "Sign out", tokenPh: "Paste a token (sst_…)",
    tabReaders: "Readers & cards", tabDiag: "Diagnostics", tabOps: "Operations", tabAudit: "Audit", tabAccess: "Access & refusals",
    readers: "Readers", colReader: "Reader", colRole: "Role", colCard: "Card", colProfile: "Profile", colPinpad: "PIN pad", colQueue: "Queue",
    noReaders: "No readers.", cardInfo: "Card", live: "Live events", present: "present", absent: "none", busy: "busy",
    readCard: "Read card", yes: "yes", no: "no",
    diagnostics: "Diagnostics", diagIntro: "Checks the station service, readers, cards, this browser and the connection.", runDiag: "Run diagnostics",
    colCheck: "Check", colSent: "Sent", colExpected: "Expected", colGot: "Got", colVerdict: "Verdict", colResult: "Result", colDetail: "Detail", pass: "OK", fail: "Problem", info: "Info",
    diagFull: "Station diagnostics (GET /v1/diagnostics)", diagFallback: "This station does not serve GET /v1/diagnostics: these are the checks the console can make (service, ready, PC/SC, readers, event stream, browser).",
    conformance: "Conformance", checkConform: "Run the checks", conformNoCard: "No card reader holds a card.", conformNA: "This station serves no conformance runs (POST /v1/readers/{id}/conform). On the station PC run: sscard conform --profile <profile> [--json]",
    operations: "Operations", show: "Show", opPh: "Operation id", colOp: "Id", colKind: "Kind", colState: "State", colProgress: "Progress", steps: "Steps",
    audit: "Audit trail", cardId: "Card id", from: "From", to: "To", limit: "Limit", search: "Search", chainCheck: "Check the hash chain",
    colTime: "Time", colOpName: "Operation", colWho: "Token / operator", colSSN: "ID number", colOutcome: "Outcome",
    chainOK: (n) => `The hash chain holds: ${n} entries.`, chainBad: (s, r) => `The hash chain breaks at entry ${s}: ${r}`,
    chainNA: "This station serves no chain check (GET /v1/audit/verify). On the station PC run: sscard audit verify",
    records: (n) => `${n} records.`,
    refused: "Refused origins and Host headers", refusedIntro: "When a page \"just doesn't work\", look here first: which origins or Host headers the station refused.",
    refresh: "Refresh", refusedNA: "This station does not list refused requests yet (GET /v1/refusals). Look in its log for code ORIGIN_NOT_ALLOWED or HOST_NOT_ALLOWED.",
    refusedNone: "No refused requests.", refusedCount: (n, c) => `${n} kinds of refused request (the last ${c} kinds are kept).`, colCode: "Refused for", colOrigin: "Origin", colHost: "Host", colRequest: "Request", colCount: "Count", colReason: "Why",
    thisBrowser: "This browser", origin: "This page's origin", secure: "Secure context", lna: "Local Network Access permission", language: "Language", station: "Station",
    needToken: "Enter a technician token and sign in.", signedIn: (v) => `Signed in · stationd ${v}`,
    cStation: "Station service", cReady: "Ready", cPCSC: "Smart card service (PC/SC)", cReader: (n) => `Reader ${n}`, cStream: "Event stream", cBrowser: "Browser",
    cCard: "card", notAvailable: "not available", streamOpen: "connected", streamDown: "not connected",
  },
};

const lang = browserLang();
const T = TEXT[lang];
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "sscard.console.token";

let st = null;
let streamState = "closed";
const ops = new Map();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    if (c instanceof Node) { const td = document.createElement("td"); td.append(c); tr.append(td); }
    else if (c && typeof c === "object") tr.append(el("td", c.text, c.cls));
    else tr.append(el("td", c));
  }
  return tr;
}

function applyText() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = "stationd · " + T.title;
  for (const e of document.querySelectorAll("[data-t]")) { const v = T[e.dataset.t]; if (typeof v === "string") e.textContent = v; }
  for (const e of document.querySelectorAll("[data-tp]")) e.placeholder = T[e.dataset.tp];
}

function notice(text, kind) {
  const n = $("notice");
  if (!text) { n.hidden = true; return; }
  n.hidden = false;
  n.className = "banner" + (kind === "info" ? " info" : "");
  n.textContent = text;
}

function errText(e) { return e instanceof StationError ? `${e.message} (${e.code})` : String(e); }

// ---- sign in --------------------------------------------------------------

async function signIn(token) {
  if (st) st.close();
  st = new Station({ baseURL: location.origin, token, lang });
  const p = await st.probe();
  if (p.state !== "ok") { notice(p.message); return false; }
  try {
    await st.readers();
  } catch (e) {
    notice(errText(e));
    if (e.code === "UNAUTHORIZED") { sessionStorage.removeItem(TOKEN_KEY); showLogin(true); }
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  showLogin(false);
  $("who-text").textContent = T.signedIn(p.version);
  notice("");
  st.addEventListener("connection", (e) => {
    streamState = e.detail.state;
    const pill = $("pill-stream");
    pill.dataset.state = streamState === "open" ? "up" : streamState === "connecting" ? "unknown" : "down";
    pill.title = streamState;
    if (e.detail.error) live(`stream ${streamState}: ${e.detail.error.code || ""}`);
  });
  for (const [type, label] of [["cardinserted", "card.inserted"], ["cardremoved", "card.removed"], ["readeradded", "reader.added"], ["readerremoved", "reader.removed"], ["pcscup", "pcsc.up"], ["pcscdown", "pcsc.down"], ["eventslost", "events.lost"]]) {
    st.addEventListener(type, (e) => { live(label, e.detail); refreshReaders(e.detail.reader_id); });
  }
  st.addEventListener("operation", (e) => { live(e.detail.type, e.detail); noteOperation(e.detail); });
  st.connect();
  await refreshReaders();
  return true;
}

function showLogin(show) {
  $("login").hidden = !show;
  $("who").hidden = show;
}

function signOut() {
  if (st) st.close();
  st = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  showLogin(true);
  notice(T.needToken, "info");
}

// ---- readers and cards ----------------------------------------------------

function live(label, d) {
  const parts = [new Date().toLocaleTimeString(), label];
  if (d) for (const k of ["reader_id", "kind", "state", "code", "step", "profile", "atr"]) if (d[k] !== undefined && d[k] !== "") parts.push(`${k}=${d[k]}`);
  const li = el("li", parts.join("  "));
  $("live").prepend(li);
  while ($("live").children.length > 200) $("live").lastChild.remove();
}

async function refreshReaders(fresh) {
  if (!st) return;
  let rs;
  try { rs = await st.readers(); } catch (e) { notice(errText(e)); return; }
  $("pill-pcsc").dataset.state = rs.pcsc_up ? "up" : "down";
  const tb = $("readers");
  tb.replaceChildren();
  const list = rs.readers || [];
  $("readers-empty").hidden = list.length > 0;
  conformReaders(list);
  for (const r of list) {
    const btn = el("button", T.readCard, "secondary");
    btn.disabled = !r.card_present || r.role !== "card";
    btn.addEventListener("click", () => readCard(r.id));
    const name = el("div");
    name.append(el("div", r.id, "mono"), el("div", r.name, "muted"));
    const tr = row([name, r.role, r.card_present ? T.present : T.absent, { text: r.atr || "", cls: "mono" }, r.profile || "", r.pinpad ? T.yes : T.no,
      r.busy ? `${T.busy} · ${r.queue_length}` : String(r.queue_length), btn]);
    tr.dataset.reader = r.id;
    tr.dataset.present = String(r.card_present);
    if (fresh && fresh === r.id) tr.className = "fresh";
    tb.append(tr);
  }
}

const CARD_FIELDS = ["name", "ssn", "card_number", "card_id", "region_code", "issue_date", "expiry_date", "spec_version", "algorithm", "profile", "atr_historical"];
const CARD_LABELS = {
  zh: { name: "姓名", ssn: "社会保障号码", card_number: "社保卡号", card_id: "卡识别码", region_code: "发卡地区", issue_date: "发卡日期", expiry_date: "有效期至", spec_version: "规范版本", algorithm: "算法", profile: "卡型", atr_historical: "ATR 历史字节", cached: "来自缓存" },
  en: { name: "Name", ssn: "ID number", card_number: "Card number", card_id: "Card id", region_code: "Region", issue_date: "Issued", expiry_date: "Expires", spec_version: "Spec version", algorithm: "Algorithm", profile: "Profile", atr_historical: "ATR historical bytes", cached: "From cache" },
};

async function readCard(readerId) {
  $("card-panel").hidden = false;
  $("card-reader").textContent = readerId;
  const dl = $("card-info");
  dl.replaceChildren(el("dd", "…"));
  try {
    const r = await st.read({ readerId });
    dl.replaceChildren();
    const c = r.card || {};
    for (const k of CARD_FIELDS) {
      if (c[k] === undefined || c[k] === "") continue;
      // The console never shows a full ID number, whatever the role.
      const v = k === "ssn" ? maskSSN(c[k]) : c[k];
      const dd = el("dd", v, k === "card_id" || k === "atr_historical" ? "mono" : "");
      dd.dataset.field = k;
      dl.append(el("dt", CARD_LABELS[lang][k]), dd);
    }
    dl.append(el("dt", CARD_LABELS[lang].cached), el("dd", r.cached ? T.yes : T.no));
  } catch (e) {
    dl.replaceChildren(el("dd", errText(e), "bad"));
  }
}

// ---- diagnostics ----------------------------------------------------------

function check(name, ok, detail) {
  const res = ok === true ? { text: T.pass, cls: "ok" } : ok === false ? { text: T.fail, cls: "bad" } : { text: T.info, cls: "muted" };
  const tr = row([name, res, { text: detail || "", cls: "mono" }]);
  tr.dataset.ok = String(ok);
  $("diag").append(tr);
}

async function runDiagnostics() {
  if (!st) { notice(T.needToken, "info"); return; }
  $("run-diag").disabled = true;
  $("diag").replaceChildren();
  $("diag-table").hidden = false;
  try {
    let report = null;
    try {
      report = (await st.request("GET", "/v1/diagnostics")).body;
    } catch (e) {
      if (!(e instanceof StationError) || (e.code !== "NOT_FOUND" && e.code !== "METHOD_NOT_ALLOWED")) throw e;
    }
    $("diag-source").textContent = report ? T.diagFull : T.diagFallback;
    await consoleChecks(!!report);
    if (report) renderReport(report);
  } catch (e) {
    check(T.diagnostics, false, errText(e));
  } finally {
    $("run-diag").disabled = false;
    $("diag-table").dataset.done = "true";
  }
}

// renderReport shows the station's diagnostics report (station/diag's
// Report): its verdict and problems, the PC/SC service, each reader and
// card (profile and why, PIN tries, files, latency, transaction), the keys,
// the journal and the store.
function renderReport(r) {
  check("stationd", !!r.ok, (r.problems || []).join("; "));
  if (r.service) check(T.cPCSC, !!r.service.reachable, r.service.error || `${r.service.readers} readers`);
  for (const rd of r.readers || []) {
    const parts = [rd.role, rd.protocol, rd.max_apdu_data ? `max ${rd.max_apdu_data} B` : "", rd.mute ? "mute" : ""];
    check(T.cReader(rd.name), !rd.error && !rd.mute, [rd.error, ...parts].filter(Boolean).join(" · "));
    const c = rd.card;
    if (!c) continue;
    const id = c.identification || {};
    const files = c.files || [];
    const filesBad = files.filter((f) => f.answers === false);
    const pin = c.pin ? `PIN ${c.pin.blocked ? "blocked" : c.pin.tries_left}` : c.pin_note || "";
    check(`${T.cCard} · ${rd.name}`, !c.identify_error && !c.atr_error,
      [c.atr, id.profile, id.spec_version, id.algorithm, id.reason, c.identify_error, c.atr_error].filter(Boolean).join(" · "));
    if (c.pin || c.pin_note) check(`PIN · ${rd.name}`, c.pin ? !c.pin.blocked : null, pin);
    if (files.length) check(`files · ${rd.name}`, filesBad.length === 0, files.map((f) => `${f.name} ${f.sw}${f.answers === false ? " ✗" : ""}`).join(" · "));
    if (c.latency) {
      const l = c.latency;
      check(`latency · ${rd.name}`, !l.error && l.ok === l.n,
        l.error || `${l.ok}/${l.n} GET CHALLENGE · min ${l.min_ms} ms · median ${l.median_ms} ms · max ${l.max_ms} ms`);
    }
    if (c.transaction) check(`transaction · ${rd.name}`, !!c.transaction.ok, `${c.transaction.ms} ms`);
  }
  if (r.keys) {
    const k = r.keys;
    const bad = (k.keys || []).filter((x) => !x.answers);
    check("keys", k.configured ? bad.length === 0 : null,
      [k.provider, k.test_keys ? "test keys" : "", k.psam_reader, k.note,
        ...new Set((k.keys || []).map((x) => `${x.name}${x.algorithm ? " " + x.algorithm : ""} ${x.answers ? "✓" : "✗ " + (x.error || "")}`))].filter(Boolean).join(" · "));
  }
  for (const [name, h] of [["journal", r.journal], ["store", r.store]]) {
    if (!h || h.state === "not checked") continue;
    check(name, h.state === "ok" && h.audit_chain_ok !== false && !h.damaged,
      [h.state, h.entries !== undefined ? `${h.entries} entries` : "", h.unfinished ? `${h.unfinished} unfinished` : "", h.audit_chain_ok === undefined ? "" : `audit chain ${h.audit_chain_ok ? "ok" : "BROKEN"}`, h.detail].filter(Boolean).join(" · "));
  }
}

async function consoleChecks(haveReport) {
  const p = await st.probe();
  check(T.cStation, p.state === "ok", p.state === "ok" ? `stationd ${p.version} · ${st.baseURL}` : p.message);
  const rd = await st.ready();
  check(T.cReady, !!rd.ready, rd.ready ? "" : errText(new StationError((rd.problem && rd.problem.code) || "NOT_READY", { lang, problem: rd.problem })));
  const rs = await st.readers();
  if (!haveReport) check(T.cPCSC, !!rs.pcsc_up, rs.pcsc_up ? `${(rs.readers || []).length} readers · version ${rs.version}` : "PCSC down");
  if (!haveReport) {
    for (const r of rs.readers || []) {
      const detail = [r.name, r.role, r.card_present ? `${T.cCard}: ${r.atr || ""}` : `${T.cCard}: ${T.absent}`, r.profile, r.pinpad ? "PIN pad" : ""].filter(Boolean).join(" · ");
      const ok = r.role !== "card" || !r.card_present || !!r.profile;
      check(T.cReader(r.id), ok, detail);
    }
  }
  check(T.cStream, streamState === "open", streamState === "open" ? T.streamOpen : `${T.streamDown} (${streamState})`);
  const lna = await localNetworkAccessState();
  check(T.cBrowser, null, `${location.origin} · secure=${window.isSecureContext} · LNA=${lna} · ${navigator.userAgent.match(/Chrom(e|ium)\/[0-9.]+/)?.[0] || navigator.userAgent}`);
}

// conformance runs the read-side conformance kit on the card in the
// chosen reader (POST /v1/readers/{id}/conform, an operation like any card
// route) and shows one verdict per command with the bytes sent, expected
// and got. The write-side checks are command-line only.
async function conformance() {
  if (!st) { notice(T.needToken, "info"); return; }
  const out = $("conform");
  out.className = "muted";
  $("conform-table").hidden = true;
  const readerId = $("conform-reader").value;
  if (!readerId) { out.textContent = T.conformNoCard; return; }
  out.textContent = "…";
  $("run-conform").disabled = true;
  let r;
  try {
    r = await st.operation(`/v1/readers/${encodeURIComponent(readerId)}/conform`, {});
  } catch (e) {
    out.textContent = e.code === "NOT_FOUND" || e.code === "METHOD_NOT_ALLOWED" ? T.conformNA : errText(e);
    return;
  } finally {
    $("run-conform").disabled = false;
  }
  const sum = r.summary || {};
  out.className = r.ok ? "ok" : "bad";
  out.textContent = `${r.profile || ""} · ${r.reader || ""} · pass ${sum.pass ?? "?"} · fail ${sum.fail ?? "?"} · skip ${sum.skip ?? "?"}` +
    ((r.failed || []).length ? ` · ${r.failed.join(", ")}` : "");
  out.dataset.ok = String(!!r.ok);
  const tb = $("conform-rows");
  tb.replaceChildren();
  for (const c of r.checks || []) {
    const tr = row([c.n, c.name, { text: c.command, cls: "mono" }, { text: c.expected, cls: "mono" }, { text: c.got, cls: "mono" },
      { text: c.verdict, cls: c.verdict === "pass" ? "ok" : c.verdict === "fail" ? "bad" : "muted" }]);
    tr.title = c.detail || "";
    tb.append(tr);
  }
  $("conform-table").hidden = false;
}

// conformReaders offers the card readers holding a card.
function conformReaders(list) {
  const sel = $("conform-reader");
  const keep = sel.value;
  sel.replaceChildren();
  for (const r of list) {
    if (r.role !== "card" || !r.card_present) continue;
    const o = el("option", `${r.id} · ${r.profile || r.name}`);
    o.value = r.id;
    sel.append(o);
  }
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

// ---- operations -----------------------------------------------------------

function noteOperation(d) {
  if (!d.operation_id) return;
  const o = ops.get(d.operation_id) || { id: d.operation_id };
  Object.assign(o, { kind: d.kind || o.kind, reader_id: d.reader_id || o.reader_id, state: d.state || (d.type === "operation.progress" ? "running" : o.state), progress: d.progress ?? o.progress });
  ops.set(o.id, o);
  renderOps();
}

function renderOps() {
  const tb = $("ops");
  tb.replaceChildren();
  for (const o of [...ops.values()].reverse()) {
    const a = el("button", o.id, "secondary mono");
    a.addEventListener("click", () => showOperation(o.id));
    tb.append(row([a, o.kind || "", o.reader_id || "", { text: o.state || "", cls: o.state === "done" ? "ok" : o.state === "failed" || o.state === "interrupted" ? "bad" : "" },
      o.progress !== undefined ? `${Math.round(o.progress * 100)}%` : ""]));
  }
}

async function showOperation(id) {
  if (!st || !id) return;
  $("op-detail").hidden = false;
  $("op-steps").replaceChildren();
  $("op-problem").textContent = "";
  try {
    const o = await st.getOperation(id);
    ops.set(o.id, Object.assign(ops.get(o.id) || {}, o));
    renderOps();
    for (const s of o.steps || []) { const li = el("li", `${s.name}`); li.dataset.state = s.state; $("op-steps").append(li); }
    if (!(o.steps || []).length) $("op-steps").append(el("li", `${o.kind} · ${o.state}`));
    if (o.problem) $("op-problem").textContent = errText(new StationError(o.problem.code, { lang, problem: o.problem }));
  } catch (e) {
    $("op-problem").textContent = errText(e);
  }
}

// ---- audit ----------------------------------------------------------------

async function searchAudit() {
  if (!st) { notice(T.needToken, "info"); return; }
  const tb = $("audit");
  tb.replaceChildren();
  try {
    const { records } = await st.audit({ card: $("a-card").value.trim(), from: $("a-from").value, to: $("a-to").value, limit: Number($("a-limit").value) || undefined });
    for (const r of records || []) {
      tb.append(row([r.seq, fmtTime(r.time), r.operation, [r.token_name, r.operator].filter(Boolean).join(" / "),
        r.reader || "", { text: r.card_id || "", cls: "mono" }, maskSSN(r.ssn_masked || ""), { text: r.outcome, cls: r.outcome === "done" ? "ok" : r.outcome === "failed" ? "bad" : "" }, r.sw || ""]));
    }
    $("chain").textContent = T.records((records || []).length);
  } catch (e) {
    $("chain").textContent = errText(e);
  }
}

async function chainCheck() {
  if (!st) { notice(T.needToken, "info"); return; }
  try {
    const r = (await st.request("GET", "/v1/audit/verify")).body;
    $("chain").textContent = r.ok ? T.chainOK(r.entries) : T.chainBad(r.break && r.break.seq, r.break && r.break.reason);
    $("chain").className = r.ok ? "ok" : "bad";
  } catch (e) {
    $("chain").textContent = e.code === "NOT_FOUND" || e.code === "METHOD_NOT_ALLOWED" ? T.chainNA : errText(e);
    $("chain").className = "muted";
  }
}

// ---- refused origins and Host headers --------------------------------------

async function refusals() {
  if (!st) { notice(T.needToken, "info"); return; }
  const tb = $("refused");
  tb.replaceChildren();
  try {
    const r = (await st.request("GET", "/v1/refusals")).body;
    const list = r.refusals || [];
    $("refused-table").hidden = list.length === 0;
    $("refused-state").textContent = list.length ? T.refusedCount(list.length, r.capacity) : T.refusedNone;
    for (const x of list) {
      const tr = row([fmtTime(x.last), { text: x.code === "HOST_NOT_ALLOWED" ? "Host" : "Origin", cls: "bad" }, { text: x.origin || "—", cls: "mono" },
        { text: x.host, cls: "mono" }, { text: `${x.method} ${x.route}`, cls: "mono" }, x.count, x.reason || ""]);
      tr.dataset.code = x.code;
      tb.append(tr);
    }
  } catch (e) {
    $("refused-table").hidden = true;
    $("refused-state").textContent = e.code === "NOT_FOUND" || e.code === "METHOD_NOT_ALLOWED" ? T.refusedNA : errText(e);
  }
}

function fmtTime(t) { return (t || "").replace("T", " ").replace(/\..*$/, "").replace(/Z$/, ""); }

async function browserInfo() {
  const dl = $("browser");
  dl.replaceChildren();
  const lna = await localNetworkAccessState();
  for (const [k, v] of [[T.origin, location.origin], [T.station, location.origin], [T.secure, String(window.isSecureContext)], [T.lna, lna], [T.language, navigator.languages.join(", ")]]) {
    dl.append(el("dt", k), el("dd", v, "mono"));
  }
}

// ---- tabs and start ---------------------------------------------------------

function selectTab(name) {
  for (const b of document.querySelectorAll("[data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== "tab-" + name;
  if (name === "access") { browserInfo(); refusals(); }
}

function init() {
  applyText();
  for (const b of document.querySelectorAll("[data-tab]")) b.addEventListener("click", () => selectTab(b.dataset.tab));
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const tok = $("token").value.trim();
    if (!tok) { notice(T.needToken, "info"); return; }
    if (await signIn(tok)) $("token").value = "";
  });
  $("signout").addEventListener("click", signOut);
  $("run-diag").addEventListener("click", runDiagnostics);
  $("run-conform").addEventListener("click", conformance);
  $("op-form").addEventListener("submit", (ev) => { ev.preventDefault(); showOperation($("op-id").value.trim()); });
  $("audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchAudit(); });
  $("a-chain").addEventListener("click", chainCheck);
  $("run-refused").addEventListener("click", refusals);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved); else { showLogin(true); notice(T.needToken, "info"); }
}

init();
