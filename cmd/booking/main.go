// Command booking is the booking engine: the service, its tools and its load generator.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "booking",
		Short:         "Event-sourced concert booking engine on NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newRebuildCmd(),
		newVerifyCmd(),
		newDataPlatformCmd(),
		newBenchCmd(),
		newDevTokenCmd(),
		newEventsCmd(),
	)
	// Every flag has an environment twin, BOOKING_<NAME>, read when the flag is not given.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return bindEnv(cmd.Flags()) }
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "booking:", err)
		var exit exitCode
		if ok := asExit(err, &exit); ok {
			os.Exit(int(exit))
		}
		os.Exit(1)
	}
}

// bindEnv sets every flag that was not given on the command line from BOOKING_<NAME>
// (upper case, dashes as underscores), so that containers can be configured by environment.
func bindEnv(flags *pflag.FlagSet) error {
	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "BOOKING_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := flags.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
	})
	return err
}

// exitCode is an error that asks for a specific exit status (verify exits 1 on violations).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func asExit(err error, target *exitCode) bool {
	for err != nil {
		if e, ok := err.(exitCode); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
