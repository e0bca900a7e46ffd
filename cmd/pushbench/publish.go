package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// publishPaced calls pub(i) for i in [0,n) from workers goroutines, handing
// out indices at most rate per second (0 = as fast as the workers go). It
// returns the number of successful calls, the errors, and the wall time from
// the first call to the last answer.
func publishPaced(ctx context.Context, r *run, n int, rate float64, workers int, pub func(i int) error) (ok, failed int64, took time.Duration) {
	if workers < 1 {
		workers = 1
	}
	idx := make(chan int, workers)
	var wg sync.WaitGroup
	var okN, failN atomic.Int64
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := pub(i); err != nil {
					failN.Add(1)
					r.noteErr("publish", err)
					continue
				}
				okN.Add(1)
			}
		}()
	}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if interval > 0 {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
		}
		select {
		case idx <- i:
		case <-ctx.Done():
		}
	}
	close(idx)
	wg.Wait()
	return okN.Load(), failN.Load(), time.Since(start)
}
