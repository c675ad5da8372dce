// Command hello is a tiny main package that TestBuildBinary builds.
package main

import "fmt"

func main() { fmt.Println("hello from built binary") }
