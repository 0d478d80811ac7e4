package atr

import (
	"fmt"
	"strings"
)

// String describes the ATR byte by byte for a technician (sscard atr HEX).
// It works on any *ATR, including one returned alongside ErrBadTCK or
// ErrTrailing and one assembled by hand, so it re-derives everything from
// the fields and never indexes without checking.
func (a *ATR) String() string {
	if a == nil {
		return "<nil ATR>"
	}
	var sb strings.Builder
	line := func(label string, v byte, format string, args ...any) {
		fmt.Fprintf(&sb, "  %-4s %02X  %s\n", label, v, fmt.Sprintf(format, args...))
	}

	fmt.Fprintf(&sb, "ATR: %s (%d bytes)\n", a.Raw, len(a.Raw))

	switch a.Convention {
	case ConventionDirect:
		line("TS", a.TS, "direct convention")
	case ConventionInverse:
		line("TS", a.TS, "inverse convention")
	default:
		line("TS", a.TS, "invalid initial character")
	}
	line("T0", a.T0, "%s; K=%d historical bytes", follows(a.T0>>4, 1), a.T0&0x0F)

	for _, g := range a.Interface {
		i := g.Index
		if g.HasTA {
			line(fmt.Sprintf("TA%d", i), g.TA, "%s", a.describeTA(i, g.TA))
		}
		if g.HasTB {
			line(fmt.Sprintf("TB%d", i), g.TB, "%s", a.describeTB(i, g.TB))
		}
		if g.HasTC {
			line(fmt.Sprintf("TC%d", i), g.TC, "%s", a.describeTC(i, g.TC))
		}
		if g.HasTD {
			t := g.TD & 0x0F
			s := fmt.Sprintf("%s; T=%d", follows(g.TD>>4, i+1), t)
			switch {
			case i == 1 && t == 15:
				s += " (invalid: TD1 must not indicate T=15)"
			case t == 15:
				s += " (global interface bytes follow)"
			case t >= 2 && t <= 14:
				s += " (RFU protocol type)"
			}
			line(fmt.Sprintf("TD%d", i), g.TD, "%s", s)
		}
	}

	a.describeHistorical(&sb)

	switch {
	case a.TCK == nil && a.TCKValid:
		sb.WriteString("  TCK  --  absent (only T=0 offered, so none is sent)\n")
	case a.TCK == nil:
		sb.WriteString("  TCK  --  MISSING (required when a protocol other than T=0 is offered)\n")
	case a.TCKValid:
		line("TCK", *a.TCK, "valid (T0..TCK XOR to 00)")
	default:
		if n := len(a.Raw); n >= 3 {
			line("TCK", *a.TCK, "INVALID: expected %02X", xor(a.Raw[1:n-1]))
		} else {
			line("TCK", *a.TCK, "INVALID")
		}
	}

	ps := make([]string, len(a.Protocols))
	for i, p := range a.Protocols {
		ps[i] = p.String()
	}
	fmt.Fprintf(&sb, "Protocols: %s\n", strings.Join(ps, ", "))

	src := "TA1"
	if g := a.group(1); g == nil || !g.HasTA {
		src = "defaults, no TA1"
	}
	if a.Fi > 0 && a.Di > 0 {
		// 3.5712 MHz is the classic reader clock at which Fi/Di=372/1 gives
		// exactly 9600 bit/s; quoting it lets technicians compare with reader
		// logs without doing arithmetic.
		fmt.Fprintf(&sb, "Rate (%s): Fi/Di = %d/%d = %.4g clocks per etu; %.0f bit/s at 3.5712 MHz, %.0f bit/s at f(max) %g MHz\n",
			src, a.Fi, a.Di, float64(a.Fi)/float64(a.Di),
			3.5712e6*float64(a.Di)/float64(a.Fi),
			a.FMaxMHz*1e6*float64(a.Di)/float64(a.Fi), a.FMaxMHz)
	} else {
		fmt.Fprintf(&sb, "Rate (%s): Fi/Di uses an RFU code (Fi=%s, Di=%s)\n", src, orRFU(a.Fi), orRFU(a.Di))
	}
	if sm := a.SpecificMode; sm != nil {
		change := "cannot change to negotiable mode"
		if sm.CanChange {
			change = "may switch to negotiable mode after a warm reset"
		}
		fd := "Fi/Di from TA1"
		if sm.ImplicitFD {
			fd = "implicit Fi/Di (TA1 does not apply)"
		}
		fmt.Fprintf(&sb, "Mode: specific, %s only; %s; %s\n", sm.Protocol, fd, change)
	} else {
		sb.WriteString("Mode: negotiable (no TA2; PPS possible)\n")
	}
	if a.N == 255 {
		sb.WriteString("Guard time: N=255, minimum (12 etu for T=0, 11 etu for T=1)\n")
	} else {
		fmt.Fprintf(&sb, "Guard time: N=%d extra etu\n", a.N)
	}
	if p := a.T1; p != nil {
		edc := "LRC"
		if p.CRC {
			edc = "CRC"
		}
		fmt.Fprintf(&sb, "T=1: IFSC=%d, BWI=%d, CWI=%d, EDC=%s\n", p.IFSC, p.BWI, p.CWI, edc)
	}
	return strings.TrimRight(sb.String(), "\n")
}

