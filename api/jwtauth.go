package api

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/booking-engine/booking/aggregates"
)

// JWTOptions configure the --user-auth jwt authenticator.
type JWTOptions struct {
	// KeyFile (--user-jwt-key) is an HMAC secret file (HS256) or a PEM public key: RSA (RS256),
	// ECDSA P-256 (ES256) or Ed25519 (EdDSA). The key type alone decides the one accepted
	// algorithm, so a token cannot choose how it is verified.
	KeyFile string
	// Issuer and Audience, when not empty, must match the token's iss and aud.
	Issuer, Audience string
	// Clock tells the time for exp, nbf and iat; nil means time.Now.
	Clock func() time.Time
	// Leeway tolerates clock skew between the token's issuer and this server.
	Leeway time.Duration
}

// Key requirements. RFC 7518 §3.2 asks for an HMAC key at least as long as the hash (256
// bits); RSA keys below 2048 bits are no longer considered safe.
const (
	minHMACSecret = 32
	minRSABits    = 2048
	// maxJWTLen bounds the work an unauthenticated caller can ask for; real tokens are far
	// smaller.
	maxJWTLen = 8 << 10
)

// jwtAuthenticator verifies user JWTs with one key and one algorithm. It holds no mutable
// state, so one value serves all requests concurrently.
type jwtAuthenticator struct {
	parser *jwt.Parser
	key    any
	issuer string // "" when any issuer is accepted
}

// NewJWTAuthenticator loads o.KeyFile and returns the authenticator of --user-auth jwt. A key
// file that is missing, unreadable, malformed, a private key or too weak is an error, so that a
// misconfigured server fails at start-up rather than rejecting every user.
func NewJWTAuthenticator(o JWTOptions) (UserAuthenticator, error) {
	key, method, err := loadVerifyKey(o.KeyFile)
	if err != nil {
		return nil, err
	}
	if o.Leeway < 0 {
		return nil, fmt.Errorf("jwt leeway %s is negative", o.Leeway)
	}
	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{method.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(o.Leeway),
		jwt.WithTimeFunc(clock),
		jwt.WithStrictDecoding(),
	}
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		opts = append(opts, jwt.WithAudience(o.Audience))
	}
	return &jwtAuthenticator{parser: jwt.NewParser(opts...), key: key, issuer: o.Issuer}, nil
}

// Authenticate implements UserAuthenticator.
func (a *jwtAuthenticator) Authenticate(authorization string) (string, error) {
	raw, ok := bearer(authorization)
	if !ok {
		return "", unauthenticated("an Authorization: Bearer <JWT> header is required")
	}
	if len(raw) > maxJWTLen {
		return "", unauthenticated("the token is too long")
	}
	var claims jwt.RegisteredClaims
	// The parser has already refused any algorithm but the key's own before this runs.
	keyFunc := func(*jwt.Token) (any, error) { return a.key, nil }
	if _, err := a.parser.ParseWithClaims(raw, &claims, keyFunc); err != nil {
		return "", unauthenticated(a.reason(err, &claims))
	}
	switch {
	case claims.Subject == "":
		return "", unauthenticated("the token has no sub")
	case !aggregates.ValidID(claims.Subject):
		return "", unauthenticated("the token's sub is not a valid userId")
	}
	return claims.Subject, nil
}

// unauthenticated wraps ErrUnauthenticated with a reason that is safe to log.
func unauthenticated(reason string) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, reason)
}

// reason names why the parser refused a token, in words that reveal nothing about the key.
// claims hold what the parser decoded before it gave up.
func (a *jwtAuthenticator) reason(err error, claims *jwt.RegisteredClaims) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "the token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the token's signature or algorithm is not accepted"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The parser's sentinel does not say which claim; only these three can be required.
		switch {
		case claims.ExpiresAt == nil:
			return "the token has no exp"
		case a.issuer != "" && claims.Issuer == "":
			return "the token has no iss"
		default:
			return "the token has no aud"
		}
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token is issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the token's issuer is not accepted"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token's audience is not accepted"
	default:
		return "the token is not valid"
	}
}

