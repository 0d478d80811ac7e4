package browsertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
)

// The technician opens the console served by stationd, signs in with a
// technician token and sees a virtual card appear live (over the event
// stream, no reload) when it is put into a reader; then runs diagnostics
// and saves a screenshot of the result as a test artifact.
func TestConsoleShowsCardLiveAndRunsDiagnostics(t *testing.T) {
	s := startStation(t, tokenSpec{name: "tech-desk", role: "technician", origins: []string{"SELF"}})
	b := browser(t)
	b.do(t, "open the console",
		chromedp.Navigate(s.base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), s.tokens["tech-desk"]),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
	)
	b.waitJS(t, "event stream open", `document.getElementById("pill-stream").dataset.state === "up"`)
	b.waitJS(t, "readers listed", `document.querySelectorAll("#readers tr").length >= 1`)
	if n := b.text(t, "#readers"); strings.Contains(n, "present") {
		t.Fatalf("a card shows before any was inserted:\n%s", n)
	}
	// The token is kept for this tab only.
	var stored struct{ Session, Local, Cookie string }
	stored.Session = b.eval(t, `sessionStorage.getItem("sscard.console.token") || ""`)
	stored.Local = b.eval(t, `JSON.stringify(localStorage)`)
	stored.Cookie = b.eval(t, `document.cookie`)
	if stored.Session != s.tokens["tech-desk"] || stored.Local != "{}" || stored.Cookie != "" {
		t.Fatalf("token storage: session %t, localStorage %q, cookie %q", stored.Session == s.tokens["tech-desk"], stored.Local, stored.Cookie)
	}

	vc := pcsctest.StartCard(t, newCard(t, "sample-v3"))
	b.waitJS(t, "the card appears live", fmt.Sprintf(`[...document.querySelectorAll("#readers tr[data-present=true]")].some(tr => tr.innerText.includes(%q))`, vc.Reader))
	if live := b.text(t, "#live"); !strings.Contains(live, "card.inserted") {
		t.Fatalf("the live log shows no card.inserted:\n%s", live)
	}
	// Pulled and put back: the console follows both, live.
	vc.Slot.Remove()
	b.waitJS(t, "the card disappears live", `document.querySelectorAll("#readers tr[data-present=true]").length === 0`)
	vc.Slot.Insert()
	b.waitJS(t, "the card is back live", fmt.Sprintf(`[...document.querySelectorAll("#readers tr[data-present=true]")].some(tr => tr.innerText.includes(%q))`, vc.Reader))
	if live := b.text(t, "#live"); !strings.Contains(live, "card.removed") {
		t.Fatalf("the live log shows no card.removed:\n%s", live)
	}

	b.do(t, "run diagnostics",
		chromedp.Click(chromedp.CSS(`[data-tab="diag"]`)),
		chromedp.Click(chromedp.CSS("#run-diag")),
	)
	b.waitJS(t, "diagnostics done", `document.getElementById("diag-table").dataset.done === "true"`)
	diag := b.text(t, "#diag-table")
	if strings.Contains(diag, "Problem") || !strings.Contains(diag, vc.Reader) || !strings.Contains(diag, "connected") ||
		!strings.Contains(diag, "ss-v3-sm4") || !strings.Contains(diag, "GET CHALLENGE") {
		t.Fatalf("diagnostics do not show a healthy station with the card's reader:\n%s", diag)
	}
	// Conformance: the read-side checks on the card, one verdict each.
	b.do(t, "conformance", chromedp.Click(chromedp.CSS("#run-conform")))
	b.waitJS(t, "conformance answered", `!["", "…"].includes(document.getElementById("conform").textContent)`)
	if ok := b.eval(t, `document.getElementById("conform").dataset.ok || ""`); ok != "true" {
		t.Fatalf("conformance on the sample card: %q\n%s", b.text(t, "#conform"), b.text(t, "#conform-table"))
	}
	if n := b.eval(t, `String(document.querySelectorAll("#conform-rows tr").length)`); n == "0" {
		t.Fatal("conformance shows no checks")
	}
	b.screenshot(t, "console-diagnostics.png")
	// Everything the console loaded came from the station itself.
	if other := b.eval(t, `performance.getEntriesByType("resource").map(e => e.name).filter(u => !u.startsWith(location.origin + "/")).join(" ")`); other != "" {
		t.Fatalf("the console loaded from elsewhere: %s", other)
	}
	b.do(t, "back to readers", chromedp.Click(chromedp.CSS(`[data-tab="readers"]`)))
	b.screenshot(t, "console-readers.png")
}

