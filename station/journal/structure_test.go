package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"testing"
)

// structFile writes a journal with n entries, closes it, and returns its
// path, bytes, page size and current meta (as checkStructure reads it).
func structFile(t *testing.T, n int) (string, []byte, int, rawMeta) {
	t.Helper()
	s, path := newStore(t)
	for i := range n {
		mustBegin(t, s, req(fmt.Sprintf("op-%04d", i), KindPersonalize, card1, "a"))
	}
	must(t, s.Close())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m0 := parseMeta(b[pageHeaderSize:])
	if !m0.valid {
		t.Fatal("meta page 0 is not valid")
	}
	ps := int(m0.pageSize)
	// bbolt's choice: the valid meta with the higher txid.
	m1 := parseMeta(b[ps+pageHeaderSize:])
	m := m0
	if m1.valid && m1.txid > m0.txid {
		m = m1
	}
	return path, b, ps, m
}

func writeDamaged(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// refused asserts that the file at path is refused as damaged by the
// check and by both opens, and that the read-only ones leave it unchanged.
func refused(t *testing.T, path string, want []byte) {
	t.Helper()
	opt := Options{Timeout: -1, Retention: -1}
	if err := CheckFile(path, opt); !errors.Is(err, ErrDamaged) {
		t.Fatalf("CheckFile: %v, want ErrDamaged", err)
	}
	if s, err := OpenReadOnly(path, opt); !errors.Is(err, ErrDamaged) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenReadOnly: %v, want ErrDamaged", err)
	}
	if s, err := OpenWith(path, opt); !errors.Is(err, ErrDamaged) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenWith: %v, want ErrDamaged", err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(want) {
		t.Fatal("a refused file was changed")
	}
}

// A journal large enough for branch pages passes the structure check.
func TestCheckFileAcceptsSoundJournal(t *testing.T) {
	path, _, _, m := structFile(t, 300)
	if err := CheckFile(path, Options{Timeout: -1}); err != nil {
		t.Fatalf("a sound journal: %v", err)
	}
	if m.freelist == noFreelist || m.root < 2 {
		t.Fatalf("meta: %+v", m)
	}
	s, err := OpenReadOnly(path, Options{Timeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if list, err := s.List(0); err != nil || len(list) != 300 {
		t.Fatalf("List: %d entries, %v", len(list), err)
	}
}

// A branch page whose child is itself sent bbolt's cursor round for ever:
// the open hung until the process died (FuzzOpenFile, seed-branch-page-
// cycle). It is refused now, before bbolt follows a page id.
func TestCheckFileRefusesBranchCycle(t *testing.T) {
	path, b, ps, m := structFile(t, 3)
	p := b[int(m.root)*ps:]
	le := binary.LittleEndian
	le.PutUint16(p[8:], flagBranch)
	le.PutUint16(p[10:], 1)
	le.PutUint32(p[pageHeaderSize:], elementSize) // key right after the element
	le.PutUint32(p[pageHeaderSize+4:], 1)
	le.PutUint64(p[pageHeaderSize+8:], m.root) // the child is the page itself
	writeDamaged(t, path, b)
	refused(t, path, b)
}

// A freelist that lists a page the tree uses would let the first write
// overwrite live data, and one whose count is huge made bbolt allocate
// without bound.
func TestCheckFileRefusesBadFreelist(t *testing.T) {
	le := binary.LittleEndian
	for name, damage := range map[string]func(fl []byte, m rawMeta){
		"lists the root page": func(fl []byte, m rawMeta) {
			le.PutUint16(fl[10:], 1)
			le.PutUint64(fl[pageHeaderSize:], m.root)
		},
		"huge count": func(fl []byte, m rawMeta) {
			le.PutUint16(fl[10:], 0xFFFF)
			le.PutUint64(fl[pageHeaderSize:], 1<<40)
		},
		"page past the high water mark": func(fl []byte, m rawMeta) {
			le.PutUint16(fl[10:], 1)
			le.PutUint64(fl[pageHeaderSize:], m.pgid)
		},
		"not a freelist page": func(fl []byte, m rawMeta) {
			le.PutUint16(fl[8:], flagLeaf)
		},
	} {
		t.Run(name, func(t *testing.T) {
			path, b, ps, m := structFile(t, 3)
			damage(b[int(m.freelist)*ps:], m)
			writeDamaged(t, path, b)
			refused(t, path, b)
		})
	}
}

// Leaf elements whose sizes run past their page, and a bucket value
// pointing to a page out of range, are refused.
func TestCheckFileRefusesElementsOutOfBounds(t *testing.T) {
	le := binary.LittleEndian
	for name, damage := range map[string]func(p []byte, m rawMeta){
		"value size": func(p []byte, m rawMeta) { le.PutUint32(p[pageHeaderSize+12:], 1<<20) },
		"count":      func(p []byte, m rawMeta) { le.PutUint16(p[10:], 0xFFFF) },
		"bucket root past the high water mark": func(p []byte, m rawMeta) {
			// The root page's first element is the "journal" bucket.
			e := p[pageHeaderSize:]
			v := pageHeaderSize + int(le.Uint32(e[4:])) + int(le.Uint32(e[8:]))
			le.PutUint64(p[v:], m.pgid+5)
		},
		"page type": func(p []byte, m rawMeta) { le.PutUint16(p[8:], 0x08) },
	} {
		t.Run(name, func(t *testing.T) {
			path, b, ps, m := structFile(t, 3)
			damage(b[int(m.root)*ps:], m)
			writeDamaged(t, path, b)
			refused(t, path, b)
		})
	}
}

// A meta page whose high water mark lies past the end of the file (with a
// right checksum) is refused: the first write would grow the file to it.
func TestCheckFileRefusesHighWaterMarkPastEnd(t *testing.T) {
	path, b, ps, _ := structFile(t, 3)
	le := binary.LittleEndian
	for i := range 2 {
		m := b[i*ps+pageHeaderSize:]
		le.PutUint64(m[40:], 1<<40)
		h := fnv.New64a()
		h.Write(m[:56])
		le.PutUint64(m[56:], h.Sum64())
		if !parseMeta(m).valid {
			t.Fatal("the patched meta page does not validate")
		}
	}
	writeDamaged(t, path, b)
	refused(t, path, b)
}
