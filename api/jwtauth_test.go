package api

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtNow is the fixed time every JWT test runs at.
var jwtNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

const (
	jwtIssuer   = "https://auth.example.test"
	jwtAudience = "booking-api"
)

// jwtKeys are generated once per test binary: RSA generation is slow under -race.
type jwtKeys struct {
	secret, otherSecret []byte
	rsa, otherRSA       *rsa.PrivateKey
	ec                  *ecdsa.PrivateKey
	ed                  ed25519.PrivateKey
}

var testJWTKeys = sync.OnceValue(func() jwtKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	k := jwtKeys{secret: make([]byte, 32), otherSecret: make([]byte, 32)}
	_, err := rand.Read(k.secret)
	must(err)
	_, err = rand.Read(k.otherSecret)
	must(err)
	// The key file ends with the newline `echo` leaves, and the loader takes off one "\n" and
	// then one "\r": a random secret that ended with '\r' (1 in 256) lost its last byte and was
	// refused as 31 bytes long. A secret's own last byte is never one of them.
	k.secret[len(k.secret)-1], k.otherSecret[len(k.otherSecret)-1] = 'k', 'o'
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.otherRSA, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return k
})

// jwtKeyFiles are the key files of one test, in its own temporary directory.
type jwtKeyFiles struct {
	secret, rsaPub, ecPub, edPub string
	rsaPubPEM                    []byte
}

func writeJWTKeyFiles(t *testing.T) jwtKeyFiles {
	t.Helper()
	k := testJWTKeys()
	f := jwtKeyFiles{
		// The trailing newline is what `echo` leaves; it must not become part of the secret.
		secret: writeJWTFile(t, "hmac.secret", append(append([]byte{}, k.secret...), '\n')),
		rsaPub: writeJWTFile(t, "rsa.pub.pem", publicPEM(t, k.rsa.Public())),
		ecPub:  writeJWTFile(t, "ec.pub.pem", publicPEM(t, k.ec.Public())),
		edPub:  writeJWTFile(t, "ed.pub.pem", publicPEM(t, k.ed.Public())),
	}
	f.rsaPubPEM = publicPEM(t, k.rsa.Public())
	return f
}

func writeJWTFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// publicPEM encodes a public key as a PKIX "PUBLIC KEY" PEM block.
func publicPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// publicPEMOfPrivateFile derives the public key file that verifies tokens signed with a PEM
// private key file, as `openssl pkey -pubout` would.
func publicPEMOfPrivateFile(t *testing.T, privFile string) string {
	t.Helper()
	data, err := os.ReadFile(privFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s is not PEM", privFile)
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
		t.Fatalf("%s: unexpected PEM block %q", privFile, block.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return writeJWTFile(t, "derived.pub.pem", publicPEM(t, priv.(crypto.Signer).Public()))
}

// validClaims are the claims of a token that is valid at jwtNow.
func validClaims(sub string) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{
		Subject:   sub,
		Issuer:    jwtIssuer,
		Audience:  jwt.ClaimStrings{jwtAudience},
		IssuedAt:  jwt.NewNumericDate(jwtNow.Add(-time.Minute)),
		NotBefore: jwt.NewNumericDate(jwtNow.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(jwtNow.Add(10 * time.Minute)),
	}
}

func signJWT(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTAuthenticate(t *testing.T) {
	k := testJWTKeys()
	files := writeJWTKeyFiles(t)
	with := func(change func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := validClaims("u1")
		change(&c)
		return c
	}
	hs := func(c jwt.RegisteredClaims) string {
		return "Bearer " + signJWT(t, jwt.SigningMethodHS256, k.secret, c)
	}
	rs := func(c jwt.RegisteredClaims) string { return "Bearer " + signJWT(t, jwt.SigningMethodRS256, k.rsa, c) }
	valid := validClaims("u1")

	tests := []struct {
		name          string
		keyFile       string
		noIssuer      bool // the server has no --user-jwt-issuer / --user-jwt-audience
		leeway        time.Duration
		authorization string
		wantSub       string
		wantReason    string // part of the error of a rejected token
	}{
		{name: "a valid HS256 token is accepted with the secret file", keyFile: files.secret, authorization: hs(valid), wantSub: "u1"},
		{name: "a valid RS256 token is accepted with the RSA public key", keyFile: files.rsaPub, authorization: rs(valid), wantSub: "u1"},
		{name: "a valid ES256 token is accepted with the ECDSA public key", keyFile: files.ecPub,
			authorization: "Bearer " + signJWT(t, jwt.SigningMethodES256, k.ec, validClaims("user_2-B")), wantSub: "user_2-B"},
		{name: "a valid EdDSA token is accepted with the Ed25519 public key", keyFile: files.edPub,
			authorization: "Bearer " + signJWT(t, jwt.SigningMethodEdDSA, k.ed, validClaims("u3")), wantSub: "u3"},
		{name: "the Bearer scheme is case-insensitive", keyFile: files.secret, authorization: "bEaReR " + strings.TrimPrefix(hs(valid), "Bearer "), wantSub: "u1"},
		{name: "any issuer and audience are accepted when none is configured", keyFile: files.secret, noIssuer: true,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.Issuer, c.Audience = "elsewhere", nil })), wantSub: "u1"},
		{name: "a token that expired within the leeway is accepted", keyFile: files.secret, leeway: time.Minute,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(jwtNow.Add(-30 * time.Second)) })), wantSub: "u1"},

		{name: "an expired token is rejected", keyFile: files.secret,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(jwtNow.Add(-time.Second)) })), wantReason: "expired"},
		{name: "a token whose exp is now is rejected", keyFile: files.rsaPub,
			authorization: rs(with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(jwtNow) })), wantReason: "expired"},
		{name: "a token without exp is rejected", keyFile: files.secret,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), wantReason: "no exp"},
		{name: "a token whose nbf is in the future is rejected", keyFile: files.secret,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(jwtNow.Add(time.Minute)) })), wantReason: "not valid yet"},
		{name: "a token issued in the future is rejected", keyFile: files.secret,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.IssuedAt = jwt.NewNumericDate(jwtNow.Add(time.Minute)) })), wantReason: "issued in the future"},
		{name: "a token signed with another secret is rejected", keyFile: files.secret,
			authorization: "Bearer " + signJWT(t, jwt.SigningMethodHS256, k.otherSecret, valid), wantReason: "signature"},
		{name: "a token signed with another RSA key is rejected", keyFile: files.rsaPub,
			authorization: "Bearer " + signJWT(t, jwt.SigningMethodRS256, k.otherRSA, valid), wantReason: "signature"},
		{name: "a token with a wrong issuer is rejected", keyFile: files.secret,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.Issuer = "https://evil.example.test" })), wantReason: "issuer"},
		{name: "a token without an issuer is rejected when one is configured", keyFile: files.secret,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.Issuer = "" })), wantReason: "no iss"},
		{name: "a token without an audience is rejected when one is configured", keyFile: files.secret,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.Audience = nil })), wantReason: "no aud"},
		{name: "a token with a wrong audience is rejected", keyFile: files.secret,
			authorization: hs(with(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"another-api"} })), wantReason: "audience"},
		{name: "an unsigned alg none token is rejected", keyFile: files.secret,
			authorization: "Bearer " + signJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid), wantReason: "signature or algorithm"},
		{name: "an HS256 token keyed with the RSA public key's bytes is rejected", keyFile: files.rsaPub,
			authorization: "Bearer " + signJWT(t, jwt.SigningMethodHS256, files.rsaPubPEM, valid), wantReason: "signature or algorithm"},
		{name: "an RS256 token is rejected by an HMAC secret", keyFile: files.secret, authorization: rs(valid), wantReason: "signature or algorithm"},
		{name: "an ES256 token is rejected by an Ed25519 key", keyFile: files.edPub,
			authorization: "Bearer " + signJWT(t, jwt.SigningMethodES256, k.ec, valid), wantReason: "signature or algorithm"},
		{name: "a token without sub is rejected", keyFile: files.secret, authorization: hs(validClaims("")), wantReason: "no sub"},
		{name: "a token whose sub is not a valid userId is rejected", keyFile: files.secret, authorization: hs(validClaims("u1/../admin")), wantReason: "not a valid userId"},
		{name: "a token whose sub is too long is rejected", keyFile: files.secret, authorization: hs(validClaims(strings.Repeat("u", 65))), wantReason: "not a valid userId"},
		{name: "a token without the Bearer scheme is rejected", keyFile: files.secret,
			authorization: strings.TrimPrefix(hs(valid), "Bearer "), wantReason: "Bearer"},
		{name: "a token under another scheme is rejected", keyFile: files.secret,
			authorization: "Basic " + strings.TrimPrefix(hs(valid), "Bearer "), wantReason: "Bearer"},
		{name: "an empty header is rejected", keyFile: files.secret, authorization: "", wantReason: "Bearer"},
		{name: "a bare Bearer scheme is rejected", keyFile: files.secret, authorization: "Bearer ", wantReason: "Bearer"},
		{name: "garbage is rejected", keyFile: files.secret, authorization: "Bearer not-a-jwt", wantReason: "malformed"},
		{name: "a token with a tampered payload is rejected", keyFile: files.secret, authorization: tamper(t, hs(valid)), wantReason: "signature"},
		{name: "a huge token is rejected before parsing", keyFile: files.secret, authorization: "Bearer " + strings.Repeat("a", maxJWTLen+1), wantReason: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := JWTOptions{KeyFile: tt.keyFile, Issuer: jwtIssuer, Audience: jwtAudience, Leeway: tt.leeway, Clock: func() time.Time { return jwtNow }}
			if tt.noIssuer {
				o.Issuer, o.Audience = "", ""
			}
			auth, err := NewJWTAuthenticator(o)
			if err != nil {
				t.Fatal(err)
			}
			sub, err := auth.Authenticate(tt.authorization)
			if tt.wantReason == "" {
				if err != nil || sub != tt.wantSub {
					t.Fatalf("Authenticate = %q, %v; want %q", sub, err, tt.wantSub)
				}
				return
			}
			if !errors.Is(err, ErrUnauthenticated) || sub != "" {
				t.Fatalf("Authenticate = %q, %v; want an ErrUnauthenticated", sub, err)
			}
			if !strings.Contains(err.Error(), tt.wantReason) {
				t.Errorf("error %q does not say %q", err, tt.wantReason)
			}
		})
	}
}

