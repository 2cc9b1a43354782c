// am-notify routes alerts and delivers them with Alertmanager's own code (v0.33.0): the config
// loader (config.LoadFile, every check Alertmanager makes at start-up), the routing tree
// (dispatch.NewRoute, Match) and each matched receiver's integrations
// (receiver.BuildReceiverIntegrations: the e-mail, webhook and other notifiers Alertmanager sends
// with). Alertmanager's server itself is not built: its module embeds a web UI (ui/app/dist) that
// only its release build generates.
//
//	am-notify --config alertmanager.yaml < alerts.json
//
// Input: a JSON list of alerts ({"labels": {...}, "annotations": {...}}), each firing now. Output: a
// JSON list, per alert, of the receivers its route reaches and, for each receiver, what each of its
// integrations did (an error, or delivered).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/config/receiver"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
)

type input struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type delivery struct {
	Integration string `json:"integration"`
	Error       string `json:"error,omitempty"`
}

type routed struct {
	Receiver   string     `json:"receiver"`
	Deliveries []delivery `json:"deliveries"`
}

type result struct {
	Alert     string   `json:"alert"`
	Receivers []routed `json:"receivers"`
}

func main() {
	path := flag.String("config", "", "the Alertmanager config file")
	flag.Parse()
	if err := run(*path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(path string) error {
	cfg, err := config.LoadFile(path)
	if err != nil {
		return fmt.Errorf("loading %s: %w", path, err)
	}
	var alerts []input
	if err := json.NewDecoder(os.Stdin).Decode(&alerts); err != nil {
		return fmt.Errorf("reading the alerts: %w", err)
	}
	tmpl, err := template.FromGlobs(cfg.Templates)
	if err != nil {
		return err
	}
	tmpl.ExternalURL, _ = url.Parse("http://alertmanager.monitoring.svc:9093")
	receivers := map[string]config.Receiver{}
	for _, r := range cfg.Receivers {
		receivers[r.Name] = r
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	tree := dispatch.NewRoute(cfg.Route, nil)
	var out []result
	now := time.Now()
	for _, in := range alerts {
		labels := model.LabelSet{}
		for k, v := range in.Labels {
			labels[model.LabelName(k)] = model.LabelValue(v)
		}
		annotations := model.LabelSet{}
		for k, v := range in.Annotations {
			annotations[model.LabelName(k)] = model.LabelValue(v)
		}
		a := &alert.Alert{Alert: model.Alert{Labels: labels, Annotations: annotations, StartsAt: now.Add(-10 * time.Minute), EndsAt: now.Add(time.Hour)}, UpdatedAt: now}
		res := result{Alert: in.Labels["alertname"]}
		for _, route := range tree.Match(labels) {
			name := route.RouteOpts.Receiver
			got := routed{Receiver: name, Deliveries: []delivery{}}
			integrations, err := receiver.BuildReceiverIntegrations(receivers[name], tmpl, logger)
			if err != nil {
				return fmt.Errorf("receiver %s: %w", name, err)
			}
			for _, integration := range integrations {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				ctx = notify.WithGroupKey(ctx, route.Key()+":"+labels.String())
				ctx = notify.WithReceiverName(ctx, name)
				ctx = notify.WithGroupLabels(ctx, labels)
				ctx = notify.WithNow(ctx, now)
				ctx = notify.WithRepeatInterval(ctx, route.RouteOpts.RepeatInterval)
				ctx = notify.WithFiringAlerts(ctx, []uint64{uint64(labels.Fingerprint())})
				d := delivery{Integration: integration.String()}
				if _, err := integration.Notify(ctx, a); err != nil {
					d.Error = err.Error()
				}
				cancel()
				got.Deliveries = append(got.Deliveries, d)
			}
			res.Receivers = append(res.Receivers, got)
		}
		out = append(out, res)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
