// Command interop hits one Redis limit (100 per hour, gcra) from Go and prints how many hits
// passed; bindings/run.sh runs it beside Python, C, C++ and Node processes on the same limit.
// Usage: interop URL KEY_PREFIX PREFIX KEY HITS
// A URL "shared:PATH" uses the shared-memory region at PATH instead of Redis (KEY_PREFIX is
// then ignored).
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	flux "example.invalid/flux/bindings/go"
)

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: interop URL KEY_PREFIX PREFIX KEY HITS")
		os.Exit(2)
	}
	hits, err := strconv.Atoi(os.Args[5])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	options := flux.Options{Requests: 100, Period: time.Hour, Prefix: os.Args[3]}
	var limiter *flux.Limiter
	if strings.HasPrefix(os.Args[1], "shared:") {
		region, err := flux.OpenShared(flux.SharedOptions{Path: strings.TrimPrefix(os.Args[1], "shared:")})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		limiter, err = flux.NewOnShared(options, region)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	} else {
		redis, err := flux.NewRedis(flux.RedisOptions{URL: os.Args[1], KeyPrefix: os.Args[2], Timeout: 2 * time.Second, FailClosed: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		limiter, err = flux.NewOnRedis(options, redis)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	allowed := 0
	for i := 0; i < hits; i++ {
		d, err := limiter.Hit(os.Args[4], 1)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if d.Allowed {
			allowed++
		}
	}
	fmt.Println(allowed)
}