// follows names the interface bytes whose presence bits are set in y (the
// high nibble of T0 or a TD byte) for group i.
func follows(y byte, i int) string {
	var names []string
	for bit, n := range [4]string{"TA", "TB", "TC", "TD"} {
		if y&(1<<bit) != 0 {
			names = append(names, fmt.Sprintf("%s%d", n, i))
		}
	}
	if len(names) == 0 {
		return "no further interface bytes"
	}
	if len(names) == 1 {
		return names[0] + " follows"
	}
	return strings.Join(names, " ") + " follow"
}

func orRFU(v int) string {
	if v == 0 {
		return "RFU"
	}
	return fmt.Sprint(v)
}

func (a *ATR) describeTA(i int, v byte) string {
	switch i {
	case 1:
		fi, di := v>>4, v&0x0F
		fmax := "RFU"
		if f := fMaxTable[fi]; f > 0 {
			fmax = fmt.Sprintf("%g MHz", f)
		}
		return fmt.Sprintf("FI=%X DI=%X: Fi=%s, f(max)=%s, Di=%s", fi, di, orRFU(fiTable[fi]), fmax, orRFU(diTable[di]))
	case 2:
		s := fmt.Sprintf("specific mode, T=%d", v&0x0F)
		if v&0x80 != 0 {
			s += ", unable to change mode"
		} else {
			s += ", can change mode"
		}
		if v&0x10 != 0 {
			s += ", implicit Fi/Di"
		} else {
			s += ", Fi/Di from TA1"
		}
		if v&0x60 != 0 {
			s += " (RFU bits 7-6 set)"
		}
		return s
	}
	t, ok := a.groupProtocol(i)
	if !ok {
		return "no protocol context"
	}
	first, isFirst := a.isFirst(t, 0, i)
	switch {
	case t == 1 && isFirst:
		s := fmt.Sprintf("T=1 IFSC=%d bytes", v)
		if v == 0x00 || v == 0xFF {
			s += " (invalid: must be 1..254)"
		}
		return s
	case t == 15 && isFirst:
		return describeT15TA(v)
	case !isFirst:
		return fmt.Sprintf("T=%d specific, repeated (only TA%d is defined)", t, first)
	}
	return fmt.Sprintf("T=%d specific", t)
}

func (a *ATR) describeTB(i int, v byte) string {
	switch i {
	case 1:
		if v == 0 {
			return "VPP not connected (TB1 is deprecated and ignored)"
		}
		return "VPP programming parameters (TB1 is deprecated and ignored)"
	case 2:
		return "VPP PI2 (TB2 is deprecated and ignored)"
	}
	t, ok := a.groupProtocol(i)
	if !ok {
		return "no protocol context"
	}
	first, isFirst := a.isFirst(t, 1, i)
	switch {
	case t == 1 && isFirst:
		s := fmt.Sprintf("T=1 BWI=%d, CWI=%d", v>>4, v&0x0F)
		if v>>4 > 9 {
			s += " (BWI>9 is RFU)"
		}
		return s
	case t == 15 && isFirst:
		switch {
		case v == 0:
			return "SPU: contact C6 not used"
		case v&0x80 != 0:
			return "SPU: contact C6 for proprietary use"
		}
		return fmt.Sprintf("SPU: contact C6 standard use (%02X)", v&0x7F)
	case !isFirst:
		return fmt.Sprintf("T=%d specific, repeated (only TB%d is defined)", t, first)
	}
	return fmt.Sprintf("T=%d specific", t)
}

