// sscard.js — the browser client of stationd, the social security card
// station on this PC. An ES module: no build step, no dependencies.
//
//   import { Station } from "./sscard.js";
//   const st = new Station({ token: "sst_…" });
//   const p = await st.probe();          // {state: "ok" | "no_service" | "origin_not_allowed" | "lna_blocked" | "lna_prompt", …}
//   st.addEventListener("cardinserted", (e) => console.log(e.detail));
//   st.connect();                        // ONE event stream, resumed with Last-Event-ID
//   const info = await st.read();        // typed calls; errors are StationError with .code and a message in zh/en
//
// Why it is built this way:
// - GET /v1/health answers every origin with {ok, version, origin_allowed}:
//   that tells "no service" (the fetch fails) from "origin not allowed"
//   (it answers false). A fetch that fails may also be Chrome's Local
//   Network Access refusing loopback; the permission API (where the browser
//   has it) tells that apart.
// - EventSource cannot send Authorization, so the stream is opened with a
//   single-use ticket (POST /v1/event-tickets). EventSource's own reconnect
//   would replay the used ticket, so on any error this client closes the
//   stream and opens a new one with a fresh ticket and last_event_id.
// - Every card-changing call carries an Idempotency-Key; a retry after a
//   network failure reuses it, so a card is never touched twice.

export const DEFAULT_BASE_URL = "http://127.0.0.1:18420";

