package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the owner of this subcommand.
func newDataPlatformCmd() *cobra.Command {
	return &cobra.Command{Use: "dataplatform", Short: "not built yet", RunE: func(*cobra.Command, []string) error { return errors.New("dataplatform: not built yet") }}
}