// MintDevToken signs a token for user, valid from now for ttl, for local use (booking
// dev-token). keyFile is an HMAC secret file (HS256) or a PEM private key, PKCS#8 or
// PKCS#1/SEC1: RSA (RS256), ECDSA P-256 (ES256) or Ed25519 (EdDSA). Issuer and audience are
// set when not empty.
func MintDevToken(keyFile, user string, ttl time.Duration, issuer, audience string, now time.Time) (string, error) {
	if !aggregates.ValidID(user) {
		return "", fmt.Errorf("user %q is not a valid userId (1-64 characters of [A-Za-z0-9_-])", user)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("ttl %s must be positive", ttl)
	}
	key, method, err := loadSignKey(keyFile)
	if err != nil {
		return "", err
	}
	claims := jwt.RegisteredClaims{
		Subject:   user,
		Issuer:    issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	if audience != "" {
		claims.Audience = jwt.ClaimStrings{audience}
	}
	signed, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("sign token with %s: %w", keyFile, err)
	}
	return signed, nil
}

// readKeyFile returns the PEM block of a key file, or, for a file that is not PEM, its bytes
// as an HMAC secret. A file that looks like PEM is never taken as a secret: otherwise a
// broken public key file would silently turn into an HMAC key everybody can read.
func readKeyFile(path string) (secret []byte, block *pem.Block, err error) {
	if path == "" {
		return nil, nil, errors.New("no jwt key file given (--user-jwt-key)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read jwt key: %w", err)
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		for rest := data; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				return nil, nil, fmt.Errorf("jwt key %s: no key in this PEM file", path)
			}
			// `openssl ecparam -genkey` writes the curve before the key.
			if block.Type != "EC PARAMETERS" {
				return nil, block, nil
			}
		}
	}
	// Editors and `echo` add a final newline that is not part of the secret.
	secret = bytes.TrimSuffix(data, []byte("\n"))
	secret = bytes.TrimSuffix(secret, []byte("\r"))
	if len(secret) < minHMACSecret {
		return nil, nil, fmt.Errorf("jwt key %s: an HMAC secret must be at least %d bytes, not %d", path, minHMACSecret, len(secret))
	}
	return secret, nil, nil
}

// loadVerifyKey loads the key that verifies tokens and the one algorithm it allows.
func loadVerifyKey(path string) (any, jwt.SigningMethod, error) {
	secret, block, err := readKeyFile(path)
	if err != nil || block == nil {
		return secret, jwt.SigningMethodHS256, err
	}
	var pub any
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return nil, nil, fmt.Errorf("jwt key %s is a private key; give the server the public key (openssl pkey -in %s -pubout)", path, path)
	default:
		return nil, nil, fmt.Errorf("jwt key %s: PEM block %q is not a public key", path, block.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("jwt key %s: parse %s: %w", path, block.Type, err)
	}
	method, err := methodFor(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("jwt key %s: %w", path, err)
	}
	return pub, method, nil
}

// loadSignKey loads the key that signs dev tokens and the algorithm it signs with.
func loadSignKey(path string) (any, jwt.SigningMethod, error) {
	secret, block, err := readKeyFile(path)
	if err != nil || block == nil {
		return secret, jwt.SigningMethodHS256, err
	}
	var priv any
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, nil, fmt.Errorf("jwt key %s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("jwt key %s: parse %s: %w", path, block.Type, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("jwt key %s: unsupported private key type %T", path, priv)
	}
	method, err := methodFor(signer.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("jwt key %s: %w", path, err)
	}
	return priv, method, nil
}

// methodFor names the single algorithm a public key verifies.
func methodFor(pub any) (jwt.SigningMethod, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("an RSA key must have at least %d bits, not %d", minRSABits, k.N.BitLen())
		}
		return jwt.SigningMethodRS256, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("an ECDSA key must be on P-256 (ES256), not %s", k.Curve.Params().Name)
		}
		return jwt.SigningMethodES256, nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T (use RSA, ECDSA P-256 or Ed25519)", pub)
	}
}
