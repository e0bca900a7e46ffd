// Package auth mints and verifies subscriber tokens (HS256 JWTs whose sub is
// the user id) and checks publisher API keys.
package auth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Tokens signs and verifies subscriber tokens with one HMAC secret.
type Tokens struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
}

// NewTokens returns a Tokens for secret; minted tokens live for ttl.
func NewTokens(secret string, ttl time.Duration) *Tokens {
	return &Tokens{secret: []byte(secret), ttl: ttl, now: time.Now}
}

// ErrNoToken is returned by Tokens.Verify (and so by Subscribers.User) when
// the request carried no token at all.
var ErrNoToken = errors.New("no token")

// Mint returns a token for userID and its expiry.
func (t *Tokens) Mint(userID string) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   userID,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	})
	s, err := tok.SignedString(t.secret)
	return s, exp, err
}

// Verify checks a token (HS256 only, exp required, sub non-empty) and
// returns its user id.
func (t *Tokens) Verify(token string) (string, error) {
	if token == "" {
		return "", ErrNoToken
	}
	var claims subscriberClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(5*time.Second),
		jwt.WithTimeFunc(t.now),
	)
	if err != nil {
		return "", fmt.Errorf("invalid token: %w", err)
	}
	if claims.Subject == "" {
		return "", errors.New("invalid token: no sub claim")
	}
	return claims.Subject, nil
}

// FromRequest returns the subscriber token of r: the Authorization bearer
// header, else the access_token query parameter (EventSource and browser
// WebSockets cannot set headers).
func FromRequest(r *http.Request) string {
	if tok, ok := Bearer(r); ok {
		return tok
	}
	return r.URL.Query().Get("access_token")
}

// Bearer returns the credentials of an "Authorization: Bearer x" header.
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}

// KeyMatches compares an API key in constant time.
func KeyMatches(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Subscribers resolves who a subscriber connection belongs to.
type Subscribers struct {
	Tokens *Tokens
	// Required makes a valid token mandatory. Without it, a connection with no
	// token names itself with the userId query parameter ("anonymous" when
	// absent); a token that is present must still be valid.
	Required bool
}

// User returns the user id of r, or an error for a missing or bad token.
func (s *Subscribers) User(r *http.Request) (string, error) {
	return s.UserFromToken(FromRequest(r), r)
}

// UserFromToken is User with the token already extracted (WebSocket auth
// messages).
func (s *Subscribers) UserFromToken(tok string, r *http.Request) (string, error) {
	if tok != "" || s.Required {
		return s.Tokens.Verify(tok)
	}
	if u := r.URL.Query().Get("userId"); u != "" {
		return u, nil
	}
	return "anonymous", nil
}
