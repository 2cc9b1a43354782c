module github.com/iluvatar/tools/pulumi-command-local

// pulumi-command v1.2.1's provider module says go 1.25.0: os/exec's CommandContext semantics this
// stand-in relies on (Cancel defaults to Process.Kill, WaitDelay to none) are those of Go 1.20 on.
go 1.25.0
