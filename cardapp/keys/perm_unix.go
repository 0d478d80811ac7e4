//go:build !windows

package keys

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// checkKeyFileAccess refuses a key file that someone other than the station
// account could read or replace: permission bits giving group or others any
// access, an owner other than the current user or root, or a directory that
// group or others may write (they could swap the file for their own keys).
func checkKeyFileAccess(path string, _ *os.File, fi os.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("keys: refusing key file %s: mode %04o lets group or others access it; run chmod 600 %s", path, perm, path)
	}
	if err := checkOwner(path, "key file", fi); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("keys: key file %s: its directory: %w", path, err)
	}
	if perm := di.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("keys: refusing key file %s: its directory %s has mode %04o, so group or others can replace the file; run chmod go-w %s", path, dir, perm, dir)
	}
	return checkOwner(path, "the directory "+dir+" of key file", di)
}

// checkOwner accepts files owned by the current user or by root.
func checkOwner(path, what string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := int(st.Uid); uid != os.Getuid() && uid != 0 {
		return fmt.Errorf("keys: refusing %s %s: owned by uid %d, neither this user (uid %d) nor root", what, path, uid, os.Getuid())
	}
	return nil
}
