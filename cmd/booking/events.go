package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the owner of this subcommand.
func newEventsCmd() *cobra.Command {
	return &cobra.Command{Use: "events", Short: "not built yet", RunE: func(*cobra.Command, []string) error { return errors.New("events: not built yet") }}
}
