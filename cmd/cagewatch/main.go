// Command cagewatch is the container-escape detector's agent and CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/cagewatch/cagewatch/profiler/metrics"
)

// version is set by the Makefile (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cagewatch:", oneLine(err))
		os.Exit(1)
	}
}

// globalOptions are the flags every command takes.
type globalOptions struct {
	configFile string
	logLevel   string
	stdout     io.Writer
	stderr     io.Writer
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "cagewatch",
		Short:         "Catch container escapes with eBPF: per-image behavioural baselines and hard rules",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.configFile, "config", "", "YAML config file (overrides the embedded defaults)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newRunCommand(g), newTopCommand(g), newEventsCommand(g), newBaselineCommand(g), newSeccompCommand(g),
		newStatusCommand(g), newDemoCommand(g), newReplayCommand(g), newVersionCommand(g),
		newInUseCommand(g), newSBOMCommand(g), newVulnsCommand(g), newReportCommand(g), newFleetCommand(g))
	return root
}

// viper returns the layered configuration with the command's flags bound to keys.
func (g *globalOptions) viper(flags *pflag.FlagSet, bind map[string]string) (*viper.Viper, error) {
	v, err := newViper(g.configFile)
	if err != nil {
		return nil, err
	}
	for flag, key := range bind {
		if err := v.BindPFlag(key, flags.Lookup(flag)); err != nil {
			return nil, fmt.Errorf("binding --%s: %w", flag, err)
		}
	}
	return v, nil
}

func (g *globalOptions) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level})), nil
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			revision, goVersion := metrics.BuildInfo()
			_, err := fmt.Fprintf(g.stdout, "cagewatch %s (revision %s, %s)\n", version, revision, goVersion)
			return err
		},
	}
}

// oneLine keeps a multi-line error (a joined config error, a verifier log) to one
// line per problem without the verifier dump on the terminal.
func oneLine(err error) string {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) && len(joined.Unwrap()) > 1 {
		msg := ""
		for i, e := range joined.Unwrap() {
			if i > 0 {
				msg += "; "
			}
			msg += firstLine(e.Error())
		}
		return msg
	}
	return firstLine(err.Error())
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
