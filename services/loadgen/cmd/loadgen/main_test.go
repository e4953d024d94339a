package main

import (
	"testing"
	"time"

	"github.com/personscore/loadgen"
)

func TestParseOptionsDefaults(t *testing.T) {
	o, err := parseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.personURL != "http://127.0.0.1:8080" || o.scoreURL != "http://127.0.0.1:8081" || o.concurrency != 8 ||
		o.duration != 30*time.Second || o.mix != loadgen.DefaultMix || !o.check || o.bench || o.startStack {
		t.Errorf("defaults: %+v", o)
	}
	if o.seed == 0 {
		t.Error("seed 0 was not replaced by a random one")
	}
}

func TestParseOptionsBench(t *testing.T) {
	o, err := parseOptions([]string{"-bench", "-backends", "file", "-workloads", "hot", "-items-ratio=false",
		"-store-duration", "0", "-mix", "create=1,income=3", "-seed", "7"})
	if err != nil {
		t.Fatal(err)
	}
	want := loadgen.Mix{loadgen.OpCreate: 1, loadgen.OpIncome: 3}
	if !o.bench || o.backends != "file" || o.workloads != "hot" || o.itemsRatio || o.storeDuration != 0 ||
		o.mix != want || o.seed != 7 {
		t.Errorf("options: %+v", o)
	}
}

func TestParseOptionsRejects(t *testing.T) {
	for _, args := range [][]string{{"-mix", "teleport=5"}, {"-concurrency", "many"}, {"-no-such-flag"}} {
		if _, err := parseOptions(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
