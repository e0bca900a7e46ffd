package auth

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzSubscriberClaims holds the hand-written claims decoder to
// encoding/json's: the same claims, or an error from both.
func FuzzSubscriberClaims(f *testing.F) {
	for _, s := range []string{
		`{"sub":"alice","exp":1796168705,"iat":1796168700}`,
		`{"sub":"alice","exp":1796168705.5}`,
		`{"sub":"a","aud":["x"],"iss":"i","jti":"j","nbf":1}`,
		`{"sub":"\\u0061","exp":0}`,
		`{"sub":"a","sub":"b","exp":1e3}`,
		`{"sub":1}`, `{"exp":-1}`, `{"exp":01}`, `{}`, `{"sub":"a"`, `[]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var fast subscriberClaims
		ferr := json.Unmarshal([]byte(data), &fast)
		var strict jwt.RegisteredClaims
		serr := json.Unmarshal([]byte(data), &strict)
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("%q: subscriberClaims error %v, RegisteredClaims error %v", data, ferr, serr)
		}
		if ferr == nil && !reflect.DeepEqual(fast.RegisteredClaims, strict) {
			t.Fatalf("%q: subscriberClaims %+v, RegisteredClaims %+v", data, fast.RegisteredClaims, strict)
		}
	})
}

// TestVerifyMintedToken: a token Mint wrote verifies through the fast
// claims path, with its subject; an expired one does not.
func TestVerifyMintedToken(t *testing.T) {
	now := time.Unix(1796168700, 0)
	tk := NewTokens("secret-0123456789abcdef", time.Minute)
	tk.now = func() time.Time { return now }
	tok, _, err := tk.Mint("alice")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := tk.Verify(tok); err != nil || u != "alice" {
		t.Fatalf("Verify = %q, %v", u, err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := tk.Verify(tok); err == nil {
		t.Fatal("an expired token verified")
	}
}
