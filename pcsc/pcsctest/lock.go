package pcsctest

import (
	"fmt"
	"os"
	"syscall"
)

// fileLock is an exclusive flock held across processes.
type fileLock struct{ f *os.File }

func tryLock(path string) (*fileLock, bool, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
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
