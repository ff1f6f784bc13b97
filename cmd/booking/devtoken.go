package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the owner of this subcommand.
func newDevTokenCmd() *cobra.Command {
	return &cobra.Command{Use: "devtoken", Short: "not built yet", RunE: func(*cobra.Command, []string) error { return errors.New("devtoken: not built yet") }}
}
