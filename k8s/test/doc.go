// Package test holds the Kubernetes delivery checks of personscore: the Helm charts in
// charts/ rendered and linted with the Helm SDK, decoded strictly into the Kubernetes API
// types, checked against the project's policies, installed on a real kube-apiserver +
// etcd built from the official Go modules, and the daemonless image build.
//
// Run them with `make test-charts` from the repository root, which first builds (once)
// the control-plane binaries into bin/.
package test
