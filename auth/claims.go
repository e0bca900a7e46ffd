package auth

import (
	"encoding/json"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushd/pushd/internal/flatjson"
)

// subscriberClaims are a token's registered claims, decoded by hand when
// they have the shape Mint writes (plain strings, integer dates) and by
// encoding/json otherwise. golang-jwt decodes each date claim with two more
// reflective json.Unmarshal calls: on a connect that was more than the
// signature check. Validation is still golang-jwt's, through the embedded
// claims' getters.
type subscriberClaims struct {
	jwt.RegisteredClaims
}

// registeredClaims decodes without subscriberClaims' UnmarshalJSON.
type registeredClaims jwt.RegisteredClaims

// UnmarshalJSON implements json.Unmarshaler.
func (c *subscriberClaims) UnmarshalJSON(data []byte) error {
	var fast jwt.RegisteredClaims
	if flatjson.Object(data, func(key, value []byte) bool { return setClaim(&fast, key, value) }) {
		c.RegisteredClaims = fast
		return nil
	}
	var strict registeredClaims
	if err := json.Unmarshal(data, &strict); err != nil {
		return err
	}
	c.RegisteredClaims = jwt.RegisteredClaims(strict)
	return nil
}

// setClaim sets the claim key of c from value when it is one of the claims
// decoded by hand and value has the plain form (String, Int); audiences,
// which may be a string or an array, take encoding/json's path.
func setClaim(c *jwt.RegisteredClaims, key, value []byte) bool {
	var ok bool
	switch string(key) {
	case "sub":
		c.Subject, ok = flatjson.String(value)
	case "iss":
		c.Issuer, ok = flatjson.String(value)
	case "jti":
		c.ID, ok = flatjson.String(value)
	case "exp":
		c.ExpiresAt, ok = numericDate(value)
	case "iat":
		c.IssuedAt, ok = numericDate(value)
	case "nbf":
		c.NotBefore, ok = numericDate(value)
	}
	return ok
}

// numericDate is the date of an integer NumericDate, as golang-jwt decodes
// it (seconds since the epoch, at jwt.TimePrecision).
func numericDate(value []byte) (*jwt.NumericDate, bool) {
	n, ok := flatjson.Int(value)
	if !ok {
		return nil, false
	}
	return jwt.NewNumericDate(time.Unix(n, 0)), true
}
