package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"syscall"
)

// The raw structure check. bbolt trusts its pages: a branch page whose
// child is itself (or an ancestor) sends its cursors round for ever,
// growing a stack until the process dies (FuzzOpenFile found such files,
// which hung the open and the listing), and a freelist page with a huge
// count makes it allocate without bound. No recover catches either. So
// before bbolt reads any page beyond the meta pages, checkStructure walks
// the file itself, over the file's bytes and not bbolt's mapping, from the
// meta page bbolt chose: every page id below the high water mark and
// inside the file, the right page type, every element and its key and
// value inside its page (overflow pages included), no page reached twice
// (a cycle, or two parents sharing a child), a bounded depth, and a
// freelist whose ids are real pages that the tree does not use. bbolt then
// only ever sees a structurally sound file. Key order and the content of
// values are checked afterwards by walk, through bbolt.
//
// The layout is bbolt v1.4's (go.etcd.io/bbolt/internal/common, page.go,
// meta.go, bucket.go), little-endian as bbolt writes it on the machines a
// station runs on (amd64, arm64):
//
//	page header (16):   id u64, flags u16, count u16, overflow u32
//	leaf element (16):  flags u32, pos u32, ksize u32, vsize u32
//	branch element (16): pos u32, ksize u32, pgid u64
//	meta (after the page header): magic u32, version u32, page size u32,
//	  flags u32, root bucket {root u64, sequence u64}, freelist u64,
//	  pgid u64 (high water mark), txid u64, checksum u64 (FNV-64a of
//	  the 56 bytes before it)
//
// An element's pos counts from the element's own first byte; the value
// follows the key. A bucket is a leaf value flagged 0x01 holding a bucket
// header {root u64, sequence u64}; root 0 means an inline bucket, whose
// leaf page follows the header inside the value.

const (
	pageHeaderSize = 16
	elementSize    = 16 // leaf and branch elements alike
	bucketHdrSize  = 16
	metaSize       = 64

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagFreelist = 0x10
	flagBucket   = 0x01 // leaf element

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = math.MaxUint64 // bbolt's PgidNoFreelist

	// maxTreeDepth bounds a bucket's page tree. No page is visited twice,
	// so this only keeps the recursion short: a journal's trees are 1 to
	// 3 pages deep, and 32 levels of at least two children each is more
	// pages than any file holds.
	maxTreeDepth = 32
	// maxNesting bounds buckets within buckets, as walk does (the journal
	// uses two levels: "journal" and its three buckets).
	maxNesting = 8
)

// rawMeta is one meta page's fields.
type rawMeta struct {
	pageSize       uint32
	root, freelist uint64
	pgid, txid     uint64
	valid          bool
}

func parseMeta(b []byte) rawMeta {
	if len(b) < metaSize {
		return rawMeta{}
	}
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(b[:56])
	return rawMeta{
		pageSize: le.Uint32(b[8:]),
		root:     le.Uint64(b[16:]),
		freelist: le.Uint64(b[32:]),
		pgid:     le.Uint64(b[40:]),
		txid:     le.Uint64(b[48:]),
		valid:    le.Uint32(b[0:]) == boltMagic && le.Uint32(b[4:]) == boltVersion && le.Uint64(b[56:]) == h.Sum64(),
	}
}

// boltView is what bbolt, having opened the file, says of it: its page
// size and, from its reading transaction, the txid, the high water mark
// (tx.Size() / page size) and the root bucket's page. checkStructure
// reads the meta pages itself and makes sure it checks the tree bbolt
// will read.
type boltView struct {
	pageSize   int
	txid, pgid uint64
	root       uint64
}

// checkStructure checks the file at path, already opened read only by
// bbolt (which holds the shared lock, so no writer changes it meanwhile),
// as described above. The error wraps ErrDamaged.
func checkStructure(path string, v boltView) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w := &rawWalker{r: f, size: uint64(fi.Size()), ps: uint64(v.pageSize), seen: map[uint64]bool{}}
	if err := w.check(v); err != nil {
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return nil
}