// Card info in the console never shows the full ID number, even to a role
// the API shows it to (admin).
func TestConsoleMasksIDNumber(t *testing.T) {
	s := startStation(t, tokenSpec{name: "admin-desk", role: "admin", origins: []string{"SELF"}})
	sim := newCard(t, "sample-v3")
	ssn := sim.Image().Holder.SSN
	vc := pcsctest.StartCard(t, sim)
	b := browser(t)
	b.do(t, "sign in",
		chromedp.Navigate(s.base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), s.tokens["admin-desk"]),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
	)
	b.waitJS(t, "card listed", fmt.Sprintf(`[...document.querySelectorAll("#readers tr[data-present=true]")].some(tr => tr.innerText.includes(%q))`, vc.Reader))
	b.do(t, "read the card", chromedp.Click(chromedp.CSS(`#readers tr[data-present=true] button`)))
	b.waitJS(t, "card info shown", `!!document.querySelector('#card-info dd[data-field="ssn"]')`)
	shown := b.text(t, `#card-info dd[data-field="ssn"]`)
	if shown == ssn || !strings.HasPrefix(shown, ssn[:4]) || !strings.Contains(shown, "*") {
		t.Fatalf("the console shows the ID number as %q", shown)
	}
	if html := b.eval(t, `document.documentElement.outerHTML`); strings.Contains(html, ssn) {
		t.Fatal("the full ID number is in the console's DOM")
	}
	b.screenshot(t, "console-card.png")

	// The read shows up as an operation (from the event stream) with its
	// state, and in the audit trail with the ID number masked.
	b.do(t, "operations", chromedp.Click(chromedp.CSS(`[data-tab="ops"]`)))
	b.waitJS(t, "the read is listed", `[...document.querySelectorAll("#ops tr")].some(tr => tr.innerText.includes("read") && tr.innerText.includes("done"))`)
	b.do(t, "operation detail", chromedp.Click(chromedp.CSS(`#ops tr button`)))
	b.waitJS(t, "operation detail shown", `document.querySelectorAll("#op-steps li").length > 0`)
	b.screenshot(t, "console-operations.png")
	b.do(t, "audit search",
		chromedp.Click(chromedp.CSS(`[data-tab="audit"]`)),
		chromedp.Click(chromedp.CSS(`#audit-form button[type="submit"]`)),
	)
	b.waitJS(t, "audit rows", `[...document.querySelectorAll("#audit tr")].some(tr => tr.innerText.includes("read"))`)
	b.do(t, "chain check", chromedp.Click(chromedp.CSS("#a-chain")))
	b.waitJS(t, "the hash chain holds", `document.getElementById("chain").textContent.includes("The hash chain holds")`)
	if html := b.eval(t, `document.documentElement.outerHTML`); strings.Contains(html, ssn) {
		t.Fatal("the full ID number is in the console's DOM")
	}
	b.screenshot(t, "console-audit.png")
	b.do(t, "refusals", chromedp.Click(chromedp.CSS(`[data-tab="access"]`)))
	b.waitJS(t, "refusals answered", `document.getElementById("refused-state").textContent !== ""`)
	b.screenshot(t, "console-access.png")
	s.noSecretsInLog(t, ssn)
}

