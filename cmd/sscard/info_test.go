package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc/pcsctest"
)

// infoEnv is the environment of a station with the test keys (provider
// "test"), or with no key provider when keyed is false.
func infoEnv(t *testing.T, keyed bool) []string {
	t.Helper()
	body := `{"terminal_no": "410100813475", "device_no": "D1"}`
	if keyed {
		body = `{"terminal_no": "410100813475", "device_no": "D1", "keys": {"provider": "test"}}`
	}
	p := filepath.Join(t.TempDir(), "station.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "SSSTATION_CONFIG="+p)
}

type infoOut struct {
	Card           map[string]any `json:"card"`
	Identification map[string]any `json:"identification"`
	IReadCardBas   string         `json:"ireadcardbas"`
	Code           int            `json:"code"`
	State          string         `json:"state"`
	GenuineChecked bool           `json:"genuine_checked"`
	Error          string         `json:"error"`
}

func runInfoJSON(t *testing.T, env []string, args ...string) (infoOut, result) {
	t.Helper()
	r := runSSCard(t, env, append([]string{"info", "--json"}, args...)...)
	var out infoOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("exit %d: %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	return out, r
}

// Issue 7's "done when", through the real binary and pcscd: a T=0 card
// whose ATR matches no profile, whose name is padded with spaces and whose
// EF06 records are numbered 1..6 is identified and read byte-exact, and the
// unknown ATR is shown, not refused.
func TestInfoReadsRealT0CardWithUnknownATR(t *testing.T) {
	vc := pcsctest.StartCard(t, ssseCard(t, "real-v1-t0"))
	img, _ := ssse.Builtin("real-v1-t0")
	atr := fmt.Sprintf("%X", vc.Slot.Card().ATR())
	env := infoEnv(t, true)
	want := "639900|" + img.Holder.SSN + "|A39990007|639900D1560000050A1B2C3D4E5F6071|王五|" + atr[8:] + "|1.00|20190601|20290601|410100813475|D1|"

	out, r := runInfoJSON(t, env, "--reader", vc.Reader, "--full")
	if r.code != 0 || out.Code != 0 || out.IReadCardBas != want || out.State != "active" || !out.GenuineChecked {
		t.Fatalf("exit %d, code %d, state %s, genuine %v\n%s\nwant\n%s\n%s", r.code, out.Code, out.State, out.GenuineChecked, out.IReadCardBas, want, r.stderr)
	}
	id := out.Identification
	if id["atr"] != atr || id["atr_known"] != false || id["profile"] != "ss-v1-3des" || id["algorithm"] != "3DES" ||
		!strings.Contains(fmt.Sprint(id["reason"]), "spec version 1.00") {
		t.Fatalf("identification %v", id)
	}
	holder, _ := out.Card["holder"].(map[string]any)
	if out.Card["name"] != "王五" || holder["birth_date"] != "19750505" || holder["gender"] != "1" {
		t.Fatalf("card %v", out.Card)
	}

	r = runSSCard(t, env, "info", "--reader", vc.Reader, "--ireadcardbas")
	if r.code != 0 || r.stdout != want+"\n" {
		t.Fatalf("--ireadcardbas: exit %d\n%q\nwant\n%q\n%s", r.code, r.stdout, want+"\n", r.stderr)
	}
	r = runSSCard(t, env, "info", "--reader", vc.Reader)
	for _, s := range []string{"ATR            " + atr + " (matches no profile)", "Name           王五\n", "State          active", "Genuine        yes"} {
		if r.code != 0 || !strings.Contains(r.stdout, s) {
			t.Fatalf("human: exit %d, %q missing in\n%s%s", r.code, s, r.stdout, r.stderr)
		}
	}
}

// With no key provider the card is read and the output says plainly that
// nothing proved it genuine.
func TestInfoWithoutKeysSaysGenuineNotChecked(t *testing.T) {
	vc := pcsctest.StartCard(t, ssseCard(t, "sample-v2"))
	env := infoEnv(t, false)
	out, r := runInfoJSON(t, env, "--reader", vc.Reader)
	if r.code != 0 || out.GenuineChecked || out.Code != 0 || out.Card["card_number"] != "S44030012" {
		t.Fatalf("exit %d %+v", r.code, out)
	}
	r = runSSCard(t, env, "info", "--reader", vc.Reader)
	if r.code != 0 || !strings.Contains(r.stdout, "NOT CHECKED") {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
}

// A blocked card says so (issue 8 §7) and iReadCardBas gives its code
// (issue 7 §5): 9303 is −37635, 6283 is −25219, no card is −2.
func TestInfoStatesAndCodes(t *testing.T) {
	env := infoEnv(t, true)
	t.Run("permanent", func(t *testing.T) {
		vc := pcsctest.StartCard(t, ssseCard(t, "locked-v2"))
		out, r := runInfoJSON(t, env, "--reader", vc.Reader)
		if r.code != 1 || out.Code != -37635 || out.State != "app_blocked_permanent" || out.IReadCardBas != "" {
			t.Fatalf("exit %d %+v", r.code, out)
		}
		r = runSSCard(t, env, "info", "--reader", vc.Reader, "--ireadcardbas")
		if r.code != 1 || r.stdout != "code -37635 (state app_blocked_permanent)\n" {
			t.Fatalf("exit %d %q", r.code, r.stdout)
		}
		r = runSSCard(t, env, "verify-card", "--reader", vc.Reader)
		if r.code != 1 || !strings.Contains(r.stdout, "app_blocked_permanent") {
			t.Fatalf("verify-card: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("temporary", func(t *testing.T) {
		img, _ := ssse.Builtin("sample-v2")
		img.State = ssse.StateBlockedTemporary
		c, err := ssse.New(img, nil)
		if err != nil {
			t.Fatal(err)
		}
		vc := pcsctest.StartCard(t, c)
		out, r := runInfoJSON(t, env, "--reader", vc.Reader)
		if r.code != 1 || out.Code != -25219 || out.State != "app_blocked_temporary" || out.Card["card_number"] != "S44030012" {
			t.Fatalf("exit %d %+v", r.code, out)
		}
		r = runSSCard(t, env, "info", "--reader", vc.Reader)
		if r.code != 1 || !strings.Contains(r.stdout, "app_blocked_temporary: the application is BLOCKED") {
			t.Fatalf("human: exit %d %q", r.code, r.stdout)
		}
		r = runSSCard(t, env, "verify-card", "--reader", vc.Reader, "--json")
		var v map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["state"] != "app_blocked_temporary" || v["genuine"] != true {
			t.Fatalf("verify-card: exit %d %v %s", r.code, err, r.stdout)
		}
	})
	t.Run("no card", func(t *testing.T) {
		vc := pcsctest.StartCard(t, ssseCard(t, "sample-v1"))
		vc.Slot.Remove()
		if err := vc.WaitPresence(false, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		out, r := runInfoJSON(t, env, "--reader", vc.Reader)
		if r.code != 1 || out.Code != -2 {
			t.Fatalf("exit %d %+v", r.code, out)
		}
	})
}

// Card data printed to a terminal has its control characters escaped
// (issue 8 §9): a name holding an escape sequence cannot recolour or move
// anything.
func TestInfoEscapesCardData(t *testing.T) {
	img, _ := ssse.Builtin("sample-v1")
	img.Holder.Name = "张\x1b[31m三"
	c, err := ssse.New(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	vc := pcsctest.StartCard(t, c)
	env := infoEnv(t, true)
	for _, args := range [][]string{{"info"}, {"info", "--ireadcardbas"}} {
		r := runSSCard(t, env, append(args, "--reader", vc.Reader)...)
		if strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, `张\x1b[31m三`) {
			t.Fatalf("%v: exit %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
}
