package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the owner of this subcommand.
func newRebuildCmd() *cobra.Command {
	return &cobra.Command{Use: "rebuild", Short: "not built yet", RunE: func(*cobra.Command, []string) error { return errors.New("rebuild: not built yet") }}
}
