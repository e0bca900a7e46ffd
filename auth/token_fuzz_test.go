package auth

import (
	"strings"
	"testing"
	"time"
)

// FuzzVerify: no token string panics verification, and only a token signed
// with the secret (HS256, exp in the future, sub set) yields a user.
func FuzzVerify(f *testing.F) {
	tk := NewTokens("0123456789abcdef", time.Hour)
	good, _, _ := tk.Mint("alice")
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.")
	f.Add("not.a.jwt")
	f.Add("")
	other := NewTokens("another-secret-123", time.Hour)
	f.Fuzz(func(t *testing.T, token string) {
		user, err := tk.Verify(token)
		if err == nil && user == "" {
			t.Fatalf("%q verified without a user", token)
		}
		if err == nil {
			if _, err := other.Verify(token); err == nil {
				t.Fatalf("%q verifies under two different secrets", token)
			}
		}
	})
}
