// The example counter page: read a card, activate a delivered card with
// the holder's PIN entered twice, change a PIN. Everything it does with
// the station goes through the SDK (/sdk/sscard.js); copy that file next
// to your page in production so that "no service" can still be reported.
import { Station, StationError, browserLang, DEFAULT_BASE_URL } from "/sdk/sscard.js";

const TEXT = {
  zh: {
    title: "社保卡柜台示例", settings: "连接设置", station: "服务地址", token: "柜台令牌", operator: "操作员工号",
    connect: "连接", card: "卡片", noCard: "插入社保卡后点击“读卡”。", cardIn: "读卡器中有卡", cardOut: "卡已拔出", read: "读卡",
    activate: "启用新卡（设置密码）", newPin: "新密码", newPinAgain: "再次输入新密码", doActivate: "启用",
    change: "修改密码", oldPin: "原密码", doChange: "修改", events: "事件", probing: "正在检测本机社保卡服务…",
    ready: "已连接社保卡服务", working: "正在处理，请勿拔卡…", activated: "新卡已启用，密码已设置。", changed: "密码已修改。",
    readDone: "读卡成功。", needToken: "请先输入柜台令牌。", other: "English",
    f: { name: "姓名", ssn: "社会保障号码", card_number: "社保卡号", card_id: "卡识别码", region_code: "发卡地区", issue_date: "发卡日期", expiry_date: "有效期至", spec_version: "规范版本", profile: "卡型" },
  },
  en: {
    title: "Social security card — counter example", settings: "Connection", station: "Station URL", token: "Counter token", operator: "Operator id",
    connect: "Connect", card: "Card", noCard: "Insert the card, then press Read card.", cardIn: "A card is in the reader", cardOut: "The card was removed", read: "Read card",
    activate: "Activate a new card (set its PIN)", newPin: "New PIN", newPinAgain: "New PIN again", doActivate: "Activate",
    change: "Change PIN", oldPin: "Current PIN", doChange: "Change", events: "Events", probing: "Looking for the card station on this PC…",
    ready: "Connected to the card station", working: "Working — do not remove the card…", activated: "The card is activated and its PIN is set.", changed: "The PIN was changed.",
    readDone: "Card read.", needToken: "Enter the counter token first.", other: "中文",
    f: { name: "Name", ssn: "ID number", card_number: "Card number", card_id: "Card id", region_code: "Region", issue_date: "Issued", expiry_date: "Expires", spec_version: "Spec version", profile: "Card type" },
  },
};

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let lang = params.get("lang") === "en" || params.get("lang") === "zh" ? params.get("lang") : browserLang();
let station = null;

function t(k) { return TEXT[lang][k]; }

function applyText() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  $("lang").textContent = t("other");
  if (station) station.lang = lang;
}

function banner(el, kind, text) {
  el.hidden = false;
  el.className = "banner banner-" + kind;
  el.textContent = text;
}

function status(kind, text, state) {
  banner($("status"), kind, text);
  $("status").dataset.state = state || "";
}

function result(kind, text, code) {
  banner($("result"), kind, text);
  $("result").dataset.code = code || "";
}

function logEvent(text) {
  const li = document.createElement("li");
  li.textContent = new Date().toLocaleTimeString() + "  " + text;
  $("events").prepend(li);
}

async function connect() {
  const token = $("token").value.trim();
  const baseURL = $("station").value.trim() || DEFAULT_BASE_URL;
  sessionStorage.setItem("sscard.example.station", baseURL);
  if (token) sessionStorage.setItem("sscard.example.token", token);
  sessionStorage.setItem("sscard.example.operator", $("operator").value.trim());
  if (station) station.close();
  station = new Station({ baseURL, token, lang, operatorId: $("operator").value.trim() });
  station.addEventListener("cardinserted", (e) => { $("card-state").textContent = t("cardIn"); logEvent("card.inserted " + (e.detail.reader_id || "")); });
  station.addEventListener("cardremoved", (e) => { $("card-state").textContent = t("cardOut"); $("card-info").hidden = true; logEvent("card.removed " + (e.detail.reader_id || "")); });
  station.addEventListener("connection", (e) => logEvent("stream " + e.detail.state + (e.detail.error ? " " + e.detail.error.code : "")));
  status("wait", t("probing"), "probing");
  const p = await station.probe();
  if (p.state !== "ok") {
    status("bad", p.message, p.state);
    return;
  }
  status("ok", t("ready") + " (stationd " + p.version + ")", "ok");
  if (!token) { result("bad", t("needToken"), "UNAUTHORIZED"); return; }
  station.connect();
}

// run wraps one call: buttons off, a "working" note, the answer or the
// error's message in the page's language.
async function run(btn, fn, okText) {
  if (!station) await connect();
  const buttons = document.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  result("wait", t("working"), "");
  try {
    const r = await fn();
    result("ok", typeof okText === "function" ? okText(r) : okText, "OK");
    return r;
  } catch (e) {
    const code = e instanceof StationError ? e.code : "UNKNOWN";
    result("bad", e instanceof StationError ? e.message : String(e), code);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function showCard(r) {
  const dl = $("card-info");
  dl.replaceChildren();
  const c = (r && r.card) || {};
  for (const k of Object.keys(TEXT.zh.f)) {
    if (c[k] === undefined || c[k] === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = t("f")[k];
    const dd = document.createElement("dd");
    dd.textContent = c[k];
    dd.dataset.field = k;
    dl.append(dt, dd);
  }
  dl.hidden = false;
  $("card-state").textContent = t("cardIn");
  return t("readDone");
}

function clear(...ids) { for (const id of ids) $(id).value = ""; }

function init() {
  $("station").value = params.get("station") || sessionStorage.getItem("sscard.example.station") || DEFAULT_BASE_URL;
  $("token").value = sessionStorage.getItem("sscard.example.token") || "";
  $("operator").value = sessionStorage.getItem("sscard.example.operator") || "";
  applyText();
  $("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; applyText(); });
  $("settings-form").addEventListener("submit", (ev) => { ev.preventDefault(); connect(); });
  $("read").addEventListener("click", () => run($("read"), () => station.read(), showCard));
  $("activate-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const pin = $("act-pin").value, pin2 = $("act-pin2").value;
    clear("act-pin", "act-pin2"); // a PIN stays on screen no longer than needed
    run($("activate"), () => station.activate({ pin, pinConfirm: pin2 }), t("activated"));
  });
  $("change-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const o = $("chg-old").value, n = $("chg-new").value, n2 = $("chg-new2").value;
    clear("chg-old", "chg-new", "chg-new2");
    run($("change"), () => station.changePIN({ oldPin: o, newPin: n, newPinConfirm: n2 }), t("changed"));
  });
  connect();
}

init();
