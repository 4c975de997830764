package profiler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cagewatch/cagewatch/model"
	"github.com/cagewatch/cagewatch/profiler/control"
	"github.com/cagewatch/cagewatch/profiler/inventory"
	"github.com/cagewatch/cagewatch/store"
)

// ImageRecords keeps what the agent knows of each image beside its baseline
// (#18): its inventory (packages, executed binaries and their libraries), its
// latest vulnerability report, and its daily alert counts. Exec events feed
// the inventory; package databases and libraries are read off the event path,
// through a live process's root, by Run.
type ImageRecords struct {
	store store.ImageStore
	lib   *Library // baseline states for reports; may be nil
	log   *slog.Logger
	now   func() time.Time
	// Readers of a container's root; tests replace them.
	readPackages  func(inventory.Root) (string, []model.Package, error)
	readLibraries func(inventory.Root, string) ([]string, error)

	mu      sync.Mutex
	invs    map[string]*model.Inventory
	vulns   map[string]*model.VulnReport
	tallies map[string]*model.AlertTally
	dirty   map[string]bool // inventories and tallies to write
	// live holds recent processes of each image, whose roots the reads use;
	// any container of an image has the same files.
	live     map[string][]model.ProcessKey
	pkgTried map[string]time.Time
	pending  map[string]bool // "ref\x00path" of queued library reads
	// gen counts changes that can move an image's in-use status; summaries
	// caches its vulnerability counts for that generation, because every
	// alert reads them.
	gen       map[string]uint64
	summaries map[string]vulnSummary
	jobs      chan imageJob
	jobsLost  atomic.Uint64
	readFails atomic.Uint64
}

type imageJob struct {
	ref  string
	path string // a binary whose libraries to read; "" reads the package database
}

// packageRetry is how long after a failed package-database read the next is tried.
const packageRetry = 10 * time.Minute

// maxExecutedPerImage bounds the binaries an inventory keeps.
const maxExecutedPerImage = 4096

// maxLivePerImage bounds the processes remembered per image.
const maxLivePerImage = 8

// NewImageRecords loads the records from st.
func NewImageRecords(st store.ImageStore, lib *Library, log *slog.Logger) (*ImageRecords, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &ImageRecords{store: st, lib: lib, log: log, now: time.Now, readPackages: inventory.ReadPackages, readLibraries: inventory.Libraries,
		invs: map[string]*model.Inventory{}, vulns: map[string]*model.VulnReport{}, tallies: map[string]*model.AlertTally{},
		dirty: map[string]bool{}, live: map[string][]model.ProcessKey{}, pkgTried: map[string]time.Time{}, pending: map[string]bool{},
		gen: map[string]uint64{}, summaries: map[string]vulnSummary{},
		jobs: make(chan imageJob, 256)}
	invs, err := st.Inventories()
	if err != nil {
		return nil, err
	}
	for _, inv := range invs {
		r.invs[inv.Ref()] = inv
	}
	reports, err := st.VulnReports()
	if err != nil {
		return nil, err
	}
	for _, v := range reports {
		r.vulns[v.Ref()] = v
	}
	tallies, err := st.AlertTallies()
	if err != nil {
		return nil, err
	}
	for _, t := range tallies {
		r.tallies[t.Ref()] = t
	}
	return r, nil
}

// imageOf is the reference records are kept under: the familiar repository
// and the tag, as baselines name images.
func imageOf(c model.Container) (repo, tag string, ok bool) {
	if c.Image == "" {
		return "", "", false
	}
	return model.FamiliarImage(c.Image), c.ImageTag, true
}

