package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/inventory"
)

// maxDocumentBytes bounds an SBOM or scanner report read from a file.
const maxDocumentBytes = 256 << 20

func readDocument(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxDocumentBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, maxDocumentBytes>>20)
	}
	return data, nil
}

func newInUseCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inuse IMAGE",
		Short: "The image's packages: in use (a binary of it ran, or loads a library of it) or installed only",
		Args:  cobra.ExactArgs(1),
		RunE: g.withImages(func(cmd *cobra.Command, args []string, svc control.ImageService) error {
			inv, err := svc.Inventory(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			uses := inv.InUse()
			if asJSON {
				return writeJSON(g.stdout, inUseReport{Image: inv.Ref(), Source: inv.Source, Collected: inv.Collected,
					Executed: len(inv.Executed), Packages: uses})
			}
			if inv.Source == "" {
				fmt.Fprintf(g.stdout, "%s: no package database read yet (%d binaries executed); import an SBOM with `cagewatch sbom import`\n",
					inv.Ref(), len(inv.Executed))
			} else {
				fmt.Fprintf(g.stdout, "%s: %d packages from %s (%s), %d binaries executed\n", inv.Ref(), len(uses), inv.Source,
					inv.Collected.Format(time.RFC3339), len(inv.Executed))
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PACKAGE\tVERSION\tSTATUS\tLAST SEEN\tBINARIES")
			for _, u := range uses {
				last := "-"
				if !u.LastSeen.IsZero() {
					last = u.LastSeen.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Version, u.Status, last, strings.Join(u.Binaries, ","))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addStoreFlag(cmd)
	return cmd
}

// inUseReport is `inuse --json`.
type inUseReport struct {
	Image     string             `json:"image"`
	Source    string             `json:"source"`
	Collected time.Time          `json:"collected,omitzero"`
	Executed  int                `json:"executed_binaries"`
	Packages  []model.PackageUse `json:"packages"`
}

func newSBOMCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "sbom", Short: "Import an image's SBOM (SPDX JSON) as its package list"}
	imp := &cobra.Command{
		Use:   "import IMAGE FILE",
		Short: "Read an SPDX JSON SBOM (e.g. syft -o spdx-json): its packages and their files replace the image's package list",
		Args:  cobra.ExactArgs(2),
		RunE: g.withImages(func(cmd *cobra.Command, args []string, svc control.ImageService) error {
			data, err := readDocument(args[1])
			if err != nil {
				return err
			}
			_, pkgs, err := inventory.ParseSBOM(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[1], err)
			}
			if err := svc.ImportSBOM(cmd.Context(), args[0], pkgs); err != nil {
				return fmt.Errorf("importing %s: %w", args[1], err)
			}
			fmt.Fprintf(g.stdout, "%s: %d packages imported from %s\n", model.FamiliarRef(args[0]), len(pkgs), args[1])
			return nil
		}),
	}
	addStoreFlag(imp)
	cmd.AddCommand(imp)
	return cmd
}

func newVulnsCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "vulns", Short: "Import a scanner's vulnerability report of an image (Grype or Trivy JSON)"}
	imp := &cobra.Command{
		Use:   "import IMAGE FILE",
		Short: "Read a Grype (-o json) or Trivy (-f json) report; each finding is marked in use by the package it affects",
		Args:  cobra.ExactArgs(2),
		RunE: g.withImages(func(cmd *cobra.Command, args []string, svc control.ImageService) error {
			data, err := readDocument(args[1])
			if err != nil {
				return err
			}
			scanner, findings, err := model.ParseVulnReport(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[1], err)
			}
			repo, tag := model.SplitImageRef(model.FamiliarRef(args[0]))
			r := &model.VulnReport{Image: repo, Tag: tag, Scanner: scanner, Imported: time.Now().UTC(), Findings: findings}
			if err := svc.ImportVulns(cmd.Context(), r); err != nil {
				return fmt.Errorf("importing %s: %w", args[1], err)
			}
			fmt.Fprintf(g.stdout, "%s: %d findings imported from %s (%s)\n", r.Ref(), len(findings), args[1], scanner)
			return nil
		}),
	}
	addStoreFlag(imp)
	cmd.AddCommand(imp)
	return cmd
}