// A counter page served from a second loopback origin on the counter
// token's allow-list reads a delivered card and activates it with the
// holder's PIN entered twice, end to end through stationd; a bank token
// then changes the PIN from the same page.
func TestCounterPageActivatesCard(t *testing.T) {
	page := pageServer(t, "127.0.0.2")
	s := startStation(t,
		tokenSpec{name: "counter-1", role: "counter", origins: []string{page}},
		tokenSpec{name: "bank-1", role: "bank", origins: []string{page}})
	sim := newCard(t, "delivered-v2")
	pcsctest.StartCard(t, sim)
	b := browser(t)
	u := page + "/examples/counter/?lang=en&station=" + url.QueryEscape(s.base)
	b.do(t, "open the counter page",
		chromedp.Navigate(u),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), s.tokens["counter-1"]),
		chromedp.Click(chromedp.CSS("#connect")),
	)
	b.waitJS(t, "probe ok", `document.getElementById("status").dataset.state === "ok"`)

	b.do(t, "read", chromedp.Click(chromedp.CSS("#read")))
	b.waitJS(t, "read done", `document.getElementById("result").dataset.code === "OK"`)
	if name := b.text(t, `#card-info dd[data-field="name"]`); name == "" {
		t.Fatalf("no holder name shown:\n%s", b.text(t, "#card-info"))
	}

	// Two different entries never reach the station.
	before := sim.APDUCount()
	b.do(t, "activate with PINs that differ",
		chromedp.SendKeys(chromedp.CSS("#act-pin"), "582064"),
		chromedp.SendKeys(chromedp.CSS("#act-pin2"), "582065"),
		chromedp.Click(chromedp.CSS("#activate")),
	)
	b.waitJS(t, "mismatch reported", `document.getElementById("result").dataset.code === "PIN_MISMATCH"`)
	if sim.APDUCount() != before {
		t.Fatal("a mismatched PIN entry reached the card")
	}

	b.do(t, "activate",
		chromedp.SendKeys(chromedp.CSS("#act-pin"), "582064"),
		chromedp.SendKeys(chromedp.CSS("#act-pin2"), "582064"),
		chromedp.Click(chromedp.CSS("#activate")),
	)
	b.waitJS(t, "activated", `document.getElementById("result").dataset.code === "OK"`)
	if sim.State() != ssse.StateActive || sim.PIN() != "582064" {
		t.Fatalf("the activation did not reach the card: state %s", sim.State())
	}
	if got := b.text(t, "#result"); !strings.Contains(got, "activated") {
		t.Fatalf("result text %q", got)
	}
	if v := b.eval(t, `document.getElementById("act-pin").value + document.getElementById("act-pin2").value`); v != "" {
		t.Fatal("the PIN fields still hold the PIN after the activation")
	}
	b.screenshot(t, "counter-activated.png")

	// The counter role may not change a PIN: the page says so in words.
	b.do(t, "change PIN as counter",
		chromedp.SendKeys(chromedp.CSS("#chg-old"), "582064"),
		chromedp.SendKeys(chromedp.CSS("#chg-new"), "135790"),
		chromedp.SendKeys(chromedp.CSS("#chg-new2"), "135790"),
		chromedp.Click(chromedp.CSS("#change")),
	)
	b.waitJS(t, "role refused", `document.getElementById("result").dataset.code === "ROLE_NOT_ALLOWED"`)

	b.do(t, "switch to the bank token and change the PIN",
		chromedp.SetValue(chromedp.CSS("#token"), s.tokens["bank-1"]),
		chromedp.Click(chromedp.CSS("#connect")),
	)
	b.waitJS(t, "probe ok", `document.getElementById("status").dataset.state === "ok"`)
	b.do(t, "change PIN",
		chromedp.SendKeys(chromedp.CSS("#chg-old"), "582064"),
		chromedp.SendKeys(chromedp.CSS("#chg-new"), "135790"),
		chromedp.SendKeys(chromedp.CSS("#chg-new2"), "135790"),
		chromedp.Click(chromedp.CSS("#change")),
	)
	b.waitJS(t, "changed", `document.getElementById("result").dataset.code === "OK"`)
	if sim.PIN() != "135790" {
		t.Fatal("the PIN change did not reach the card")
	}
	// The SDK saw the card over the event stream from this origin.
	if ev := b.text(t, "#events"); !strings.Contains(ev, "stream open") {
		t.Fatalf("the page's event stream never opened:\n%s", ev)
	}
	s.noSecretsInLog(t, "582064", "582065", "135790", sim.Image().Holder.SSN)
}

