// Command cwebp_linux_amd64 stands in for the image tools AnQiCMS runs as child processes.
// It does nothing and does not exit on its own; it dies from signals like any tool.
package main

import "time"

func main() {
	for {
		time.Sleep(time.Hour)
	}
}
