package sse

import (
	"net"
	"sync"
	"syscall"
)

// hangups notices peers that went away from hijacked SSE connections,
// which have no reader goroutine: one epoll set (EPOLLRDHUP) watched by one
// goroutine for all of them, so stats drop a closed stream at once instead of
// at the next heartbeat write.
type hangups struct {
	once  sync.Once
	epfd  int
	mu    sync.Mutex
	next  uint64
	conns map[uint64]func()
}

func (w *hangups) start() bool {
	w.once.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			w.epfd = -1
			return
		}
		w.epfd = fd
		w.conns = make(map[uint64]func())
		go w.loop()
	})
	return w.epfd >= 0
}

// watch calls onHangup once when the peer of conn closes or resets. The
// returned function stops watching; call it before closing conn.
func (w *hangups) watch(conn net.Conn, onHangup func()) (stop func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok || !w.start() {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	w.mu.Lock()
	w.next++
	id := w.next
	w.conns[id] = onHangup
	w.mu.Unlock()
	var fd int
	added := false
	_ = raw.Control(func(f uintptr) {
		fd = int(f)
		// The event carries our id, not the fd: a closed fd may be reused
		// by a new connection before a stale event is read.
		ev := syscall.EpollEvent{Events: uint32(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) | uint32(1)<<31, // EPOLLET
			Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
		added = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, fd, &ev) == nil
	})
	return func() {
		w.mu.Lock()
		delete(w.conns, id)
		w.mu.Unlock()
		if added {
			_ = raw.Control(func(f uintptr) { _ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(f), nil) })
		}
	}
}

func (w *hangups) loop() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			w.mu.Lock()
			f := w.conns[id]
			delete(w.conns, id)
			w.mu.Unlock()
			if f != nil {
				go f()
			}
		}
	}
}