// The same page from an origin NOT on any token's allow-list: the SDK's
// probe reports "origin not allowed", the browser refuses the card call
// (no CORS headers on the 403), the SDK reports that as
// ORIGIN_NOT_ALLOWED, and no command reaches the card.
func TestCounterPageFromOtherOriginIsRefused(t *testing.T) {
	allowed := pageServer(t, "127.0.0.2")
	other := pageServer(t, "127.0.0.3")
	s := startStation(t, tokenSpec{name: "counter-1", role: "counter", origins: []string{allowed}},
		tokenSpec{name: "tech-desk", role: "technician", origins: []string{"SELF"}})
	sim := newCard(t, "delivered-v2")
	pcsctest.StartCard(t, sim)
	b := browser(t)
	b.do(t, "open the counter page from another origin",
		chromedp.Navigate(other+"/examples/counter/?lang=en&station="+url.QueryEscape(s.base)),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), s.tokens["counter-1"]),
		chromedp.Click(chromedp.CSS("#connect")),
	)
	b.waitJS(t, "probe refused", `document.getElementById("status").dataset.state === "origin_not_allowed"`)
	if msg := b.text(t, "#status"); !strings.Contains(msg, "origin is not allowed") {
		t.Fatalf("status says %q", msg)
	}
	before := sim.APDUCount()
	b.do(t, "try to read", chromedp.Click(chromedp.CSS("#read")))
	b.waitJS(t, "read refused", `document.getElementById("result").dataset.code === "ORIGIN_NOT_ALLOWED"`)
	if sim.APDUCount() != before {
		t.Fatal("a request from a refused origin reached the card")
	}
	// The browser itself refused the answer (CORS), and the station
	// answered the request 403 ORIGIN_NOT_ALLOWED.
	b.waitConsole(t, "blocked by CORS policy")
	if !strings.Contains(s.logs(), `"status":403`) {
		t.Fatalf("stationd logged no 403 for the refused origin:\n%s", s.logs())
	}
	b.screenshot(t, "counter-refused.png")

	// A page reaching the station by a name it does not answer to (DNS
	// rebinding) is refused too.
	req, _ := http.NewRequest("GET", s.base+"/v1/health", nil)
	req.Host = fmt.Sprintf("rebound.example:%d", s.port)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Host: %v %v", err, res)
	} else {
		res.Body.Close()
	}
	// The technician sees both refusals in the console.
	b.do(t, "console: refusals",
		chromedp.Navigate(s.base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), s.tokens["tech-desk"]),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#who")),
		chromedp.Click(chromedp.CSS(`[data-tab="access"]`)),
	)
	b.waitJS(t, "refused origin listed", fmt.Sprintf(`[...document.querySelectorAll("#refused tr[data-code=ORIGIN_NOT_ALLOWED]")].some(tr => tr.innerText.includes(%q))`, other))
	b.waitJS(t, "refused Host listed", `[...document.querySelectorAll("#refused tr[data-code=HOST_NOT_ALLOWED]")].some(tr => tr.innerText.includes("rebound.example"))`)
	if txt := b.text(t, "#refused"); strings.Contains(txt, s.tokens["counter-1"]) {
		t.Fatal("the refusals show a token")
	}
	b.screenshot(t, "console-refusals.png")

	// The default language is Chinese.
	b.do(t, "open the page in Chinese", chromedp.Navigate(other+"/examples/counter/?lang=zh&station="+url.QueryEscape(s.base)))
	b.waitJS(t, "probe refused", `document.getElementById("status").dataset.state === "origin_not_allowed"`)
	if msg := b.text(t, "#status"); !strings.Contains(msg, "来源未被社保卡服务授权") {
		t.Fatalf("status in Chinese says %q", msg)
	}
}

