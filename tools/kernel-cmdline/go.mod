module github.com/iluvatar/tools/kernel-cmdline

go 1.26.1

require github.com/siderolabs/go-procfs v0.1.2
