// Command chart-deps prepares the charts' dependencies offline (`make chart-deps`): the
// RabbitMQ Cluster Operator's CRD and RBAC copied from its Go module into
// charts/rabbitmq-cluster-operator, then `helm dependency update` of charts/person and
// charts/score (file:// dependencies only).
//
//	go run ./k8s/test/cmd/chart-deps -charts charts
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/personscore/k8s/test/chartdeps"
)

func main() {
	dir := flag.String("charts", "charts", "the charts directory")
	flag.Parse()
	if err := chartdeps.Prepare(*dir, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chart-deps:", err)
		os.Exit(1)
	}
}