// The SDK keeps ONE event stream and resumes it: after the stream breaks
// it takes a new single-use ticket and resumes with last_event_id, so an
// event published while it was down (a card put into the other reader)
// still arrives, once.
func TestSDKResumesEventStream(t *testing.T) {
	page := pageServer(t, "127.0.0.2")
	s := startStation(t, tokenSpec{name: "counter-1", role: "counter", origins: []string{page}},
		tokenSpec{name: "tech", role: "technician"})
	b := browser(t)
	b.do(t, "open a page of the allowed origin", chromedp.Navigate(page+"/examples/counter/?lang=en&station="+url.QueryEscape(s.base)))
	b.waitJS(t, "page probed", `document.getElementById("status").dataset.state === "ok"`)
	b.evalAsync(t, fmt.Sprintf(`import("/sdk/sscard.js").then((m) => {
		const st = new m.Station({ baseURL: %q, token: %q, lang: "en" });
		window.__st = st; window.__events = []; window.__states = [];
		st.addEventListener("cardinserted", (e) => window.__events.push(e.detail.reader_id));
		st.addEventListener("connection", (e) => window.__states.push(e.detail.state));
		st.connect();
		return "";
	})`, s.base, s.tokens["counter-1"]))
	b.waitJS(t, "stream open", `window.__states.includes("open")`)

	pcsctest.StartCard(t, newCard(t, "sample-v3"))
	b.waitJS(t, "first insertion seen", `window.__events.length === 1`)
	// The stream breaks (as on a network error): no events reach the page
	// while a second card goes in.
	b.eval(t, `window.__st._es.close(), ""`)
	vc := pcsctest.StartCard(t, newCard(t, "delivered-v2"))
	s.waitCardPresent(t, "tech", vc.Reader) // published before the resume
	b.eval(t, `window.__st._es.onerror(new Event("error")), ""`)
	b.waitJS(t, "second insertion replayed after the resume", `window.__events.length === 2`)
	ev := b.eval(t, `JSON.stringify({events: window.__events, states: window.__states, last: window.__st.lastEventId})`)
	if strings.Count(ev, `"open"`) != 2 {
		t.Fatalf("the stream was not reopened exactly once: %s", ev)
	}
	b.eval(t, `window.__st.close(), ""`)
	if n := strings.Count(s.logs(), `"method":"POST","route":"/v1/event-tickets"`); n != 2 {
		t.Fatalf("%d event tickets taken, want 2 (one per stream)", n)
	}
}

// A counter page served over plain HTTP from a non-loopback address of
// this machine is stopped by Chromium's Local Network Access rules before
// any request reaches the station (an insecure page may not reach the
// more-private loopback space): the SDK tells that apart from "no
// service" and "origin not allowed", from the permission state.
func TestCounterPageBlockedByLocalNetworkAccess(t *testing.T) {
	host := nonLoopbackIPv4(t)
	page := pageServer(t, host)
	// Even with the page's origin on the allow-list, the browser stops it.
	s := startStation(t, tokenSpec{name: "counter-1", role: "counter", origins: []string{page}})
	b := browser(t)
	b.do(t, "open the counter page from "+host, chromedp.Navigate(page+"/examples/counter/?lang=en&station="+url.QueryEscape(s.base)))
	b.waitJS(t, "probe blocked by LNA", `document.getElementById("status").dataset.state === "lna_blocked"`)
	if msg := b.text(t, "#status"); !strings.Contains(msg, "HTTPS") {
		t.Fatalf("status says %q", msg)
	}
	b.waitConsole(t, "more-private address space")
	if strings.Contains(s.logs(), `"route":"/v1/health"`) {
		t.Fatal("the health probe reached the station: the browser did not block it")
	}
	b.screenshot(t, "counter-lna-blocked.png")
}

