package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the owner of this subcommand.
func newBenchCmd() *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "not built yet", RunE: func(*cobra.Command, []string) error { return errors.New("bench: not built yet") }}
}