// Messages per problem code (docs/api.md has the table), Chinese first.
const MESSAGES = {
  zh: {
    NO_SERVICE: "未检测到本机社保卡服务 (stationd)。请确认服务已启动。",
    ORIGIN_NOT_ALLOWED: "本页面的来源未被社保卡服务授权。请联系管理员把此网址加入令牌的来源白名单。",
    LNA_BLOCKED: "浏览器的本地网络访问 (Local Network Access) 阻止了本页面连接本机服务。请在网站设置中允许“本地网络访问”，或由管理员配置策略。",
    LNA_INSECURE: "本页面不是 HTTPS 安全页面，浏览器的本地网络访问 (Local Network Access) 规则禁止它连接本机服务。请通过 HTTPS 打开柜台页面。",
    LNA_PROMPT: "浏览器正在询问是否允许本页面访问本地网络，请点击“允许”。",
    NETWORK: "与社保卡服务的连接中断，请重试。",
    TIMEOUT: "社保卡服务未在规定时间内应答。",
    CARD_ABSENT: "读卡器中没有卡，请插入社保卡。",
    CARD_REMOVED: "操作过程中卡被拔出，请重新插卡后再试。",
    CARD_UNKNOWN: "无法识别此卡，不是本站支持的社保卡。",
    CARD_NOT_GENUINE: "卡片真伪校验未通过。",
    CARD_BLOCKED: "此卡的应用已被锁定（挂失）。",
    CARD_EXPIRED: "此卡已过有效期。",
    OTHER_CARD: "读卡器中的卡不是开始操作时的那张卡。",
    PIN_ALREADY_SET: "此卡已启用（密码已设置）。",
    PIN_INCORRECT: "密码错误。",
    PIN_BLOCKED: "密码已锁定，请到银行网点解锁。",
    PIN_POLICY: "新密码不符合规则（长度、数字或两次输入不一致）。",
    PIN_FORMAT: "密码格式不正确，应为 4 到 12 位数字。",
    PIN_MISMATCH: "两次输入的密码不一致。",
    PINPAD_NOT_AVAILABLE: "此读卡器没有密码键盘。",
    PINPAD_ENTRY_FAILED: "密码键盘输入未完成（超时、取消或两次输入不一致），未消耗尝试次数，请重试。",
    INVALID_DATA: "持卡人或卡片数据无效。",
    CARD_REFUSED: "卡片拒绝了此命令。",
    NO_KEY_PROVIDER: "未配置发卡密钥（PSAM 卡），无法执行此操作。",
    KEY_PROVIDER_FAILED: "密钥设备（PSAM 卡）出错。",
    READER_NOT_FOUND: "找不到该读卡器。",
    READER_BUSY: "读卡器正忙，请稍后再试。",
    AMBIGUOUS_READER: "有多个读卡器插着卡，请指定读卡器。",
    PCSC_UNAVAILABLE: "智能卡服务 (PC/SC) 不可用，请检查读卡器驱动。",
    INTERRUPTED: "操作在写卡时中断，请重新插卡后继续。",
    CANCELLED: "操作已取消。",
    CANCEL_REFUSED: "正在写卡，现在不能取消。",
    SHUTTING_DOWN: "社保卡服务正在关闭。",
    AUDIT_UNAVAILABLE: "审计日志无法写入，暂停所有卡操作。",
    NOT_READY: "社保卡服务尚未就绪。",
    NOT_FOUND: "找不到请求的资源。",
    UNAUTHORIZED: "令牌无效或缺失。",
    TICKET_INVALID: "事件票据无效或已过期。",
    ROLE_NOT_ALLOWED: "此令牌的角色无权执行该操作。",
    HOST_NOT_ALLOWED: "请求的主机名不是本机服务。",
    INVALID_JSON: "请求格式不正确。",
    INVALID_REQUEST: "请求无效。",
    BODY_TOO_LARGE: "请求内容过大。",
    UNSUPPORTED_MEDIA_TYPE: "请求内容类型不正确。",
    METHOD_NOT_ALLOWED: "不支持此请求方法。",
    IDEMPOTENCY_KEY_MISSING: "缺少幂等键 (Idempotency-Key)。",
    IDEMPOTENCY_KEY_IN_USE: "同一请求仍在处理中。",
    IDEMPOTENCY_KEY_REUSED: "幂等键已被另一个请求使用。",
    INTERNAL: "社保卡服务内部错误，请查看服务日志。",
    UNKNOWN: "发生未知错误。",
    triesLeft: (n) => `剩余 ${n} 次尝试。`,
  },
  en: {
    NO_SERVICE: "The card station service (stationd) is not answering on this PC. Check that it is running.",
    ORIGIN_NOT_ALLOWED: "This page's origin is not allowed by the card station. Ask the administrator to add it to the token's origin list.",
    LNA_BLOCKED: "The browser's Local Network Access rules block this page from reaching the station on this PC. Allow \"Local network access\" in the site settings, or have the administrator set the policy.",
    LNA_INSECURE: "This page is not served over HTTPS, so the browser's Local Network Access rules forbid it to reach the station on this PC. Open the counter page over HTTPS.",
    LNA_PROMPT: "The browser is asking whether this page may reach the local network: click Allow.",
    NETWORK: "The connection to the card station failed. Try again.",
    TIMEOUT: "The card station did not answer in time.",
    CARD_ABSENT: "No card in the reader. Insert the card.",
    CARD_REMOVED: "The card was removed during the operation. Insert it and try again.",
    CARD_UNKNOWN: "This card is not a social security card this station knows.",
    CARD_NOT_GENUINE: "The card failed the genuineness check.",
    CARD_BLOCKED: "The card's application is blocked (reported lost).",
    CARD_EXPIRED: "The card has expired.",
    OTHER_CARD: "Another card is in the reader than the one the operation began on.",
    PIN_ALREADY_SET: "The card is already activated (its PIN is set).",
    PIN_INCORRECT: "The PIN is incorrect.",
    PIN_BLOCKED: "The PIN is blocked: the holder must have it unblocked at a bank.",
    PIN_POLICY: "The new PIN does not meet the rules (length, digits, or the two entries differ).",
    PIN_FORMAT: "A PIN must be 4 to 12 digits.",
    PIN_MISMATCH: "The two PIN entries differ.",
    PINPAD_NOT_AVAILABLE: "This reader has no PIN pad.",
    PINPAD_ENTRY_FAILED: "The PIN pad entry did not complete (timed out, cancelled or the entries differ); no try was spent. Try again.",
    INVALID_DATA: "The holder or card data is not valid.",
    CARD_REFUSED: "The card refused the command.",
    NO_KEY_PROVIDER: "No issuer keys (PSAM) are configured for this operation.",
    KEY_PROVIDER_FAILED: "The key device (PSAM) failed.",
    READER_NOT_FOUND: "No such reader.",
    READER_BUSY: "The reader is busy. Try again shortly.",
    AMBIGUOUS_READER: "Several readers hold a card: choose one.",
    PCSC_UNAVAILABLE: "The smart card service (PC/SC) is not available. Check the reader driver.",
    INTERRUPTED: "The operation was interrupted while writing the card. Insert the card again to resume.",
    CANCELLED: "The operation was cancelled.",
    CANCEL_REFUSED: "A card write is in flight: it cannot be cancelled now.",
    SHUTTING_DOWN: "The card station is shutting down.",
    AUDIT_UNAVAILABLE: "The audit trail cannot be written, so no card operation may start.",
    NOT_READY: "The card station is not ready yet.",
    NOT_FOUND: "Not found.",
    UNAUTHORIZED: "The token is missing or not valid.",
    TICKET_INVALID: "The event ticket is unknown, used or expired.",
    ROLE_NOT_ALLOWED: "This token's role may not do that.",
    HOST_NOT_ALLOWED: "The request's Host does not name this station.",
    INVALID_JSON: "The request is malformed.",
    INVALID_REQUEST: "The request is not valid.",
    BODY_TOO_LARGE: "The request is too large.",
    UNSUPPORTED_MEDIA_TYPE: "The request's content type is wrong.",
    METHOD_NOT_ALLOWED: "This method is not allowed here.",
    IDEMPOTENCY_KEY_MISSING: "The Idempotency-Key header is missing.",
    IDEMPOTENCY_KEY_IN_USE: "The same request is still being processed.",
    IDEMPOTENCY_KEY_REUSED: "This Idempotency-Key was used for another request.",
    INTERNAL: "The card station failed internally; see its log.",
    UNKNOWN: "An unknown error occurred.",
    triesLeft: (n) => `${n} tries left.`,
  },
};