func newReportCommand(g *globalOptions) *cobra.Command {
	var asJSON, asCSV bool
	var since string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Per image: learning state, alerts by rule over a period, in-use and installed-only vulnerable packages",
		Args:  cobra.NoArgs,
		RunE: g.withImages(func(cmd *cobra.Command, _ []string, svc control.ImageService) error {
			if asJSON && asCSV {
				return fmt.Errorf("--json and --csv: choose one")
			}
			period, err := parsePeriod(since)
			if err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			reports, err := svc.Reports(cmd.Context(), time.Now().Add(-period))
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				return writeJSON(g.stdout, reports)
			case asCSV:
				return writeReportCSV(g.stdout, reports)
			}
			return printReports(g.stdout, reports)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one object per image)")
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print CSV (one row per image; columns in docs/report.md)")
	cmd.Flags().StringVar(&since, "since", "7d", "alerts counted over this period (e.g. 24h, 30d)")
	addStoreFlag(cmd)
	return cmd
}

// parsePeriod reads a duration that may also be given in days ("30d").
func parsePeriod(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a positive number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (e.g. 24h, 7d)", s)
	}
	return d, nil
}

// reportColumns are the CSV columns, documented in docs/report.md.
var reportColumns = []string{"image", "learning", "workloads", "period_start", "alerts_total", "alerts_by_rule",
	"package_source", "packages", "packages_in_use", "scanner",
	"in_use_critical", "in_use_high", "in_use_medium", "in_use_low", "in_use_other",
	"installed_only_critical", "installed_only_high", "installed_only_medium", "installed_only_low", "installed_only_other",
	"in_use_vulnerable_packages", "installed_only_vulnerable_packages"}

func writeReportCSV(w io.Writer, reports []model.ImageReport) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(reportColumns); err != nil {
		return err
	}
	for _, r := range reports {
		var rules []string
		for _, rule := range r.SortedRules() {
			rules = append(rules, fmt.Sprintf("%s=%d", rule, r.Alerts[rule]))
		}
		var inUse, installed []string
		for _, p := range r.VulnerablePackages {
			cell := fmt.Sprintf("%s@%s:%s:%s", p.Name, p.Version, p.Worst, strings.Join(p.IDs, " "))
			if p.InUse {
				inUse = append(inUse, cell)
			} else {
				installed = append(installed, cell)
			}
		}
		row := []string{r.Image, string(r.Learning), strconv.Itoa(r.Workloads), r.PeriodStart.Format(time.RFC3339),
			strconv.FormatUint(r.AlertsTotal, 10), strings.Join(rules, ";"), r.PackageSource, strconv.Itoa(r.Packages),
			strconv.Itoa(r.InUse), r.Scanner}
		row = append(row, severityColumns(r.VulnsInUse)...)
		row = append(row, severityColumns(r.VulnsInstalledOnly)...)
		row = append(row, strings.Join(inUse, ";"), strings.Join(installed, ";"))
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// severityColumns gives critical, high, medium, low and the rest.
func severityColumns(counts map[string]int) []string {
	other := 0
	for sev, n := range counts {
		switch sev {
		case "critical", "high", "medium", "low":
		default:
			other += n
		}
	}
	return []string{strconv.Itoa(counts["critical"]), strconv.Itoa(counts["high"]), strconv.Itoa(counts["medium"]),
		strconv.Itoa(counts["low"]), strconv.Itoa(other)}
}

// severityCounts prints counts as "critical 1, high 2" (or "none").
func severityCounts(counts map[string]int) string {
	var parts []string
	for _, sev := range model.Severities {
		if counts[sev] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", sev, counts[sev]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func printReports(w io.Writer, reports []model.ImageReport) error {
	if len(reports) == 0 {
		fmt.Fprintln(w, "no images known yet")
	}
	for _, r := range reports {
		learning := string(r.Learning)
		if learning == "" {
			learning = "no baseline"
		}
		fmt.Fprintf(w, "%s: %s; %d alerts since %s", r.Image, learning, r.AlertsTotal, r.PeriodStart.Format("2006-01-02 15:04"))
		for _, rule := range r.SortedRules() {
			fmt.Fprintf(w, " %s=%d", rule, r.Alerts[rule])
		}
		fmt.Fprintf(w, "\n  packages: %d (%d in use, from %s)", r.Packages, r.InUse, orDash(r.PackageSource))
		if r.Scanner != "" {
			fmt.Fprintf(w, "; vulnerabilities (%s) in use: %s, installed only: %s", r.Scanner, severityCounts(r.VulnsInUse),
				severityCounts(r.VulnsInstalledOnly))
		}
		fmt.Fprintln(w)
		for _, p := range r.VulnerablePackages {
			status := "installed only"
			if p.InUse {
				status = "IN USE by " + strings.Join(p.Binaries, ",")
			}
			fmt.Fprintf(w, "    %s %s: %s (%s) %s\n", p.Name, p.Version, p.Worst, strings.Join(p.IDs, " "), status)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
