package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cagewatch/cagewatch/profiler/control"
)

func newFleetCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "fleet", Short: "Fleet baselines through etcd (docs/fleet.md)"}
	cmd.AddCommand(newFleetStatusCommand(g))
	return cmd
}

func newFleetStatusCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "status", Short: "This node's etcd link, last publish, and each image's nodes and windows", Args: cobra.NoArgs,
		RunE: g.withService(func(cmd *cobra.Command, _ []string, svc control.Service) error {
			st, err := svc.Status(cmd.Context())
			if err != nil {
				return err
			}
			// Only a running agent talks to etcd; the store file knows no fleet.
			if !st.AgentRunning {
				return errors.New("no agent answers on the store's control socket: fleet status comes from a running agent")
			}
			if st.Fleet == nil {
				return errors.New("the agent runs single-node: fleet.etcd.endpoints is empty")
			}
			if asJSON {
				return writeJSON(g.stdout, fleetStatusJSON{FleetStatus: *st.Fleet, Images: st.Images})
			}
			f := st.Fleet
			connected := "connected"
			if !f.Connected {
				connected = "not connected (learning and scoring on local baselines)"
			}
			fmt.Fprintf(g.stdout, "node %s, etcd %s: %s\n", f.Node, strings.Join(f.Endpoints, ","), connected)
			if f.Nodes != nil {
				fmt.Fprintf(g.stdout, "nodes: %d published, %d alive", *f.Nodes, *f.AliveNodes)
				if f.StaleCount > 0 {
					fmt.Fprintf(g.stdout, ", %d stale (lease lapsed; their learning still counts): %s", f.StaleCount, strings.Join(f.StaleNodes, ", "))
				}
				fmt.Fprintln(g.stdout)
			}
			if f.LastPublish.IsZero() {
				fmt.Fprintln(g.stdout, "last publish: never")
			} else {
				fmt.Fprintf(g.stdout, "last publish: %s (%s ago)\n", f.LastPublish.UTC().Format(time.RFC3339), time.Since(f.LastPublish).Round(time.Second))
			}
			for _, im := range st.Images {
				if im.Fleet == nil {
					continue
				}
				fmt.Fprintf(g.stdout, "%s: %s, %d nodes, %d windows in the fleet, %d here not yet published\n",
					im.Image, im.Fleet.State, im.Fleet.Nodes, im.Fleet.Windows, im.Fleet.PendingWindows)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addStoreFlag(cmd)
	return cmd
}

// fleetStatusJSON is `fleet status --json`: the link, then the images.
type fleetStatusJSON struct {
	control.FleetStatus
	Images []control.ImageStatus `json:"images"`
}
