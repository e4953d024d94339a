// Command http-check is the `helm test` probe of the personscore charts: it GETs each
// URL and fails unless every answer is 2xx (and, for "URL|TEXT", its body contains
// TEXT). It ships as a scratch image (k8s/images), so the test hook needs no image
// from a registry.
//
//	http-check http://person:8080/healthz 'http://person:8080/openapi.json|"openapi"'
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 5*time.Second, "timeout of each request")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: http-check [-timeout 5s] URL[|TEXT]...")
		os.Exit(2)
	}
	client := &http.Client{Timeout: *timeout}
	failed := false
	for _, arg := range flag.Args() {
		url, want, _ := strings.Cut(arg, "|")
		if err := check(client, url, want); err != nil {
			fmt.Printf("FAIL %s: %v\n", url, err)
			failed = true
			continue
		}
		fmt.Printf("ok   %s\n", url)
	}
	if failed {
		os.Exit(1)
	}
}

func check(client *http.Client, url, want string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if want != "" && !strings.Contains(string(body), want) {
		return fmt.Errorf("body does not contain %q", want)
	}
	return nil
}