// rawWalker reads pages from the file and remembers those it reached.
type rawWalker struct {
	r    io.ReaderAt
	size uint64 // file size
	ps   uint64 // page size
	hwm  uint64 // high water mark: the first page id not in use
	seen map[uint64]bool
}

func (w *rawWalker) check(v boltView) error {
	// A journal is written with the OS page size (4 KiB, 16 KiB or
	// 64 KiB); bbolt accepts 1 KiB pages too.
	if w.ps < 1024 || w.ps > 64<<10 || w.ps&(w.ps-1) != 0 {
		return fmt.Errorf("page size %d", w.ps)
	}
	if w.size < 2*w.ps {
		return errors.New("file shorter than its two meta pages")
	}
	buf := make([]byte, metaSize)
	var metas [2]rawMeta
	for i := range metas {
		if _, err := w.r.ReadAt(buf, int64(uint64(i)*w.ps+pageHeaderSize)); err != nil {
			return fmt.Errorf("meta page %d: %w", i, err)
		}
		metas[i] = parseMeta(buf)
	}
	// bbolt's choice (db.meta): the valid one with the higher txid.
	m := metas[0]
	if metas[1].txid > metas[0].txid {
		m = metas[1]
		if !m.valid {
			m = metas[0]
		}
	} else if !m.valid {
		m = metas[1]
	}
	switch {
	case !m.valid:
		return errors.New("no valid meta page")
	case m.txid != v.txid || m.pgid != v.pgid || m.root != v.root:
		return errors.New("the meta page read differs from bbolt's")
	case uint64(m.pageSize) != w.ps:
		return fmt.Errorf("meta page says page size %d, bbolt uses %d", m.pageSize, w.ps)
	case m.freelist == noFreelist:
		// bbolt would rebuild the freelist by a walk whose errors panic on
		// a goroutine of its own. The journal, like every store of this
		// station, always writes its freelist.
		return errors.New("no freelist recorded")
	}
	if m.pgid > w.size/w.ps {
		// bbolt grows the file before it writes a meta page, so every page
		// below the mark is in the file; a larger mark would make the first
		// write grow the file to match it.
		return fmt.Errorf("high water mark %d past the end of the file (%d pages)", m.pgid, w.size/w.ps)
	}
	w.hwm = m.pgid
	if err := w.tree(m.root, 0, 0); err != nil {
		return err
	}
	return w.freelist(m.freelist)
}

