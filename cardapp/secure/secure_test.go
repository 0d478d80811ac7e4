package secure

import (
	"bytes"
	"testing"

	"ssstation/cardapp/keys"
)

func TestEncodePIN(t *testing.T) {
	for pin, want := range map[string][]byte{"123456": {0x12, 0x34, 0x56}, "12345": {0x12, 0x34, 0x5F}, "0": {0x0F}} {
		got, err := EncodePIN(pin)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("EncodePIN(%s) = %X %v", pin, got, err)
		}
	}
	for _, bad := range []string{"", "12a4", "12 4"} {
		if _, err := EncodePIN(bad); err == nil {
			t.Errorf("EncodePIN(%q) accepted", bad)
		}
	}
}

func TestPINBlockRoundTrip(t *testing.T) {
	b, err := PINBlock("86420")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{5, 0x86, 0x42, 0x0F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
	if !bytes.Equal(b, want) {
		t.Fatalf("PINBlock = %X", b)
	}
	pin, err := ParsePINBlock(b)
	if err != nil || pin != "86420" {
		t.Fatalf("ParsePINBlock = %q %v", pin, err)
	}
	b[1] = 0xA6
	if _, err := ParsePINBlock(b); err == nil {
		t.Fatal("non-digit accepted")
	}
}

func TestMACInputAndIV(t *testing.T) {
	in, err := MACInput(0x84, 0x1E, 0, 1, []byte{0xAA, 1, 2, 3, 4})
	if err != nil || !bytes.Equal(in, []byte{0x84, 0x1E, 0, 1, 5, 0xAA}) {
		t.Fatalf("MACInput = %X %v", in, err)
	}
	iv, _ := IV(keys.SM4, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if len(iv) != 16 || iv[7] != 8 || iv[8] != 0 {
		t.Fatalf("IV = %X", iv)
	}
	iv, _ = IV(keys.TDES, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if len(iv) != 8 {
		t.Fatalf("IV = %X", iv)
	}
}
