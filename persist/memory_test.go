package persist

import (
	"testing"

	"github.com/pushd/pushd/stream"
	"github.com/pushd/pushd/stream/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, r stream.Retention) storetest.Store {
		s := NewMemory(r)
		t.Cleanup(func() { _ = s.Close(bg) })
		return s
	})
}