// page reads page id with its overflow pages and marks them reached.
func (w *rawWalker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d outside 2..%d", id, w.hwm)
	}
	if id >= w.size/w.ps {
		return nil, fmt.Errorf("page %d past the end of the file", id)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := w.r.ReadAt(hdr, int64(id*w.ps)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	n := uint64(le.Uint32(hdr[12:])) + 1 // the page and its overflow
	if n > w.hwm-id || n > w.size/w.ps-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the end", id, n-1)
	}
	for p := id; p < id+n; p++ {
		if w.seen[p] {
			return nil, fmt.Errorf("page %d reached twice", p)
		}
		w.seen[p] = true
	}
	b := make([]byte, n*w.ps)
	if _, err := w.r.ReadAt(b, int64(id*w.ps)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return b, nil
}

// tree checks the page tree rooted at page id, depth levels down in its
// bucket, nest buckets deep.
func (w *rawWalker) tree(id uint64, depth, nest int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: page tree deeper than %d", id, maxTreeDepth)
	}
	b, err := w.page(id)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	switch flags := le.Uint16(b[8:]); flags {
	case flagLeaf:
		return w.leaf(b, nest, false)
	case flagBranch:
		count := uint64(le.Uint16(b[10:]))
		if count == 0 {
			return fmt.Errorf("page %d: branch without elements", id)
		}
		if err := elementsFit(b, count); err != nil {
			return fmt.Errorf("page %d: %w", id, err)
		}
		for i := range count {
			e := pageHeaderSize + i*elementSize
			pos, ksize := uint64(le.Uint32(b[e:])), uint64(le.Uint32(b[e+4:]))
			if e+pos+ksize > uint64(len(b)) {
				return fmt.Errorf("page %d: branch key %d runs past its page", id, i)
			}
			if err := w.tree(le.Uint64(b[e+8:]), depth+1, nest); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("page %d: flags %#x where a branch or leaf page belongs", id, flags)
	}
}

// leaf checks a leaf page b (read from the file, or an inline bucket's
// page inside its value) and the buckets it holds.
func (w *rawWalker) leaf(b []byte, nest int, inline bool) error {
	le := binary.LittleEndian
	count := uint64(le.Uint16(b[10:]))
	if err := elementsFit(b, count); err != nil {
		return fmt.Errorf("leaf: %w", err)
	}
	for i := range count {
		e := pageHeaderSize + i*elementSize
		flags := le.Uint32(b[e:])
		pos, ksize, vsize := uint64(le.Uint32(b[e+4:])), uint64(le.Uint32(b[e+8:])), uint64(le.Uint32(b[e+12:]))
		start := e + pos + ksize
		end := start + vsize // each term < 2^32: no overflow
		if end > uint64(len(b)) {
			return fmt.Errorf("leaf element %d runs past its page", i)
		}
		if flags&flagBucket == 0 {
			continue
		}
		if inline {
			// bbolt never inlines a bucket that holds buckets.
			return fmt.Errorf("leaf element %d: a bucket inside an inline bucket", i)
		}
		if nest+1 > maxNesting {
			return fmt.Errorf("buckets nested deeper than %d", maxNesting)
		}
		val := b[start:end]
		if len(val) < bucketHdrSize {
			return fmt.Errorf("leaf element %d: bucket header cut short", i)
		}
		if root := le.Uint64(val); root != 0 {
			if err := w.tree(root, 0, nest+1); err != nil {
				return err
			}
			continue
		}
		in := val[bucketHdrSize:]
		if len(in) < pageHeaderSize {
			return fmt.Errorf("leaf element %d: inline bucket without its page", i)
		}
		if flags := le.Uint16(in[8:]); flags != flagLeaf {
			return fmt.Errorf("leaf element %d: inline bucket page has flags %#x", i, flags)
		}
		if err := w.leaf(in, nest+1, true); err != nil {
			return err
		}
	}
	return nil
}

// elementsFit checks that count elements fit in page b after its header.
func elementsFit(b []byte, count uint64) error {
	if pageHeaderSize+count*elementSize > uint64(len(b)) {
		return fmt.Errorf("%d elements do not fit in %d bytes", count, len(b))
	}
	return nil
}

// freelist checks the freelist page and the ids it lists: each a page
// below the high water mark, listed once, and not one the tree uses (bbolt
// would hand it out and overwrite live data).
func (w *rawWalker) freelist(id uint64) error {
	b, err := w.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	le := binary.LittleEndian
	if flags := le.Uint16(b[8:]); flags != flagFreelist {
		return fmt.Errorf("freelist page %d has flags %#x", id, flags)
	}
	room := (uint64(len(b)) - pageHeaderSize) / 8
	first, count := uint64(0), uint64(le.Uint16(b[10:]))
	if count == 0xFFFF {
		// The real count is the first id slot (bbolt's FreelistPageCount).
		first, count = 1, le.Uint64(b[pageHeaderSize:])
	}
	if count > room-first {
		return fmt.Errorf("freelist page %d: %d ids do not fit", id, count)
	}
	for i := range count {
		p := le.Uint64(b[pageHeaderSize+(first+i)*8:])
		switch {
		case p < 2 || p >= w.hwm:
			return fmt.Errorf("freelist lists page %d outside 2..%d", p, w.hwm)
		case w.seen[p]:
			return fmt.Errorf("freelist lists page %d, which is in use or listed twice", p)
		}
		w.seen[p] = true
	}
	return nil
}
