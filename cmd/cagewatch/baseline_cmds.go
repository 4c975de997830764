package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/store"
)

// services talk to the running agent when there is one, and otherwise open
// the store file themselves (bbolt allows one process at a time).
func (g *globalOptions) services(cmd *cobra.Command) (control.Service, control.ImageService, func(), error) {
	v, err := g.viper(cmd.Flags(), map[string]string{"store": keyStore})
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := loadConfig(v)
	if err != nil {
		return nil, nil, nil, err
	}
	socket := control.SocketPath(cfg.Store)
	if c, err := control.Dial(socket); err == nil {
		return c, c, func() {}, nil
	}
	st, err := store.Open(cfg.Store, 500*time.Millisecond)
	if errors.Is(err, store.ErrLocked) {
		// An agent holds the file; it may be starting and not serving yet.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if c, err := control.Dial(socket); err == nil {
				return c, c, func() {}, nil
			}
		}
		return nil, nil, nil, fmt.Errorf("%w, but its control socket %s does not answer", err, socket)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	lib, err := profiler.NewLibrary(st, cfg.Learning, cfg.Mode, false)
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	images, err := profiler.NewImageRecords(st, lib, nil)
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	return profiler.Control{Library: lib, Images: images}, images, func() { st.Close() }, nil
}

// withService runs fn with a baseline service and closes it afterwards.
func (g *globalOptions) withService(fn func(cmd *cobra.Command, args []string, svc control.Service) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		svc, _, done, err := g.services(cmd)
		if err != nil {
			return err
		}
		defer done()
		return fn(cmd, args, svc)
	}
}

// withServices runs fn with both services and closes them afterwards.
func (g *globalOptions) withServices(fn func(cmd *cobra.Command, args []string, svc control.Service, images control.ImageService) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		svc, images, done, err := g.services(cmd)
		if err != nil {
			return err
		}
		defer done()
		return fn(cmd, args, svc, images)
	}
}

// withImages runs fn with an image service and closes it afterwards.
func (g *globalOptions) withImages(fn func(cmd *cobra.Command, args []string, svc control.ImageService) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		_, images, done, err := g.services(cmd)
		if err != nil {
			return err
		}
		defer done()
		return fn(cmd, args, images)
	}
}

func addStoreFlag(cmd *cobra.Command) {
	cmd.Flags().String("store", "", "bbolt file for baselines (config key store)")
}

func newBaselineCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "baseline", Short: "List, show, export, import, merge, diff, promote and reset per-image baselines"}
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List baselines", Args: cobra.NoArgs,
		RunE: g.withService(func(cmd *cobra.Command, _ []string, svc control.Service) error {
			bs, err := svc.List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, summaries(bs))
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "IMAGE\tSTATE\tWINDOWS\tCONTAINERS\tSYSCALLS\tBINARIES\tUPDATED")
			for _, s := range summaries(bs) {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", s.Image, s.State, s.Windows, s.Containers, s.Syscalls, s.Binaries, s.Updated.Format(time.RFC3339))
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var top int
	show := &cobra.Command{
		Use: "show IMAGE", Short: "Show a baseline's syscalls with mean rate and spread, and its most frequent pairs", Args: cobra.ExactArgs(1),
		RunE: g.withService(func(cmd *cobra.Command, args []string, svc control.Service) error {
			b, err := svc.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, shownBaseline{Baseline: b, TopPairs: model.TopPairs(b.Order.Grams, showPairs)})
			}
			return printBaseline(g.stdout, b, top)
		}),
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the whole baseline as JSON, with top_pairs")
	show.Flags().IntVar(&top, "top", 25, "syscalls to list")

	var output string
	export := &cobra.Command{
		Use: "export [IMAGE...]", Short: "Export baselines (all when no image is named) and their images' inventories to the versioned JSON format",
		RunE: g.withServices(func(cmd *cobra.Command, args []string, svc control.Service, images control.ImageService) error {
			var bs []*model.Baseline
			if len(args) == 0 {
				all, err := svc.List(cmd.Context())
				if err != nil {
					return err
				}
				bs = all
			}
			for _, key := range args {
				b, err := svc.Get(cmd.Context(), key)
				if err != nil {
					return err
				}
				bs = append(bs, b)
			}
			invs, err := inventoriesOf(cmd.Context(), images, bs)
			if err != nil {
				return err
			}
			return writeOutput(output, g.stdout, func(w io.Writer) error {
				return store.ExportFile(w, store.File{Baselines: bs, Inventories: invs}, time.Now())
			})
		}),
	}
	export.Flags().StringVarP(&output, "output", "o", "-", "file to write (- for stdout)")

	var merge bool
	imp := &cobra.Command{
		Use: "import FILE", Short: "Import baselines: all or nothing; --merge folds them into existing ones", Args: cobra.ExactArgs(1),
		RunE: g.withServices(func(cmd *cobra.Command, args []string, svc control.Service, images control.ImageService) error {
			f, err := readExportFile(args[0])
			if err != nil {
				return err
			}
			if err := svc.Import(cmd.Context(), f.Baselines, merge); err != nil {
				return fmt.Errorf("importing %s: %w", args[0], err)
			}
			// Inventories always merge: what ran on another node ran.
			if len(f.Inventories) == 0 {
				fmt.Fprintf(g.stdout, "imported %d baselines from %s\n", len(f.Baselines), args[0])
				return nil
			}
			if err := images.ImportInventories(cmd.Context(), f.Inventories); err != nil {
				return fmt.Errorf("importing %s: inventories: %w", args[0], err)
			}
			fmt.Fprintf(g.stdout, "imported %d baselines and %d inventories from %s\n", len(f.Baselines), len(f.Inventories), args[0])
			return nil
		}),
	}
	imp.Flags().BoolVar(&merge, "merge", false, "merge into existing baselines instead of replacing them")

	mergeCmd := &cobra.Command{
		Use: "merge FILE FILE... -o OUT", Short: "Merge baseline files offline (e.g. from many nodes)", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			merged, err := mergeFiles(args)
			if err != nil {
				return err
			}
			return writeOutput(output, g.stdout, func(w io.Writer) error { return store.ExportFile(w, merged, time.Now()) })
		},
	}
	mergeCmd.Flags().StringVarP(&output, "output", "o", "-", "file to write (- for stdout)")

	diff := &cobra.Command{
		Use: "diff A.json B.json", Short: "What changed between two baselines: syscalls, binaries, rates, pairs", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			diffs, err := diffFiles(args[0], args[1], top)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, diffs)
			}
			for _, d := range diffs {
				printDiff(g.stdout, d)
			}
			return nil
		},
	}
	diff.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	diff.Flags().IntVar(&top, "top", 10, "rate changes to list")

	promote := &cobra.Command{
		Use: "promote IMAGE", Short: "Mark a baseline stable now", Args: cobra.ExactArgs(1),
		RunE: g.withService(func(cmd *cobra.Command, args []string, svc control.Service) error {
			if err := svc.Promote(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s is stable\n", args[0])
			return nil
		}),
	}
	reset := &cobra.Command{
		Use: "reset IMAGE", Short: "Forget a baseline: the image learns again from nothing", Args: cobra.ExactArgs(1),
		RunE: g.withService(func(cmd *cobra.Command, args []string, svc control.Service) error {
			if err := svc.Reset(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s reset\n", args[0])
			return nil
		}),
	}
	for _, c := range []*cobra.Command{list, show, export, imp, promote, reset} {
		addStoreFlag(c)
	}
	cmd.AddCommand(list, show, export, imp, mergeCmd, diff, promote, reset)
	return cmd
}

func newSeccompCommand(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: "seccomp IMAGE", Short: "Write an OCI seccomp profile allowing only the image's learned syscalls", Args: cobra.ExactArgs(1),
		RunE: g.withService(func(cmd *cobra.Command, args []string, svc control.Service) error {
			b, err := svc.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeOutput(output, g.stdout, func(w io.Writer) error { return writeJSON(w, b.Seccomp()) })
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "-", "file to write (- for stdout)")
	addStoreFlag(cmd)
	return cmd
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var asJSON, requireAgent bool
	cmd := &cobra.Command{
		Use: "status", Short: "Learning state and progress of every image", Args: cobra.NoArgs,
		RunE: g.withService(func(cmd *cobra.Command, _ []string, svc control.Service) error {
			st, err := svc.Status(cmd.Context())
			if err != nil {
				return err
			}
			if requireAgent && !st.AgentRunning {
				return errors.New("no agent answers on the store's control socket (the status was read from the store file)")
			}
			if asJSON {
				return writeJSON(g.stdout, st)
			}
			if st.AgentRunning {
				fmt.Fprintf(g.stdout, "agent: running, mode %s, baselines per %s\n", st.Mode, st.Key)
			} else {
				fmt.Fprintf(g.stdout, "agent: not running (read from the store), baselines per %s\n", st.Key)
			}
			if len(st.Images) == 0 {
				fmt.Fprintln(g.stdout, "no baselines yet")
			}
			for _, im := range st.Images {
				fmt.Fprintf(g.stdout, "%s: %s", im.Image, im.State)
				if im.ImageRef != "" {
					fmt.Fprintf(g.stdout, " (image %s)", im.ImageRef)
				}
				if im.State == model.StateLearning {
					fmt.Fprintf(g.stdout, " — %s", im.Progress)
				} else {
					fmt.Fprintf(g.stdout, " — %d windows from %d containers", im.Progress.Windows, im.Progress.Containers)
				}
				if cf := im.CarriedFrom; cf != nil {
					fmt.Fprintf(g.stdout, "; carried from %s (%d windows, %s)", cf.Profile, cf.Windows, cmp.Or(cf.Outcome, "judged after its first block"))
				}
				if im.Vulns != nil {
					fmt.Fprintf(g.stdout, "; vulnerabilities in use %s of %s", severityCounts(im.VulnsInUse), severityCounts(im.Vulns))
				}
				if im.Fleet != nil {
					fmt.Fprintf(g.stdout, "; fleet %s, %d nodes, %d windows", im.Fleet.State, im.Fleet.Nodes, im.Fleet.Windows)
				}
				fmt.Fprintln(g.stdout)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&requireAgent, "require-agent", false, "fail unless a running agent answers (a liveness probe)")
	addStoreFlag(cmd)
	return cmd
}

// baselineSummary is one row of `baseline list`.
type baselineSummary struct {
	Image      string              `json:"image"`
	State      model.BaselineState `json:"state"`
	Windows    uint64              `json:"windows"`
	Containers int                 `json:"containers"`
	Syscalls   int                 `json:"syscalls"`
	Binaries   int                 `json:"binaries"`
	Updated    time.Time           `json:"updated"`
}

func summaries(bs []*model.Baseline) []baselineSummary {
	out := make([]baselineSummary, 0, len(bs))
	for _, b := range bs {
		out = append(out, baselineSummary{Image: b.Key(), State: b.State, Windows: b.Windows, Containers: len(b.Containers),
			Syscalls: len(b.Syscalls), Binaries: len(b.Binaries), Updated: b.Updated})
	}
	return out
}

// showPairs is how many of its most frequent pairs `baseline show` lists.
const showPairs = 10

// shownBaseline is `baseline show --json`: the whole baseline, as before, with
// its most frequent pairs beside its fields.
type shownBaseline struct {
	*model.Baseline
	TopPairs []model.PairCount `json:"top_pairs"`
}

func printBaseline(w io.Writer, b *model.Baseline, top int) error {
	fmt.Fprintf(w, "image:      %s\nstate:      %s\nwindows:    %d (%.0f s) from %d containers\nseen:       %s .. %s\nbinaries:   %s\n",
		b.Key(), b.State, b.Windows, b.Seconds, len(b.Containers), b.FirstSeen.Format(time.RFC3339), b.LastSeen.Format(time.RFC3339),
		strings.Join(sortedKeys(b.Binaries), " "))
	fmt.Fprintf(w, "views:      composition over %d windows, order over %d windows (%d distinct pairs)\n\n",
		b.Composition.Windows, b.Order.Windows, len(model.PairCounts(b.Order.Grams)))
	names := sortedKeys(b.Syscalls)
	slices.SortFunc(names, func(x, y string) int {
		mx, _ := b.SyscallStats(x)
		my, _ := b.SyscallStats(y)
		return cmp.Or(cmp.Compare(my, mx), strings.Compare(x, y))
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SYSCALL\tMEAN/s\tSTDDEV\tMAX/s\tIN WINDOWS\t")
	for _, name := range names[:min(top, len(names))] {
		mean, std := b.SyscallStats(name)
		m := b.Syscalls[name]
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.0f%%\t\n", name, mean, std, m.Max, 100*float64(m.N)/float64(max(b.Windows, 1)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	pairs := model.TopPairs(b.Order.Grams, showPairs)
	if len(pairs) == 0 {
		if b.Order.Windows == 0 {
			fmt.Fprintln(w, "\nno order learned yet (a baseline from before the order view learns it from its next windows)")
		}
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PAIR\tCOUNT\t")
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s\t%d\t\n", p.Pair, p.Count)
	}
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func readBaselineFile(path string) ([]*model.Baseline, error) {
	f, err := readExportFile(path)
	return f.Baselines, err
}

func readExportFile(path string) (store.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return store.File{}, err
	}
	defer f.Close()
	file, err := store.ImportFile(f)
	if err != nil {
		return store.File{}, fmt.Errorf("%s: %w", path, err)
	}
	return file, nil
}

// mergeFiles merges every file's baselines by key and inventories by image.
func mergeFiles(paths []string) (store.File, error) {
	byKey := map[string]*model.Baseline{}
	invs := map[string]*model.Inventory{}
	var order, invOrder []string
	for _, p := range paths {
		f, err := readExportFile(p)
		if err != nil {
			return store.File{}, err
		}
		for _, b := range f.Baselines {
			if prev, ok := byKey[b.Key()]; ok {
				if err := prev.Merge(b, 0); err != nil {
					return store.File{}, fmt.Errorf("%s: %w", p, err)
				}
				continue
			}
			byKey[b.Key()] = b
			order = append(order, b.Key())
		}
		for _, inv := range f.Inventories {
			if prev, ok := invs[inv.Ref()]; ok {
				if err := prev.Merge(inv); err != nil {
					return store.File{}, fmt.Errorf("%s: %w", p, err)
				}
				continue
			}
			invs[inv.Ref()] = inv
			invOrder = append(invOrder, inv.Ref())
		}
	}
	var out store.File
	for _, k := range order {
		out.Baselines = append(out.Baselines, byKey[k])
	}
	for _, k := range invOrder {
		out.Inventories = append(out.Inventories, invs[k])
	}
	return out, nil
}

// inventoriesOf fetches the inventories of the baselines' images, skipping
// images that have none.
func inventoriesOf(ctx context.Context, images control.ImageService, bs []*model.Baseline) ([]*model.Inventory, error) {
	var out []*model.Inventory
	seen := map[string]bool{}
	for _, b := range bs {
		ref := model.ImageRef(b.Image, b.Tag)
		if seen[ref] {
			continue
		}
		seen[ref] = true
		inv, err := images.Inventory(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

// diffFiles pairs baselines by image; two single-baseline files are compared
// whatever their images (two tags of one image, the common case).
func diffFiles(pathA, pathB string, top int) ([]model.BaselineDiff, error) {
	as, err := readBaselineFile(pathA)
	if err != nil {
		return nil, err
	}
	bs, err := readBaselineFile(pathB)
	if err != nil {
		return nil, err
	}
	if len(as) == 1 && len(bs) == 1 {
		return []model.BaselineDiff{model.Diff(as[0], bs[0], top)}, nil
	}
	byKey := map[string]*model.Baseline{}
	for _, b := range bs {
		byKey[b.Key()] = b
	}
	var out []model.BaselineDiff
	for _, a := range as {
		if b, ok := byKey[a.Key()]; ok {
			out = append(out, model.Diff(a, b, top))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s and %s have no image in common", pathA, pathB)
	}
	return out, nil
}

func printDiff(w io.Writer, d model.BaselineDiff) {
	fmt.Fprintf(w, "%s -> %s\n", d.A, d.B)
	line := func(label string, items []string) {
		if len(items) > 0 {
			fmt.Fprintf(w, "  %-18s %s\n", label, strings.Join(items, " "))
		}
	}
	line("syscalls added:", d.SyscallsAdded)
	line("syscalls removed:", d.SyscallsRemoved)
	line("binaries added:", d.BinariesAdded)
	line("binaries removed:", d.BinariesRemoved)
	if len(d.RateChanges) > 0 {
		fmt.Fprintln(w, "  rates that moved most (mean/s):")
		for _, r := range d.RateChanges {
			fmt.Fprintf(w, "    %-20s %10.2f -> %-10.2f (%.1f sd)\n", r.Syscall, r.MeanA, r.MeanB, r.Shift)
		}
	}
	if !d.PairsCompared {
		fmt.Fprintln(w, "  pairs:             not compared: a baseline has learned no order yet")
		return
	}
	pairs := func(label string, ps []model.PairCount, total int, in string) {
		if total == 0 {
			return
		}
		fmt.Fprintf(w, "  %-18s %d", label, total)
		if total > len(ps) {
			fmt.Fprintf(w, " (the %d most frequent in %s)", len(ps), in)
		}
		fmt.Fprintln(w)
		for _, p := range ps {
			fmt.Fprintf(w, "    %-30s %10d\n", p.Pair, p.Count)
		}
	}
	pairs("pairs added:", d.PairsAdded, d.PairsAddedTotal, d.B)
	pairs("pairs removed:", d.PairsRemoved, d.PairsRemovedTotal, d.A)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeOutput writes to stdout for "-", else to a temporary file renamed into
// place, so a failed write never leaves half a file behind.
func writeOutput(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" || path == "" {
		return write(stdout)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
