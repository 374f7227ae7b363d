// Command kube-controller-manager is a minimal wrapper around the upstream
// kube-controller-manager command, built from the same k8s.io/kubernetes module as
// kube-apiserver for Sundial's local control plane: it brings the Job, CronJob,
// namespace and garbage-collector controllers (no kubelet, so pods never run by themselves).
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