// With nothing listening at the station's address, the SDK says "no
// service" (not an origin or browser problem).
func TestCounterPageNoService(t *testing.T) {
	page := pageServer(t, "127.0.0.2")
	nobody := fmt.Sprintf("http://127.0.0.1:%d", freePort(t, "127.0.0.1"))
	b := browser(t)
	b.do(t, "open the counter page", chromedp.Navigate(page+"/examples/counter/?lang=en&station="+url.QueryEscape(nobody)))
	b.waitJS(t, "probe: no service", `document.getElementById("status").dataset.state === "no_service"`)
	if msg := b.text(t, "#status"); !strings.Contains(msg, "not answering") {
		t.Fatalf("status says %q", msg)
	}
}

// The console speaks the browser's language: Chinese in a Chinese browser.
func TestConsoleSpeaksChinese(t *testing.T) {
	page := pageServer(t, "127.0.0.2")
	b := browserIn(t, "zh-CN")
	b.do(t, "open the console", chromedp.Navigate(page+"/console/"), chromedp.WaitVisible(chromedp.CSS("#notice")))
	if got := b.text(t, "#notice"); got != "请输入技术员令牌后登录。" {
		t.Fatalf("notice %q", got)
	}
	if got := b.text(t, "nav"); !strings.Contains(got, "读卡器与卡") || !strings.Contains(got, "诊断") {
		t.Fatalf("tabs %q", got)
	}
	b.screenshot(t, "console-zh.png")
}

// A write whose answer is lost on the way back (the browser's fetch fails
// after the station did the work) is retried by the SDK with the SAME
// Idempotency-Key, and the station answers from its record
// (Idempotent-Replayed: true) instead of touching the card again.
func TestSDKRetriesWriteWithSameKey(t *testing.T) {
	page := pageServer(t, "127.0.0.2")
	s := startStation(t, tokenSpec{name: "counter-1", role: "counter", origins: []string{page}})
	sim := newCard(t, "delivered-v2")
	pcsctest.StartCard(t, sim)
	b := browser(t)
	b.do(t, "open a page of the allowed origin", chromedp.Navigate(page+"/examples/counter/?lang=en&station="+url.QueryEscape(s.base)))
	b.waitJS(t, "page probed", `document.getElementById("status").dataset.state === "ok"`)
	got := b.evalAsync(t, fmt.Sprintf(`import("/sdk/sscard.js").then(async (m) => {
		const keys = [], replayed = [];
		let lost = false;
		// A fetch that loses the first activation's answer after the station sent it.
		const lossy = async (u, init) => {
			const res = await fetch(u, init);
			if (init.method === "POST" && u.endsWith("/v1/card/activate")) {
				keys.push(init.headers["Idempotency-Key"]);
				replayed.push(res.headers.get("Idempotent-Replayed") || "");
				if (!lost) { lost = true; throw new TypeError("Failed to fetch"); }
			}
			return res;
		};
		const st = new m.Station({ baseURL: %q, token: %q, lang: "en", fetchImpl: lossy });
		await st.probe();
		const r = await st.activate({ pin: "582064", pinConfirm: "582064" });
		return JSON.stringify({ keys, replayed, ok: !!r });
	})`, s.base, s.tokens["counter-1"]))
	var res struct {
		Keys     []string `json:"keys"`
		Replayed []string `json:"replayed"`
		OK       bool     `json:"ok"`
	}
	if err := json.Unmarshal([]byte(got), &res); err != nil {
		t.Fatal(err)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if !res.OK || len(res.Keys) != 2 || res.Keys[0] != res.Keys[1] || !uuid.MatchString(res.Keys[0]) {
		t.Fatalf("the retry did not reuse a fresh UUID key: %s", got)
	}
	if res.Replayed[0] != "" || res.Replayed[1] != "true" {
		t.Fatalf("the retry was not answered from the station's record: %s", got)
	}
	if sim.PIN() != "582064" {
		t.Fatal("the activation did not reach the card")
	}
	s.noSecretsInLog(t, "582064")
}
