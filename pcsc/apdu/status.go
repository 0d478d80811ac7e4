package apdu

import "fmt"

// StatusWord is SW1 SW2 as one value. It implements error so that a card's
// refusal travels up the stack as an ordinary Go error and can be matched
// with errors.Is against the sentinels below or inspected with errors.As.
type StatusWord uint16

// Status words the station meets (ISO/IEC 7816-4 §5.6, PBOC, card-reference §3).
const (
	SWOK                       StatusWord = 0x9000
	SWWarningFileInvalidated   StatusWord = 0x6283 // selected file invalidated (blocked application)
	SWMemoryFailure            StatusWord = 0x6581
	SWWrongLength              StatusWord = 0x6700
	SWIncompatibleFileStruct   StatusWord = 0x6981
	SWSecurityStatus           StatusWord = 0x6982 // security status not satisfied
	SWAuthBlocked              StatusWord = 0x6983 // authentication method (PIN, key) blocked
	SWReferenceDataInvalidated StatusWord = 0x6984
	SWConditionsNotSatisfied   StatusWord = 0x6985
	SWCommandNotAllowed        StatusWord = 0x6986 // no current EF
	SWSMDataIncorrect          StatusWord = 0x6988
	SWWrongData                StatusWord = 0x6A80
	SWFuncNotSupported         StatusWord = 0x6A81
	SWFileNotFound             StatusWord = 0x6A82
	SWRecordNotFound           StatusWord = 0x6A83
	SWIncorrectP1P2            StatusWord = 0x6A86
	SWRefDataNotFound          StatusWord = 0x6A88 // key not found
	SWWrongP1P2                StatusWord = 0x6B00
	SWINSNotSupported          StatusWord = 0x6D00
	SWCLANotSupported          StatusWord = 0x6E00
	SWUnknown                  StatusWord = 0x6F00
	SWAppLocked                StatusWord = 0x9303 // application permanently locked (PBOC)
)

// SW1 and SW2 split the word.
func (s StatusWord) SW1() byte { return byte(s >> 8) }
func (s StatusWord) SW2() byte { return byte(s) }

// OK reports 9000.
func (s StatusWord) OK() bool { return s == SWOK }

// Retries returns x for 63Cx (a failed verification with x tries left).
func (s StatusWord) Retries() (int, bool) {
	if s&0xFFF0 == 0x63C0 {
		return int(s & 0x0F), true
	}
	return 0, false
}

// MoreData reports 61xx and the number of bytes the card has ready (0 = 256).
func (s StatusWord) MoreData() (int, bool) {
	if s.SW1() == 0x61 {
		n := int(s.SW2())
		if n == 0 {
			n = 256
		}
		return n, true
	}
	return 0, false
}

// WrongLe reports 6Cxx and the exact Le the card wants (0 = 256).
func (s StatusWord) WrongLe() (int, bool) {
	if s.SW1() == 0x6C {
		n := int(s.SW2())
		if n == 0 {
			n = 256
		}
		return n, true
	}
	return 0, false
}

// Error makes a status word an error: the hex value and its meaning.
func (s StatusWord) Error() string {
	return fmt.Sprintf("card answered %04X: %s", uint16(s), s.Meaning())
}

// String is the four hex digits.
func (s StatusWord) String() string { return fmt.Sprintf("%04X", uint16(s)) }

var meanings = map[StatusWord]string{
	SWOK:                       "success",
	SWWarningFileInvalidated:   "selected file invalidated (application blocked)",
	SWMemoryFailure:            "memory failure",
	SWWrongLength:              "wrong length",
	SWIncompatibleFileStruct:   "command incompatible with file structure",
	SWSecurityStatus:           "security status not satisfied",
	SWAuthBlocked:              "authentication method blocked",
	SWReferenceDataInvalidated: "reference data not usable",
	SWConditionsNotSatisfied:   "conditions of use not satisfied",
	SWCommandNotAllowed:        "command not allowed (no current EF)",
	SWSMDataIncorrect:          "secure messaging data objects incorrect",
	SWWrongData:                "incorrect parameters in the data field",
	SWFuncNotSupported:         "function not supported",
	SWFileNotFound:             "file or application not found",
	SWRecordNotFound:           "record not found",
	SWIncorrectP1P2:            "incorrect parameters P1-P2",
	SWRefDataNotFound:          "referenced data (key) not found",
	SWWrongP1P2:                "wrong parameters P1-P2",
	SWINSNotSupported:          "instruction not supported",
	SWCLANotSupported:          "class not supported",
	SWUnknown:                  "no precise diagnosis",
	SWAppLocked:                "application permanently locked",
}

// Meaning says in words what the status word means, for technicians.
func (s StatusWord) Meaning() string {
	if m, ok := meanings[s]; ok {
		return m
	}
	if n, ok := s.Retries(); ok {
		return fmt.Sprintf("verification failed, %d tries left", n)
	}
	if n, ok := s.MoreData(); ok {
		return fmt.Sprintf("%d response bytes still available", n)
	}
	if n, ok := s.WrongLe(); ok {
		return fmt.Sprintf("wrong Le, the card wants Le=%d", n)
	}
	switch s.SW1() {
	case 0x62:
		return "warning: non-volatile memory unchanged"
	case 0x63:
		return "warning: non-volatile memory changed"
	case 0x64:
		return "execution error: non-volatile memory unchanged"
	case 0x65:
		return "execution error: non-volatile memory changed"
	case 0x67:
		return "wrong length"
	case 0x68:
		return "functions in CLA not supported"
	case 0x69:
		return "command not allowed"
	case 0x6A:
		return "wrong parameters"
	}
	return "unknown status"
}

// Is lets errors.Is(err, ErrVerificationFailed) match every 63Cx.
func (s StatusWord) Is(target error) bool {
	if target == ErrVerificationFailed {
		_, ok := s.Retries()
		return ok
	}
	return false
}

type swClass string

func (c swClass) Error() string { return string(c) }

// ErrVerificationFailed matches any 63Cx status word through errors.Is.
var ErrVerificationFailed error = swClass("verification failed (63Cx)")
