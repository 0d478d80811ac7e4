package pcsctest

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// fileLock is an exclusive flock held across processes.
type fileLock struct{ f *os.File }

// tryLock takes the lock at path without waiting. The lock files live in
// the shared /tmp, where anyone may plant a symlink by that name: the file
// is opened with O_NOFOLLOW (a symlink is refused, never followed to a file
// elsewhere that creating or locking would touch), and read-only, which
// flock needs no more than, so a lock file left by another user still works.
func tryLock(path string) (*fileLock, bool, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, false, fmt.Errorf("lock file %s is a symbolic link: refused (remove it)", path)
		}
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, false, nil
		}
		return nil, false, err
	}
	return &fileLock{f: f}, true, nil
}

func (l *fileLock) unlock() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// portLockPath is the lock a process holds while its card uses a vpcd port.
func portLockPath(port int) string { return fmt.Sprintf("/tmp/ssstation-vpcd-%d.lock", port) }