/** The language of the browser, "zh" unless it prefers English. */
export function browserLang() {
  const langs = (typeof navigator !== "undefined" && (navigator.languages || [navigator.language])) || [];
  for (const l of langs) {
    if (!l) continue;
    const s = String(l).toLowerCase();
    if (s.startsWith("zh")) return "zh";
    if (s.startsWith("en")) return "en";
  }
  return "zh";
}

/** The message for a problem code (and tries left) in lang ("zh" default, or "en"). */
export function messageFor(code, lang = "zh", triesLeft) {
  const m = MESSAGES[lang] || MESSAGES.zh;
  let s = m[code] || m.UNKNOWN;
  if (typeof triesLeft === "number") s += " " + m.triesLeft(triesLeft);
  return s;
}

/** StationError is every failure the client reports: .code is the stable code. */
export class StationError extends Error {
  constructor(code, { lang = "zh", status = 0, problem = null, cause } = {}) {
    const tries = problem && typeof problem.tries_left === "number" ? problem.tries_left : undefined;
    super(messageFor(code, lang, tries));
    this.name = "StationError";
    this.code = code;
    this.status = status;
    this.problem = problem; // the problem+json body, when there was one
    this.triesLeft = tries;
    this.legacyCode = problem ? problem.legacy_code : undefined;
    this.retryable = problem ? !!problem.retryable : code === "NETWORK" || code === "TIMEOUT";
    if (cause) this.cause = cause;
  }
}

/** A fresh idempotency key (crypto.randomUUID, or the same from getRandomValues). */
export function newIdempotencyKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const PIN_RE = /^[0-9]{4,12}$/;

