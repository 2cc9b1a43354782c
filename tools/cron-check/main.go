// Command cron-check parses cron schedules as the programs that read the ones Iluvatar renders parse them:
//
//   - a CronJob's spec.schedule (the restore drills, talos-backup): the API server's validation
//     (k8s.io/kubernetes v1.35.1 pkg/apis/batch/validation/validation.go:833-847, validateScheduleFormat:
//     pkg/util/parsers/parsers.go:59-69 ParseCronScheduleWithPanicRecovery, which is cron.ParseStandard,
//     and no TZ in the schedule) and its controller (pkg/controller/cronjob/utils.go, cron.ParseStandard);
//   - a ReplicationSource's spec.trigger.schedule: VolSync v0.16.0's CRD pattern
//     (api/v1alpha1/replicationsource_types.go:50, which the API server checks with Go's regexp) and its
//     controller's parser (internal/controller/statemachine/machine.go:254-257: Minute | Hour | Dom | Month |
//     Dow | Descriptor, the options of cron.ParseStandard).
//
// k3s's etcd-snapshot-schedule-cron is read by robfig/cron's default parser too (cron.New without WithParser).
//
// Request on stdin: {"schedules": ["0 3 * * *", ...]}. Answer on stdout, in the same order:
// {"results": [{"cronjob": "<error or empty>", "volsync": "<error or empty>", "longestGapMinutes": N, "days": N}]}:
// for a schedule both accept, the longest time between two of its runs from 2026-01-01 00:00 UTC through
// 2027-12-31 23:59 UTC, and on how many days of those two years it runs (stacks.data.longest_gap's window).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// VolSync v0.16.0 api/v1alpha1/replicationsource_types.go:50.
var volsyncPattern = regexp.MustCompile(`^(@(annually|yearly|monthly|weekly|daily|hourly))|((((\d+,)*\d+|(\d+(\/|-)\d+)|\*(\/\d+)?)\s?){5})$`)

type result struct {
	CronJob           string `json:"cronjob"`
	VolSync           string `json:"volsync"`
	LongestGapMinutes int64  `json:"longestGapMinutes"`
	Days              int    `json:"days"`
}

func parseStandard(schedule string) (s cron.Schedule, err error) {
	// As parsers.ParseCronScheduleWithPanicRecovery: robfig/cron v3.0.1 panics on some input.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("invalid schedule format: %v", r)
		}
	}()
	return cron.ParseStandard(schedule)
}

func check(schedule string) result {
	var r result
	sched, err := parseStandard(schedule)
	if err != nil {
		r.CronJob = err.Error()
	} else if strings.Contains(schedule, "TZ") {
		r.CronJob = "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
	}
	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	if !volsyncPattern.MatchString(schedule) {
		r.VolSync = "does not match the CRD's pattern"
	} else if _, err := parser.Parse(schedule); err != nil {
		r.VolSync = err.Error()
	}
	if r.CronJob != "" || sched == nil {
		return r
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	days := map[string]bool{}
	var last time.Time
	for t := sched.Next(start.Add(-time.Second)); !t.IsZero() && t.Before(end); t = sched.Next(t) {
		if !last.IsZero() {
			if gap := int64(t.Sub(last) / time.Minute); gap > r.LongestGapMinutes {
				r.LongestGapMinutes = gap
			}
		}
		last = t
		days[t.Format("2006-01-02")] = true
	}
	r.Days = len(days)
	return r
}

func main() {
	var req struct {
		Schedules []string `json:"schedules"`
	}
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "cron-check: reading the request: %s\n", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(req.Schedules))
	for _, s := range req.Schedules {
		results = append(results, check(s))
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string][]result{"results": results}); err != nil {
		fmt.Fprintf(os.Stderr, "cron-check: writing the answer: %s\n", err)
		os.Exit(2)
	}
}