// ObserveExec counts a container's exec and queues the reads it needs.
func (r *ImageRecords) ObserveExec(e model.Event) {
	c := e.Container
	repo, tag, ok := imageOf(c)
	if !ok || !c.IsContainer() || e.RuntimeSetup || e.Path == "" || !strings.HasPrefix(e.Path, "/") {
		return
	}
	if x := e.Exec; x != nil && (x.Memfd || x.Deleted || x.OutsideRoot || x.Truncated) {
		return // not a file of the image
	}
	ref := model.ImageRef(repo, tag)
	r.mu.Lock()
	inv := r.invs[ref]
	if inv == nil {
		inv = model.NewInventory(repo, tag)
		r.invs[ref] = inv
	}
	if _, seen := inv.Executed[e.Path]; !seen && len(inv.Executed) >= maxExecutedPerImage {
		inv.ForgetLeastRecent() // unique paths (build outputs, a loop of copies) must not grow it forever
	}
	if inv.AddExec(e.Path, e.Time) {
		r.gen[ref]++
	}
	r.dirty[ref] = true
	r.noteLive(ref, e.Process())
	var jobs []imageJob
	if inv.Executed[e.Path].Libraries == nil && !r.pending[ref+"\x00"+e.Path] {
		r.pending[ref+"\x00"+e.Path] = true
		jobs = append(jobs, imageJob{ref: ref, path: e.Path})
	}
	if inv.Source == "" && r.now().Sub(r.pkgTried[ref]) > packageRetry {
		r.pkgTried[ref] = r.now()
		jobs = append(jobs, imageJob{ref: ref})
	}
	r.mu.Unlock()
	for _, j := range jobs {
		select {
		case r.jobs <- j:
		default:
			r.jobsLost.Add(1) // tried again at the next exec of the path
			r.mu.Lock()
			delete(r.pending, j.ref+"\x00"+j.path)
			if j.path == "" {
				delete(r.pkgTried, j.ref)
			}
			r.mu.Unlock()
		}
	}
}

// noteLive makes p the image's newest live process. A process seen again
// moves to the end: short-lived ones (a shell's helpers) must not push out a
// long-lived one that keeps exec'ing.
func (r *ImageRecords) noteLive(ref string, p model.ProcessKey) {
	procs := append(slices.DeleteFunc(r.live[ref], func(k model.ProcessKey) bool { return k == p }), p)
	if len(procs) > maxLivePerImage {
		procs = procs[1:]
	}
	r.live[ref] = procs
}

// Run does the queued reads, one at a time, and writes changed records
// every flushEvery, until ctx is done; then it writes once more. A read runs
// beside the loop, so one that a container's files make hang cannot stop
// the flushes or the agent's shutdown (jobs queue, then drop, meanwhile).
func (r *ImageRecords) Run(ctx context.Context, flushEvery time.Duration) error {
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	var reading chan struct{} // closed when the running read ends; nil: none runs
	for {
		jobs := r.jobs
		if reading != nil {
			jobs = nil
		}
		select {
		case <-ctx.Done():
			return r.Flush()
		case <-reading:
			reading = nil
		case j := <-jobs:
			done := make(chan struct{})
			reading = done
			go func() {
				defer close(done)
				r.do(j)
			}()
		case <-tick.C:
			if err := r.Flush(); err != nil {
				r.log.Error("writing image records", "err", err)
			}
		}
	}
}

// do reads through the root of the newest live process of the image that is
// still the process the event saw (PIDs are reused: its start time must match).
func (r *ImageRecords) do(j imageJob) {
	r.mu.Lock()
	procs := slices.Clone(r.live[j.ref])
	r.mu.Unlock()
	err := errors.New("no live process of the image")
	opened := false
	for i := len(procs) - 1; i >= 0; i-- {
		var root *os.File
		root, err = openVerifiedRoot(procs[i])
		if err != nil {
			r.forgetLive(j.ref, procs[i])
			continue
		}
		opened = true
		err = r.read(j, inventory.Root(fmt.Sprintf("/proc/self/fd/%d", root.Fd())))
		root.Close()
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, j.ref+"\x00"+j.path)
	if !opened && j.path == "" {
		delete(r.pkgTried, j.ref) // no live process was readable: the next exec tries again
	}
	if err != nil {
		r.readFails.Add(1)
		r.log.Debug("reading image files", "image", j.ref, "binary", j.path, "err", err)
	}
}

