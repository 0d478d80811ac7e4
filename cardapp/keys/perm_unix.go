//go:build !windows

package keys

import (
	"fmt"
	"os"
)

// checkKeyFileAccess refuses a key file whose permission bits give group or
// others any access.
func checkKeyFileAccess(path string, _ *os.File, fi os.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("keys: refusing key file %s: mode %04o lets group or others access it; run chmod 600 %s", path, perm, path)
	}
	return nil
}
