package auth

import (
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerify(t *testing.T) {
	tk := NewTokens("0123456789abcdef", time.Hour)
	good, exp, err := tk.Mint("alice")
	if err != nil || time.Until(exp) < 59*time.Minute {
		t.Fatalf("mint: %v %v", err, exp)
	}
	if u, err := tk.Verify(good); err != nil || u != "alice" {
		t.Fatalf("verify good token: %q %v", u, err)
	}
	sign := func(secret string, claims jwt.MapClaims) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		return s
	}
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","exp":9999999999}`))
	bad := map[string]string{
		"empty":        "",
		"garbage":      "not.a.jwt",
		"wrong secret": sign("another-secret-123", jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}),
		"expired":      sign("0123456789abcdef", jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()}),
		"no exp":       sign("0123456789abcdef", jwt.MapClaims{"sub": "alice"}),
		"no sub":       sign("0123456789abcdef", jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}),
		"alg none":     hdr + "." + body + ".",
	}
	for name, tok := range bad {
		if u, err := tk.Verify(tok); err == nil {
			t.Errorf("%s: accepted as %q", name, u)
		}
	}
}

func TestBearerAndSubscribers(t *testing.T) {
	r := httptest.NewRequest("GET", "/sse?access_token=q&userId=bob", nil)
	if tok := FromRequest(r); tok != "q" {
		t.Fatalf("query token: %q", tok)
	}
	r.Header.Set("Authorization", "bearer h")
	if tok := FromRequest(r); tok != "h" {
		t.Fatalf("header wins, scheme case-insensitive: %q", tok)
	}
	r.Header.Set("Authorization", "h")
	if _, ok := Bearer(r); ok {
		t.Fatal("a bare key without Bearer accepted")
	}
	if !KeyMatches("k", "k") || KeyMatches("k", "K") || KeyMatches("", "k") {
		t.Fatal("KeyMatches")
	}
	tk := NewTokens("0123456789abcdef", time.Hour)
	open := &Subscribers{Tokens: tk}
	r = httptest.NewRequest("GET", "/sse?userId=bob", nil)
	if u, err := open.User(r); err != nil || u != "bob" {
		t.Fatalf("auth not required: %q %v", u, err)
	}
	r = httptest.NewRequest("GET", "/sse?access_token=bad&userId=bob", nil)
	if _, err := open.User(r); err == nil {
		t.Fatal("a present but bad token must fail even when auth is not required")
	}
	closed := &Subscribers{Tokens: tk, Required: true}
	if _, err := closed.User(httptest.NewRequest("GET", "/sse?userId=bob", nil)); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Fatalf("required: %v", err)
	}
}