func (r *ImageRecords) read(j imageJob, root inventory.Root) error {
	if j.path == "" {
		source, pkgs, err := r.readPackages(root)
		if errors.Is(err, inventory.ErrNoPackageDB) {
			r.log.Info("image has no package database; import an SBOM (cagewatch sbom import)", "image", j.ref)
			return nil
		}
		if err != nil {
			return err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if inv := r.invs[j.ref]; inv != nil && inv.Source == "" { // an imported SBOM wins
			inv.SetPackages(source, r.now(), pkgs)
			r.dirty[j.ref] = true
			r.gen[j.ref]++
			r.log.Info("image packages read", "image", j.ref, "source", source, "packages", len(pkgs))
		}
		return nil
	}
	libs, err := r.readLibraries(root, j.path)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if inv := r.invs[j.ref]; inv != nil {
		inv.SetLibraries(j.path, libs)
		r.dirty[j.ref] = true
		r.gen[j.ref]++
	}
	return nil
}

func (r *ImageRecords) forgetLive(ref string, p model.ProcessKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live[ref] = slices.DeleteFunc(r.live[ref], func(k model.ProcessKey) bool { return k == p })
}

// openVerifiedRoot opens a process's root directory, then checks that the
// PID still belongs to the process of that start time: if it was reused
// before the open, the start time read after it differs.
func openVerifiedRoot(p model.ProcessKey) (*os.File, error) {
	root, err := os.Open(fmt.Sprintf("/proc/%d/root", p.PID))
	if err != nil {
		return nil, err
	}
	start, err := procStartNs(p.PID)
	if err != nil {
		root.Close()
		return nil, err
	}
	// /proc/PID/stat counts clock ticks (10 ms at USER_HZ 100) of boot time;
	// the kernel's start_time is monotonic, behind boot time by the time the
	// host spent suspended before the process started (at most the offset now).
	const tick = int64(10 * time.Millisecond)
	diff := int64(start) - int64(p.StartNs)
	if p.StartNs != 0 && (diff < -2*tick || diff > bootOffset()+2*tick) {
		root.Close()
		return nil, fmt.Errorf("pid %d: %w (reused)", p.PID, os.ErrNotExist)
	}
	return root, nil
}

// bootOffset is how far boot time is ahead of monotonic time (suspends).
func bootOffset() int64 {
	var boot, mono unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot) != nil || unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono) != nil {
		return 0
	}
	return max(0, boot.Nano()-mono.Nano())
}