// tamper changes the sub of a signed token without signing it again.
func tamper(t *testing.T, authorization string) string {
	t.Helper()
	parts := strings.Split(authorization, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", authorization)
	}
	other := strings.Split(strings.TrimPrefix(signJWT(t, jwt.SigningMethodHS256, []byte("x"), validClaims("u2")), "Bearer "), ".")
	return parts[0] + "." + other[1] + "." + parts[2]
}

func TestJWTAuthenticatorUsesTheClock(t *testing.T) {
	k := testJWTKeys()
	files := writeJWTKeyFiles(t)
	now := jwtNow
	auth, err := NewJWTAuthenticator(JWTOptions{KeyFile: files.edPub, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	token := "Bearer " + signJWT(t, jwt.SigningMethodEdDSA, k.ed, validClaims("u1"))
	if _, err := auth.Authenticate(token); err != nil {
		t.Fatalf("at issue time: %v", err)
	}
	now = jwtNow.Add(11 * time.Minute)
	if _, err := auth.Authenticate(token); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after exp: err = %v, want ErrUnauthenticated", err)
	}
}

func TestJWTAuthenticatorServesConcurrentRequests(t *testing.T) {
	k := testJWTKeys()
	files := writeJWTKeyFiles(t)
	auth, err := NewJWTAuthenticator(JWTOptions{KeyFile: files.ecPub, Clock: func() time.Time { return jwtNow }})
	if err != nil {
		t.Fatal(err)
	}
	good := "Bearer " + signJWT(t, jwt.SigningMethodES256, k.ec, validClaims("u1"))
	bad := "Bearer " + signJWT(t, jwt.SigningMethodHS256, k.secret, validClaims("u1"))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				sub, err := auth.Authenticate(good)
				if err != nil || sub != "u1" {
					errs <- errors.Join(errors.New("good token refused"), err)
					return
				}
				if _, err := auth.Authenticate(bad); !errors.Is(err, ErrUnauthenticated) {
					errs <- errors.Join(errors.New("bad token accepted"), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewJWTAuthenticatorRejectsUnusableKeys(t *testing.T) {
	k := testJWTKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k.ed)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		keyFile func(t *testing.T) string
		want    string
	}{
		{"an empty key file name is refused", func(*testing.T) string { return "" }, "no jwt key file"},
		{"a missing key file is refused", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "read jwt key"},
		{"an HMAC secret shorter than 32 bytes is refused", func(t *testing.T) string { return writeJWTFile(t, "s", []byte("secret\n")) }, "at least 32 bytes"},
		{"an empty secret file is refused", func(t *testing.T) string { return writeJWTFile(t, "s", nil) }, "at least 32 bytes"},
		{"a truncated PEM file is refused", func(t *testing.T) string {
			return writeJWTFile(t, "k.pem", []byte("-----BEGIN PUBLIC KEY-----\nMIIB\n"))
		}, "no key in this PEM file"},
		{"a PEM block that is not a key is refused", func(t *testing.T) string {
			return writeJWTFile(t, "k.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}))
		}, "parse PUBLIC KEY"},
		{"a private key is refused with a hint", func(t *testing.T) string {
			return writeJWTFile(t, "k.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
		}, "-pubout"},
		{"an RSA key below 2048 bits is refused", func(t *testing.T) string { return writeJWTFile(t, "k.pem", publicPEM(t, small.Public())) }, "at least 2048 bits"},
		{"an ECDSA key off P-256 is refused", func(t *testing.T) string { return writeJWTFile(t, "k.pem", publicPEM(t, p384.Public())) }, "P-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := NewJWTAuthenticator(JWTOptions{KeyFile: tt.keyFile(t)})
			if err == nil || auth != nil {
				t.Fatalf("NewJWTAuthenticator = %v, %v; want an error", auth, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestJWTDevTokenIsAcceptedByTheMatchingKey(t *testing.T) {
	k := testJWTKeys()
	files := writeJWTKeyFiles(t)
	privFile := func(t *testing.T, typ string, der []byte, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return writeJWTFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	pkcs8 := func(key any) ([]byte, error) { return x509.MarshalPKCS8PrivateKey(key) }
	tests := []struct {
		name    string
		signKey func(t *testing.T) string
		// verifyKey is the server's key file; "" derives the public key from signKey.
		verifyKey string
		wantAlg   string
	}{
		{name: "an HMAC secret file mints HS256", signKey: func(*testing.T) string { return files.secret }, verifyKey: files.secret, wantAlg: "HS256"},
		{name: "a PKCS#8 RSA key mints RS256", signKey: func(t *testing.T) string { d, err := pkcs8(k.rsa); return privFile(t, "PRIVATE KEY", d, err) }, wantAlg: "RS256"},
		{name: "a PKCS#1 RSA key mints RS256", signKey: func(t *testing.T) string {
			return privFile(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa), nil)
		}, wantAlg: "RS256"},
		{name: "a PKCS#8 ECDSA key mints ES256", signKey: func(t *testing.T) string { d, err := pkcs8(k.ec); return privFile(t, "PRIVATE KEY", d, err) }, wantAlg: "ES256"},
		{name: "a SEC1 ECDSA key mints ES256", signKey: func(t *testing.T) string {
			d, err := x509.MarshalECPrivateKey(k.ec)
			return privFile(t, "EC PRIVATE KEY", d, err)
		}, wantAlg: "ES256"},
		{name: "a SEC1 ECDSA key after its EC PARAMETERS mints ES256", signKey: func(t *testing.T) string {
			d, err := x509.MarshalECPrivateKey(k.ec)
			if err != nil {
				t.Fatal(err)
			}
			params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
			return writeJWTFile(t, "key.pem", append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: d})...))
		}, verifyKey: files.ecPub, wantAlg: "ES256"},
		{name: "a PKCS#8 Ed25519 key mints EdDSA", signKey: func(t *testing.T) string { d, err := pkcs8(k.ed); return privFile(t, "PRIVATE KEY", d, err) }, wantAlg: "EdDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signKey := tt.signKey(t)
			verifyKey := tt.verifyKey
			if verifyKey == "" {
				verifyKey = publicPEMOfPrivateFile(t, signKey)
			}
			token, err := MintDevToken(signKey, "u7", time.Hour, jwtIssuer, jwtAudience, jwtNow)
			if err != nil {
				t.Fatal(err)
			}
			parsed, _, err := jwt.NewParser().ParseUnverified(token, &jwt.RegisteredClaims{})
			if err != nil {
				t.Fatal(err)
			}
			if alg := parsed.Method.Alg(); alg != tt.wantAlg {
				t.Errorf("alg = %s, want %s", alg, tt.wantAlg)
			}
			at := func(now time.Time) UserAuthenticator {
				auth, err := NewJWTAuthenticator(JWTOptions{KeyFile: verifyKey, Issuer: jwtIssuer, Audience: jwtAudience, Clock: func() time.Time { return now }})
				if err != nil {
					t.Fatal(err)
				}
				return auth
			}
			if sub, err := at(jwtNow).Authenticate("Bearer " + token); err != nil || sub != "u7" {
				t.Fatalf("at mint time: Authenticate = %q, %v; want u7", sub, err)
			}
			if _, err := at(jwtNow.Add(time.Hour)).Authenticate("Bearer " + token); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("after the ttl: err = %v, want ErrUnauthenticated", err)
			}
			if _, err := at(jwtNow.Add(-time.Second)).Authenticate("Bearer " + token); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("before mint time: err = %v, want ErrUnauthenticated", err)
			}
		})
	}
}

func TestJWTDevTokenRefusesBadInput(t *testing.T) {
	files := writeJWTKeyFiles(t)
	tests := []struct {
		name    string
		keyFile string
		user    string
		ttl     time.Duration
		want    string
	}{
		{"an invalid userId is refused", files.secret, "u 1", time.Hour, "not a valid userId"},
		{"an empty userId is refused", files.secret, "", time.Hour, "not a valid userId"},
		{"a zero ttl is refused", files.secret, "u1", 0, "must be positive"},
		{"a public key cannot sign", files.rsaPub, "u1", time.Hour, "not a private key"},
		{"a missing key file is refused", filepath.Join(t.TempDir(), "nope"), "u1", time.Hour, "read jwt key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := MintDevToken(tt.keyFile, tt.user, tt.ttl, "", "", jwtNow)
			if err == nil || token != "" {
				t.Fatalf("MintDevToken = %q, %v; want an error", token, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}
