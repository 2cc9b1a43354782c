module iluvatar.local/tools/cron-check

go 1.26.1

// robfig/cron v3.0.1: the version k8s.io/kubernetes v1.35.1 (Arda's minor, tools/kube-control-plane) and VolSync
// v0.16.0 (plans.backup) both pin in their go.mod.
require github.com/robfig/cron/v3 v3.0.1
