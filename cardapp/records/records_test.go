package records

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestNumeric(t *testing.T) {
	v, err := Encode(TypeNumeric, 4, "20201001")
	if err != nil || !bytes.Equal(v, []byte{0x20, 0x20, 0x10, 0x01}) {
		t.Fatalf("%X %v", v, err)
	}
	v, err = Encode(TypeNumeric, 6, "410100813")
	if err != nil || !bytes.Equal(v, []byte{0x41, 0x01, 0x00, 0x81, 0x3F, 0xFF}) {
		t.Fatalf("%X %v", v, err)
	}
	s, err := Decode(TypeNumeric, v)
	if err != nil || s != "410100813" {
		t.Fatalf("%q %v", s, err)
	}
	if _, err := Decode(TypeNumeric, []byte{0x1F, 0x23}); err == nil {
		t.Fatal("digits after padding accepted")
	}
	if _, err := Encode(TypeNumeric, 1, "123"); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
	if s, _ := Decode(TypeNumeric, []byte{0xFF, 0xFF}); s != "" {
		t.Fatal(s)
	}
}

func TestTextGBK(t *testing.T) {
	v, err := Encode(TypeText, 30, "张三")
	if err != nil || !bytes.Equal(v[:5], []byte{0xD5, 0xC5, 0xC8, 0xFD, 0}) || len(v) != 30 {
		t.Fatalf("%X %v", v, err)
	}
	s, err := Decode(TypeText, v)
	if err != nil || s != "张三" {
		t.Fatalf("%q %v", s, err)
	}
	if _, err := Encode(TypeText, 30, "😀"); !errors.Is(err, ErrNotGBK) {
		t.Fatalf("emoji: %v", err)
	}
	if _, err := Encode(TypeText, 4, "张三丰"); !errors.Is(err, ErrTooLong) {
		t.Fatalf("too long: %v", err)
	}
	head, tail, err := SplitGBK(strings.Repeat("龙", 16), 30)
	if err != nil || head != strings.Repeat("龙", 15) || tail != "龙" {
		t.Fatalf("split %q %q %v", head, tail, err)
	}
}

func TestTLV(t *testing.T) {
	tag, v, err := ParseTLV([]byte{0x03, 0x04, '2', '.', '0', '0'})
	if err != nil || tag != 3 || string(v) != "2.00" {
		t.Fatal(tag, v, err)
	}
	if _, _, err := ParseTLV([]byte{0x03, 0x05, '2'}); err == nil {
		t.Fatal("short record accepted")
	}
	if !bytes.Equal(TLV(9, []byte{1}), []byte{9, 1, 1}) {
		t.Fatal("TLV")
	}
}