/** Local Network Access permission state: "granted" | "denied" | "prompt" | "unsupported". */
export async function localNetworkAccessState() {
  if (typeof navigator === "undefined" || !navigator.permissions || !navigator.permissions.query) return "unsupported";
  // Chrome 142 names it "local-network-access"; later versions split it
  // into "loopback-network" and "local-network".
  for (const name of ["local-network-access", "loopback-network"]) {
    try {
      const st = await navigator.permissions.query({ name });
      return st.state;
    } catch (_) {
      // not a permission this browser knows
    }
  }
  return "unsupported";
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/**
 * Station is one station (stationd) at baseURL, called with one token.
 * Events (EventTarget): "cardinserted", "cardremoved", "readeradded",
 * "readerremoved", "operation" (progress/completed/failed), "pcscup",
 * "pcscdown", "eventslost" (re-read the state you show), "connection"
 * (detail.state: "connecting" | "open" | "closed" | "error", detail.error).
 */
export class Station extends EventTarget {
  constructor({ baseURL = DEFAULT_BASE_URL, token = "", lang = browserLang(), operatorId = "", probeTimeoutMs = 2500, waitSeconds = 30, fetchImpl } = {}) {
    super();
    this.baseURL = String(baseURL).replace(/\/+$/, "");
    this.token = token;
    this.lang = lang === "en" ? "en" : "zh";
    this.operatorId = operatorId;
    this.probeTimeoutMs = probeTimeoutMs;
    this.waitSeconds = waitSeconds;
    this.lastEventId = null;
    this.lastProbe = null;
    this._fetch = fetchImpl || globalThis.fetch.bind(globalThis);
    this._es = null;
    this._stop = null;
    this._backoff = 500;
  }

  /** messageFor in this station's language. */
  message(code, triesLeft) { return messageFor(code, this.lang, triesLeft); }

  /**
   * Probe GET /v1/health with a short timeout. Answers
   * {state, ok, version, message, lna}: state is "ok", "no_service",
   * "origin_not_allowed", "lna_blocked" or "lna_prompt".
   */
  async probe() {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.probeTimeoutMs);
    let res, body, failure;
    try {
      res = await this._fetch(this.baseURL + "/v1/health", { method: "GET", mode: "cors", credentials: "omit", cache: "no-store", signal: ctl.signal });
      body = await res.json();
    } catch (e) {
      failure = ctl.signal.aborted ? "TIMEOUT" : "NETWORK";
    } finally {
      clearTimeout(timer);
    }
    let out;
    if (!failure && res.ok && body && typeof body.origin_allowed === "boolean") {
      // A same-origin GET carries no Origin header, so the station cannot
      // judge it: a page the station serves itself (the console) is ours.
      const sameOrigin = typeof location !== "undefined" && new URL(this.baseURL).origin === location.origin;
      out = body.origin_allowed || sameOrigin
        ? { state: "ok", ok: !!body.ok, version: body.version }
        : { state: "origin_not_allowed", ok: !!body.ok, version: body.version, code: "ORIGIN_NOT_ALLOWED" };
    } else if (!failure) {
      out = { state: "no_service", code: "NO_SERVICE", status: res ? res.status : 0 };
    } else {
      // The fetch failed: nothing listens, or the browser stopped it.
      const lna = await localNetworkAccessState();
      const insecure = typeof window !== "undefined" && window.isSecureContext === false;
      if (lna === "denied") out = { state: "lna_blocked", code: insecure ? "LNA_INSECURE" : "LNA_BLOCKED", lna, insecure };
      else if (lna === "prompt" && failure === "TIMEOUT") out = { state: "lna_prompt", code: "LNA_PROMPT", lna };
      else out = { state: "no_service", code: "NO_SERVICE", lna, timeout: failure === "TIMEOUT" };
    }
    if (out.code) out.message = this.message(out.code);
    else out.message = "";
    this.lastProbe = out;
    return out;
  }

  _headers(extra) {
    const h = { Accept: "application/json, application/problem+json" };
    if (this.token) h.Authorization = "Bearer " + this.token;
    if (this.operatorId) h["X-Operator-Id"] = this.operatorId;
    return Object.assign(h, extra || {});
  }

  // A fetch that failed without an answer: across origins a 403 without
  // CORS headers looks exactly like this, so the last probe decides
  // whether to call it "origin not allowed".
  _networkError(e) {
    if (e instanceof StationError) return e;
    if (this.lastProbe && this.lastProbe.state !== "ok" && this.lastProbe.code) {
      return new StationError(this.lastProbe.code, { lang: this.lang, cause: e });
    }
    return new StationError("NETWORK", { lang: this.lang, cause: e });
  }

  async _problem(res) {
    let p = null;
    try { p = await res.json(); } catch (_) { /* not JSON */ }
    const code = p && p.code ? p.code : res.status === 404 ? "NOT_FOUND" : "UNKNOWN";
    return new StationError(code, { lang: this.lang, status: res.status, problem: p });
  }

  /** request sends one request; JSON in, JSON out, problems thrown. */
  async request(method, path, { body, headers, signal, retries = 0 } = {}) {
    const init = { method, mode: "cors", credentials: "omit", cache: "no-store", headers: this._headers(headers), signal };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await this._fetch(this.baseURL + path, init);
      } catch (e) {
        if (signal && signal.aborted) throw e;
        // Safe to repeat: a write carries the same Idempotency-Key.
        if (attempt < retries) { await sleep(300 * (attempt + 1)); continue; }
        throw this._networkError(e);
      }
      const ct = res.headers.get("Content-Type") || "";
      if (!res.ok) throw await this._problem(res);
      if (ct.includes("json")) return { status: res.status, headers: res.headers, body: await res.json() };
      return { status: res.status, headers: res.headers, body: await res.text() };
    }
  }

  /** operation runs a card operation: POST, then long-poll until it ends. Returns its result. */
  async operation(path, body = {}, { write = false, signal, onProgress } = {}) {
    const headers = { Prefer: `wait=${this.waitSeconds}` };
    if (write) headers["Idempotency-Key"] = newIdempotencyKey();
    let r = await this.request("POST", path, { body, headers, signal, retries: write ? 2 : 1 });
    let op = r.body;
    while (op && !["done", "failed", "interrupted", "cancelled"].includes(op.state)) {
      if (onProgress) onProgress(op);
      const got = await this.request("GET", `/v1/operations/${encodeURIComponent(op.id)}?wait=${this.waitSeconds}`, { signal, retries: 3 });
      op = got.body;
    }
    if (onProgress) onProgress(op);
    if (op.state !== "done") {
      const p = op.problem || { code: op.state === "cancelled" ? "CANCELLED" : "INTERRUPTED" };
      const err = new StationError(p.code || "UNKNOWN", { lang: this.lang, problem: p });
      err.operation = op;
      throw err;
    }
    return op.result;
  }

  _pin(...pins) {
    for (const p of pins) {
      if (p !== undefined && !PIN_RE.test(String(p))) throw new StationError("PIN_FORMAT", { lang: this.lang });
    }
  }

  _readerBody(o) { return o && o.readerId ? { reader_id: o.readerId } : {}; }

  // ---- typed calls -------------------------------------------------------

  /** Read the card: {card:{…}, ireadcardbas, cached, ssn_masked}. */
  read({ readerId, full = false, signal } = {}) {
    const b = this._readerBody({ readerId });
    if (full) b.full = true;
    return this.operation("/v1/card/read", b, { signal });
  }
  /** Is the card genuine: {genuine, expiry_date, expired, checked_on}. */
  verifyCard({ readerId, signal } = {}) { return this.operation("/v1/card/verify", this._readerBody({ readerId }), { signal }); }
  /** Activate a delivered card with the holder's new PIN, entered twice. */
  activate({ pin, pinConfirm, readerId, pinEntry = "host", signal } = {}) {
    const b = this._readerBody({ readerId });
    if (pinEntry === "pinpad") b.pin_entry = "pinpad";
    else {
      this._pin(pin, pinConfirm);
      if (pin !== pinConfirm) throw new StationError("PIN_MISMATCH", { lang: this.lang });
      b.pin = pin; b.pin_confirm = pinConfirm;
    }
    return this.operation("/v1/card/activate", b, { write: true, signal });
  }
  /** PIN tries left: {tries_left, blocked}. */
  pinTries({ readerId, signal } = {}) { return this.operation("/v1/card/pin/tries", this._readerBody({ readerId }), { signal }); }
  /** Verify the PIN (a wrong one costs a try; retried safely). */
  verifyPIN({ pin, readerId, pinEntry = "host", signal } = {}) {
    const b = this._readerBody({ readerId });
    if (pinEntry === "pinpad") b.pin_entry = "pinpad"; else { this._pin(pin); b.pin = pin; }
    return this.operation("/v1/card/pin/verify", b, { write: true, signal });
  }
  /** Change the PIN: old, new, new again. */
  changePIN({ oldPin, newPin, newPinConfirm, readerId, pinEntry = "host", signal } = {}) {
    const b = this._readerBody({ readerId });
    if (pinEntry === "pinpad") b.pin_entry = "pinpad";
    else {
      this._pin(oldPin, newPin, newPinConfirm);
      if (newPin !== newPinConfirm) throw new StationError("PIN_MISMATCH", { lang: this.lang });
      b.old_pin = oldPin; b.new_pin = newPin; b.new_pin_confirm = newPinConfirm;
    }
    return this.operation("/v1/card/pin/change", b, { write: true, signal });
  }
  /** Set a new PIN for a holder who forgot it. */
  reloadPIN({ newPin, newPinConfirm, readerId, pinEntry = "host", signal } = {}) {
    const b = this._readerBody({ readerId });
    if (pinEntry === "pinpad") b.pin_entry = "pinpad";
    else {
      this._pin(newPin, newPinConfirm);
      if (newPin !== newPinConfirm) throw new StationError("PIN_MISMATCH", { lang: this.lang });
      b.new_pin = newPin; b.new_pin_confirm = newPinConfirm;
    }
    return this.operation("/v1/card/pin/reload", b, { write: true, signal });
  }
  /** Reset the PIN try counter. */
  unblockPIN({ readerId, signal } = {}) { return this.operation("/v1/card/pin/unblock", this._readerBody({ readerId }), { write: true, signal }); }
  /** Block a card reported lost: kind "temporary" (default), "permanent" or "card". */
  block({ kind = "temporary", readerId, signal } = {}) {
    const b = this._readerBody({ readerId });
    b.block_kind = kind;
    return this.operation("/v1/card/block", b, { write: true, signal });
  }
  /** Unblock the card's application (admin). */
  unblock({ readerId, signal } = {}) { return this.operation("/v1/card/unblock", this._readerBody({ readerId }), { write: true, signal }); }
  /** Raw APDUs (technician; PIN-bearing ones are refused). */
  apdu(readerId, apdus, { signal } = {}) {
    return this.operation(`/v1/readers/${encodeURIComponent(readerId)}/apdu`, { apdus }, { write: true, signal });
  }
  /** The readers: {version, pcsc_up, readers:[…]} (technician). */
  async readers({ signal } = {}) { return (await this.request("GET", "/v1/readers", { signal, retries: 1 })).body; }
  async reader(id, { signal } = {}) { return (await this.request("GET", `/v1/readers/${encodeURIComponent(id)}`, { signal, retries: 1 })).body; }
  async getOperation(id, { wait = 0, signal } = {}) {
    return (await this.request("GET", `/v1/operations/${encodeURIComponent(id)}${wait ? "?wait=" + wait : ""}`, { signal, retries: 1 })).body;
  }
  async cancelOperation(id) { return (await this.request("DELETE", `/v1/operations/${encodeURIComponent(id)}`)).body; }
  async ready() {
    try { return (await this.request("GET", "/v1/ready")).body; } catch (e) { if (e.status === 503) return { ready: false, problem: e.problem }; throw e; }
  }
  /** The audit trail (admin): filter {card, from, to, limit}. */
  async audit({ card, from, to, limit, signal } = {}) {
    const q = new URLSearchParams();
    if (card) q.set("card", card);
    if (from) q.set("from", from);
    if (to) q.set("to", to);
    if (limit) q.set("limit", String(limit));
    const qs = q.toString();
    return (await this.request("GET", "/v1/audit" + (qs ? "?" + qs : ""), { signal })).body;
  }

  // ---- the event stream --------------------------------------------------

  /** Open the one event stream (again safe to call: a second call does nothing). */
  connect() {
    if (this._stop) return;
    const ctl = new AbortController();
    this._stop = ctl;
    this._open(ctl.signal);
  }

  /** Close the event stream for good. */
  close() {
    if (this._stop) this._stop.abort();
    this._stop = null;
    if (this._es) this._es.close();
    this._es = null;
    this._emit("connection", { state: "closed" });
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  async _open(signal) {
    while (!signal.aborted) {
      this._emit("connection", { state: "connecting" });
      let ticket;
      try {
        ticket = (await this.request("POST", "/v1/event-tickets", { body: {}, signal })).body;
      } catch (e) {
        if (signal.aborted) return;
        this._emit("connection", { state: "error", error: e });
        if (e instanceof StationError && ["UNAUTHORIZED", "ROLE_NOT_ALLOWED", "ORIGIN_NOT_ALLOWED"].includes(e.code)) {
          this._stop = null; // no point in retrying with this token
          return;
        }
        await sleep(this._nextBackoff(), signal);
        continue;
      }
      const url = new URL(ticket.url, this.baseURL + "/");
      if (this.lastEventId !== null) url.searchParams.set("last_event_id", this.lastEventId);
      const ended = await this._stream(url.toString(), signal);
      if (signal.aborted) return;
      if (ended) this._emit("connection", { state: "error", error: new StationError("NETWORK", { lang: this.lang }) });
      await sleep(this._nextBackoff(), signal);
    }
  }

  _nextBackoff() {
    const b = this._backoff;
    this._backoff = Math.min(this._backoff * 2, 15000);
    return b;
  }

  // _stream runs one EventSource until it errs; it resolves true then.
  _stream(url, signal) {
    return new Promise((resolve) => {
      const es = new EventSource(url);
      this._es = es;
      const finish = () => { es.close(); if (this._es === es) this._es = null; resolve(true); };
      signal.addEventListener("abort", () => { es.close(); resolve(false); }, { once: true });
      es.onopen = () => { this._backoff = 500; this._emit("connection", { state: "open" }); };
      // The ticket is spent: EventSource's own reconnect would replay it,
      // so every error ends this stream and _open fetches a new ticket.
      es.onerror = finish;
      const on = (type, name) => es.addEventListener(type, (ev) => {
        if (ev.lastEventId) this.lastEventId = ev.lastEventId;
        let data = {};
        try { data = JSON.parse(ev.data); } catch (_) { /* keep {} */ }
        this._emit(name, Object.assign({ type }, data));
      });
      on("card.inserted", "cardinserted");
      on("card.removed", "cardremoved");
      on("reader.added", "readeradded");
      on("reader.removed", "readerremoved");
      on("operation.progress", "operation");
      on("operation.completed", "operation");
      on("operation.failed", "operation");
      on("pcsc.up", "pcscup");
      on("pcsc.down", "pcscdown");
      on("events.lost", "eventslost");
    });
  }
}

/** Mask an ID number as the station does: first 4 and last 2 characters kept. */
export function maskSSN(s) {
  if (!s) return "";
  s = String(s);
  if (s.includes("*") || s.length <= 6) return s.includes("*") ? s : "*".repeat(s.length);
  return s.slice(0, 4) + "*".repeat(s.length - 6) + s.slice(-2);
}
