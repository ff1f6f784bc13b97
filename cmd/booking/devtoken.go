package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-engine/booking/api"
)

// newDevTokenCmd builds `booking dev-token`, which mints a user JWT for local use with
// --user-auth jwt. Only the token goes to stdout, so that `$(booking dev-token ...)` works.
func newDevTokenCmd() *cobra.Command {
	var (
		user, key, issuer, audience string
		ttl                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dev-token",
		Short: "Mint a short-lived user JWT for local use with --user-auth jwt",
		Long: "Mint a short-lived user JWT for local use with --user-auth jwt.\n\n" +
			"--key is the HMAC secret file the server is given (HS256), or the PEM private key\n" +
			"(PKCS#8, PKCS#1 or SEC1) whose public key the server is given: RSA (RS256),\n" +
			"ECDSA P-256 (ES256) or Ed25519 (EdDSA).",
		Example: "  curl -H \"Authorization: Bearer $(booking dev-token --user u1 --key jwt.secret)\" ...",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := api.MintDevToken(key, user, ttl, issuer, audience, time.Now())
			if err != nil {
				return fmt.Errorf("dev-token: %w", err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), token)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&user, "user", "", "the userId the token names (its sub)")
	fs.StringVar(&key, "key", "", "HMAC secret file or PEM private key to sign with")
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	fs.StringVar(&issuer, "issuer", "", "the token's iss (match --user-jwt-issuer)")
	fs.StringVar(&audience, "audience", "", "the token's aud (match --user-jwt-audience)")
	_ = cmd.MarkFlagRequired("user")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}