func (a *ATR) describeTC(i int, v byte) string {
	switch i {
	case 1:
		if v == 255 {
			return "N=255: minimum guard time"
		}
		return fmt.Sprintf("extra guard time N=%d etu", v)
	case 2:
		s := fmt.Sprintf("T=0 WI=%d (WT = 960 x WI x Fi/f)", v)
		if v == 0 {
			s += " (00 is RFU)"
		}
		return s
	}
	t, ok := a.groupProtocol(i)
	if !ok {
		return "no protocol context"
	}
	first, isFirst := a.isFirst(t, 2, i)
	switch {
	case t == 1 && isFirst:
		if v&0x01 != 0 {
			return "T=1 error detection: CRC"
		}
		return "T=1 error detection: LRC"
	case !isFirst:
		return fmt.Sprintf("T=%d specific, repeated (only TC%d is defined)", t, first)
	}
	return fmt.Sprintf("T=%d specific", t)
}

// isFirst reports whether group i holds the first TA/TB/TC specific to t,
// and which group holds it.
func (a *ATR) isFirst(t Protocol, which, i int) (int, bool) {
	_, first, ok := a.firstSpecific(t, which)
	return first, ok && first == i
}

func describeT15TA(v byte) string {
	clock := [4]string{"clock stop not supported", "clock stop in state L", "clock stop in state H", "clock stop, no preference"}[v>>6]
	var classes []string
	for bit, c := range [3]string{"A (5 V)", "B (3 V)", "C (1.8 V)"} {
		if v&(1<<bit) != 0 {
			classes = append(classes, c)
		}
	}
	cls := "no class indicated"
	if len(classes) > 0 {
		cls = "classes " + strings.Join(classes, ", ")
	}
	if v&0x38 != 0 {
		cls += " (RFU class bits set)"
	}
	return clock + "; " + cls
}

// compactTLVNames are the ISO/IEC 7816-4 tags that may appear in historical
// bytes; naming them lets a technician spot e.g. the status word at a glance.
var compactTLVNames = map[byte]string{
	0x1: "country code",
	0x2: "issuer identification",
	0x3: "card service data",
	0x4: "initial access data",
	0x5: "card issuer's data",
	0x6: "pre-issuing data",
	0x7: "card capabilities",
	0x8: "status indicator",
	0xF: "application identifier",
}

func (a *ATR) describeHistorical(sb *strings.Builder) {
	h := a.Historical
	if len(h) == 0 {
		sb.WriteString("  hist --  none\n")
		return
	}
	fmt.Fprintf(sb, "  hist %s%s\n", h, quoteIfPrintable(h))
	switch c := h[0]; {
	case c == 0x00:
		sb.WriteString("       category 00: COMPACT-TLV, status indicator in the last 3 bytes\n")
		if len(h) >= 4 {
			describeCompactTLV(sb, h[1:len(h)-3])
			s := h[len(h)-3:]
			fmt.Fprintf(sb, "       status: life cycle %02X, SW %02X%02X\n", s[0], s[1], s[2])
		} else {
			sb.WriteString("       (too short for the status indicator)\n")
		}
	case c == 0x10:
		if len(h) >= 2 {
			fmt.Fprintf(sb, "       category 10: DIR data reference %s\n", h[1:])
		} else {
			sb.WriteString("       category 10: DIR data reference (missing)\n")
		}
	case c == 0x80:
		sb.WriteString("       category 80: COMPACT-TLV\n")
		describeCompactTLV(sb, h[1:])
	case c > 0x80 && c <= 0x8F:
		fmt.Fprintf(sb, "       category %02X: RFU\n", c)
	default:
		fmt.Fprintf(sb, "       category %02X: proprietary format\n", c)
	}
}

func describeCompactTLV(sb *strings.Builder, b []byte) {
	for len(b) > 0 {
		tag, n := b[0]>>4, int(b[0]&0x0F)
		if 1+n > len(b) {
			fmt.Fprintf(sb, "       malformed COMPACT-TLV at %s\n", HexBytes(b))
			return
		}
		name := compactTLVNames[tag]
		if name == "" {
			name = "unknown tag"
		}
		v := HexBytes(b[1 : 1+n])
		fmt.Fprintf(sb, "       %X%X %s: %s%s\n", tag, n, name, v, quoteIfPrintable(v))
		b = b[1+n:]
	}
}

// quoteIfPrintable returns ` "text"` when every byte is printable ASCII.
// Mixed binary is not rendered, because a half-dotted string is more often
// misleading than helpful for binary historical bytes.
func quoteIfPrintable(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7E {
			return ""
		}
	}
	return fmt.Sprintf(" %q", string(b))
}