// procStartNs reads a process's start time (field 22 of /proc/PID/stat).
func procStartNs(pid uint32) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm (field 2) may hold spaces and parentheses: fields count from the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	const startField = 22 - 3 // fields[0] is field 3 (state)
	if len(fields) <= startField {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	ticks, err := strconv.ParseUint(fields[startField], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return ticks * uint64(10*time.Millisecond), nil
}

// Flush writes the changed inventories and tallies.
func (r *ImageRecords) Flush() error {
	r.mu.Lock()
	var invs []*model.Inventory
	var tallies []*model.AlertTally
	for ref := range r.dirty {
		if inv := r.invs[ref]; inv != nil {
			invs = append(invs, inv.Clone())
		}
		if t := r.tallies[ref]; t != nil {
			tallies = append(tallies, cloneTally(t))
		}
	}
	clear(r.dirty)
	r.mu.Unlock()
	return errors.Join(r.store.PutInventories(invs...), r.store.PutAlertTallies(tallies...))
}

func cloneTally(t *model.AlertTally) *model.AlertTally {
	c := &model.AlertTally{Image: t.Image, Tag: t.Tag, Days: make(map[string]map[string]uint64, len(t.Days))}
	for d, rules := range t.Days {
		c.Days[d] = make(map[string]uint64, len(rules))
		for k, v := range rules {
			c.Days[d][k] = v
		}
	}
	return c
}

// ObserveAlert counts a sent alert against its image.
func (r *ImageRecords) ObserveAlert(a model.Alert) {
	repo, tag, ok := imageOf(a.Container)
	if !ok {
		return
	}
	ref := model.ImageRef(repo, tag)
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tallies[ref]
	if t == nil {
		t = &model.AlertTally{Image: repo, Tag: tag}
		r.tallies[ref] = t
	}
	t.Add(a.Rule, a.Time)
	r.dirty[ref] = true
}

// Enrich adds the image's in-use vulnerabilities to an alert, so a SIEM can
// rank an escape attempt in an image with a running vulnerable package first.
func (r *ImageRecords) Enrich(a *model.Alert) {
	repo, tag, ok := imageOf(a.Container)
	if !ok {
		return
	}
	r.mu.Lock()
	sum, ok := r.summaryLocked(model.ImageRef(repo, tag))
	r.mu.Unlock()
	if !ok {
		return
	}
	a.OutputFields["cagewatch.image_vulns"] = maps.Clone(sum.inUse)
	a.OutputFields["cagewatch.image_vulns_top"] = slices.Clone(sum.top)
}

// vulnSummary is an image's vulnerability counts at one generation.
type vulnSummary struct {
	gen        uint64
	inUse, all map[string]int
	top        []string
}

// summaryLocked gives an image's vulnerability counts, recomputed only when
// its inventory or report changed. r.mu is held.
func (r *ImageRecords) summaryLocked(ref string) (vulnSummary, bool) {
	v := r.vulns[ref]
	if v == nil {
		return vulnSummary{}, false
	}
	if sum, ok := r.summaries[ref]; ok && sum.gen == r.gen[ref] {
		return sum, true
	}
	v.MarkInUse(r.invs[ref])
	sum := vulnSummary{gen: r.gen[ref], inUse: v.Counts(true), all: v.Counts(false), top: v.TopInUse(5)}
	r.summaries[ref] = sum
	return sum, true
}

// Inventory implements control.ImageService.
func (r *ImageRecords) Inventory(_ context.Context, image string) (*model.Inventory, error) {
	ref := model.FamiliarRef(image)
	r.mu.Lock()
	defer r.mu.Unlock()
	inv := r.invs[ref]
	if inv == nil {
		return nil, fmt.Errorf("%w: no inventory of %q", store.ErrNotFound, ref)
	}
	return inv.Clone(), nil
}

// ImportSBOM implements control.ImageService: the SBOM's packages replace
// what was read from the image, and are written at once.
func (r *ImageRecords) ImportSBOM(_ context.Context, image string, pkgs []model.Package) error {
	repo, tag := model.SplitImageRef(model.FamiliarRef(image))
	if repo == "" {
		return fmt.Errorf("%w: %q", control.ErrBadImage, image)
	}
	if len(pkgs) == 0 {
		return fmt.Errorf("%w: the SBOM of %s lists no packages", store.ErrBadImport, image)
	}
	ref := model.ImageRef(repo, tag)
	r.mu.Lock()
	defer r.mu.Unlock()
	next := model.NewInventory(repo, tag)
	if inv := r.invs[ref]; inv != nil {
		next = inv.Clone()
	}
	next.SetPackages("spdx", r.now(), pkgs)
	if err := next.Validate(); err != nil {
		return fmt.Errorf("%w: %v", store.ErrBadImport, err)
	}
	if err := r.store.PutInventories(next); err != nil {
		return err
	}
	r.invs[ref] = next
	r.gen[ref]++
	return nil
}

// ImportVulns implements control.ImageService.
func (r *ImageRecords) ImportVulns(_ context.Context, v *model.VulnReport) error {
	next := *v
	next.Image = model.FamiliarImage(v.Image)
	next.Findings = append([]model.Vulnerability(nil), v.Findings...)
	if next.Imported.IsZero() {
		next.Imported = r.now()
	}
	if err := next.Validate(); err != nil {
		return fmt.Errorf("%w: %v", store.ErrBadImport, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next.MarkInUse(r.invs[next.Ref()])
	if err := r.store.PutVulnReport(&next); err != nil {
		return err
	}
	r.vulns[next.Ref()] = &next
	r.gen[next.Ref()]++
	return nil
}

// ImportInventories implements control.ImageService: each inventory merges
// into the image's own, and all are written in one transaction.
func (r *ImageRecords) ImportInventories(_ context.Context, invs []*model.Inventory) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := map[string]*model.Inventory{}
	for i, in := range invs {
		in = in.Clone()
		in.Image = model.FamiliarImage(in.Image)
		if err := in.Validate(); err != nil {
			return fmt.Errorf("%w: inventories[%d]: %v", store.ErrBadImport, i, err)
		}
		cur := next[in.Ref()]
		if cur == nil {
			if old := r.invs[in.Ref()]; old != nil {
				cur = old.Clone()
			} else {
				cur = model.NewInventory(in.Image, in.Tag)
			}
			next[in.Ref()] = cur
		}
		if err := cur.Merge(in); err != nil {
			return fmt.Errorf("%w: inventories[%d]: %v", store.ErrBadImport, i, err)
		}
	}
	if err := r.store.PutInventories(slices.Collect(maps.Values(next))...); err != nil {
		return err
	}
	maps.Copy(r.invs, next)
	for ref := range next {
		r.gen[ref]++
	}
	return nil
}

// Reports implements control.ImageService: one row per image known to any
// record or baseline.
func (r *ImageRecords) Reports(ctx context.Context, since time.Time) ([]model.ImageReport, error) {
	states := map[string][]model.BaselineState{}
	if r.lib != nil {
		bs, err := r.lib.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			ref := model.ImageRef(b.Image, b.Tag)
			states[ref] = append(states[ref], b.State)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	refs := map[string]bool{}
	for ref := range states {
		refs[ref] = true
	}
	for ref := range r.invs {
		refs[ref] = true
	}
	for ref := range r.vulns {
		refs[ref] = true
	}
	for ref := range r.tallies {
		refs[ref] = true
	}
	out := make([]model.ImageReport, 0, len(refs))
	for _, ref := range slices.Sorted(maps.Keys(refs)) {
		out = append(out, model.BuildImageReport(ref, states[ref], r.invs[ref], r.vulns[ref], r.tallies[ref], since))
	}
	return out, nil
}

// vulnCounts gives an image's vulnerability counts by severity, in-use and all.
func (r *ImageRecords) vulnCounts(ref string) (inUse, all map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum, ok := r.summaryLocked(ref)
	if !ok {
		return nil, nil
	}
	return maps.Clone(sum.inUse), maps.Clone(sum.all)
}

// VulnGauges gives every image's counts for the metrics, by severity and in-use.
func (r *ImageRecords) VulnGauges() map[string]map[string]map[bool]int {
	r.mu.Lock()
	refs := slices.Collect(maps.Keys(r.vulns))
	r.mu.Unlock()
	out := map[string]map[string]map[bool]int{}
	for _, ref := range refs {
		inUse, all := r.vulnCounts(ref)
		m := map[string]map[bool]int{}
		for _, sev := range model.Severities {
			m[sev] = map[bool]int{true: inUse[sev], false: all[sev] - inUse[sev]}
		}
		out[ref] = m
	}
	return out
}

// Control is what the control socket serves: baselines and image records.
type Control struct {
	*Library
	Images *ImageRecords
}

// Status adds each image's vulnerability counts to the library's status.
func (c Control) Status(ctx context.Context) (control.Status, error) {
	st, err := c.Library.Status(ctx)
	if err != nil || c.Images == nil {
		return st, err
	}
	for i, is := range st.Images {
		ref := is.Image
		if is.ImageRef != "" {
			ref = is.ImageRef
		}
		st.Images[i].VulnsInUse, st.Images[i].Vulns = c.Images.vulnCounts(model.FamiliarRef(ref))
	}
	return st, nil
}
