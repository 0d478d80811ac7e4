package pcsctest

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
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

// withFileLock runs fn holding the lock at path, waiting for it.
func withFileLock(path string, fn func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		l, ok, err := tryLock(path)
		if err != nil {
			return err
		}
		if ok {
			defer l.unlock()
			return fn()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// portLockPath is the lock a process holds while its card uses a vpcd port.
func portLockPath(port int) string { return fmt.Sprintf("/tmp/ssstation-vpcd-%d.lock", port) }
