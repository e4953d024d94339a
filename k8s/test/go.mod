module github.com/personscore/k8s/test

go 1.26.0

require (
	github.com/google/go-containerregistry v0.22.1 // indirect
	github.com/rabbitmq/cluster-operator/v2 v2.20.0 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	helm.sh/helm/v3 v3.22.0 // indirect
	k8s.io/api v0.37.2 // indirect
	k8s.io/apimachinery v0.37.2 // indirect
	k8s.io/client-go v0.37.2 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)
