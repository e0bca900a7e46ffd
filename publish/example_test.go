package publish_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/pushd/pushd/api"
	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/publish"
	"github.com/pushd/pushd/stream"
)

// pushdURL and apiKey are those of a pushd the examples run against; in
// your program they come from your configuration.
var (
	pushdURL string
	apiKey   = testKey
)

// TestMain starts a real pushd in-process for the examples.
func TestMain(m *testing.M) {
	logger := slog.New(slog.DiscardHandler)
	mgr := stream.NewManager(persist.NewMemory(stream.Retention{MaxCount: 100, TTL: time.Hour}), stream.Config{Logger: logger})
	srv := httptest.NewServer(api.New(mgr, api.Options{
		APIKey: apiKey, Tokens: auth.NewTokens("publish-example-secret-0123", time.Hour),
		AuthRequired: true, Logger: logger,
	}))
	pushdURL = srv.URL
	code := m.Run()
	mgr.Shutdown(context.Background())
	srv.Close()
	os.Exit(code)
}

func Example() {
	ctx := context.Background()
	c, err := publish.New(pushdURL, apiKey)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Notify(ctx, publish.Notification{UserID: "alice", Title: "Build finished", Body: "main is green"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", res.ID != "")
	// Output: stored: true
}

func ExampleClient_Connect() {
	ctx := context.Background()
	c, _ := publish.New(pushdURL, apiKey)
	tok, err := c.Connect(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	// Hand tok.Token to alice's browser; it subscribes at tok.SSEURL with
	// ?access_token=… or at tok.WSURL.
	fmt.Println(tok.UserID, time.Until(tok.ExpiresAt) > 0)
	// Output: alice true
}

func ExampleError() {
	ctx := context.Background()
	c, _ := publish.New(pushdURL, apiKey)
	_, err := c.DataChange(ctx, publish.DataChange{UserID: "alice", TableID: "orders", RowID: "7", Action: "upsert"})
	var perr *publish.Error
	if errors.As(err, &perr) {
		fmt.Println(perr.Status, perr.Code)
	}
	// Output: 400 bad_request
}

func ExampleClient_Batch() {
	ctx := context.Background()
	c, _ := publish.New(pushdURL, apiKey)
	res, err := c.Batch(ctx, []publish.Message{
		publish.DashboardUpdate{UserID: "alice", WidgetID: "cpu", Data: 0.42},
		publish.DataChange{UserID: "bob", TableID: "orders", RowID: "7", Action: publish.Update},
		publish.Broadcast{Title: "Maintenance", Body: "at 22:00 UTC"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(res), "messages stored")
	// Output: 3 messages stored
}

func ExampleBatcher() {
	ctx := context.Background()
	c, _ := publish.New(pushdURL, apiKey)
	b, err := c.NewBatcher(publish.BatcherOptions{MaxSize: 500, MaxDelay: 10 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close(ctx)

	// Publish from as many goroutines as you like: the messages share
	// batch requests, and each call returns its own message's id.
	done := make(chan error)
	for i := range 3 {
		go func() {
			_, err := b.Publish(ctx, publish.AuditLog{UserID: "alice", Entry: fmt.Sprintf("step %d", i)})
			done <- err
		}()
	}
	for range 3 {
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("published")
	// Output: published
}

func ExampleClient_Disconnect() {
	ctx := context.Background()
	c, _ := publish.New(pushdURL, apiKey)
	n, err := c.Disconnect(ctx, "mallory", "account suspended")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "connections ended")
	// Output: 0 connections ended
}
