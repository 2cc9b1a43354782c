module iluvatar.local/tools/kms-client

go 1.26.1

// kms-client v0.2.0 and grpc v1.82.1: the versions Talos v1.13.9's go.mod pins (lines 158 and 191).
require (
	github.com/siderolabs/kms-client v0.2.0
	google.golang.org/grpc v1.82.1
)

require (
	golang.org/x/net v0.53.0 // indirect
	golang.org/x/sys v0.43.0 // indirect
	golang.org/x/text v0.36.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260414002931-afd174a4e478 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
